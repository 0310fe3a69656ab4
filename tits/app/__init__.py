"""The full-screen app (`tits` on a terminal, `tits app`): Textual over the client library.

settings.py  HOME/app.toml: theme, pinned and muted chats
data.py      what the screens show, read from the local store (runs on the client's worker)
backend.py   the client (online) or the store alone (offline), behind one `work()`
text.py      strings, times and dates as LINE writes them, wire text made plain
commands.py  slash commands typed in the input line
widgets.py   the chat list's and friends list's rows, the wording of group notices
msgview.py   a conversation's messages: one virtualised widget (Textual's Line API)
screens.py   the chat list, the friends list, a conversation
modals.py    help, the sticker picker
picture.py   a picture on the whole screen (kitty / Sixel / half blocks)
app.py       the App: themes, keys, the client's events
cli.py       `tits app` (and `tits` alone on a terminal)

Nothing is imported here: every `tits` command loads this package (for `tits app` and the
app's settings), and importing the app with Textual took 0.6 s of each command's start.
"""
