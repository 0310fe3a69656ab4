"""The screens: the chat list and friends (main), a conversation, help."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.suggester import Suggester
from textual.widgets import Input, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from tits.client.mentions import completions as mention_completions
from tits.client.model import Announced, Message
from tits.i18n import _

from . import data
from .commands import CommandError, is_command, parse, unescape
from .commands import complete as complete_command
from .data import Chat, Notice
from .media import Visual
from .msgview import SENDING, SENT, Item, MessageView, MsgItem, NoticeItem, SepItem
from .text import clock, day_key, day_label, lifetime_label, plain, safe, toggled
from .widgets import ChatRow, friend_prompt, notice_text

SHORTCODE = re.compile(r"\([a-z0-9_-]{1,30}\)")

if TYPE_CHECKING:
    from .app import TitsApp


class TopBar(Static):
    pass


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("n", "next_unread", _("Next unread")),
        Binding("p", "pin", _("Pin")),
        Binding("m", "mute", _("Mute")),
        Binding("1", "tab('chats')", _("Chats"), show=False),
        Binding("2", "tab('friends')", _("Friends"), show=False),
        Binding("question_mark", "app.help", _("Help")),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ChatRow] = []
        self.friends: list[data.Friend] = []
        self._drawn_width = 0
        self._chats: tuple[list[Chat], dict[bytes, str]] = ([], {})

    @property
    def tits(self) -> TitsApp:
        return cast("TitsApp", self.app)

    def compose(self) -> ComposeResult:
        yield TopBar("ω IM", id="topbar")
        with TabbedContent(initial="chats"):
            with TabPane(_("Chats"), id="chats"):
                yield OptionList(id="chat-list")
                yield Static(_("No chats yet"), id="no-chats", classes="empty")
            with TabPane(_("Friends"), id="friends"):
                yield OptionList(id="friend-list")
        yield Static(_("? help  n next unread  Enter open  Ctrl+Q quit"), id="hints")

    def on_mount(self) -> None:
        self.query_one("#chat-list", OptionList).focus()

    async def on_screen_resume(self) -> None:
        if self.tits.lists_stale:  # messages came while a chat was open
            await self.tits.refresh_lists()

    @property
    def chat_list(self) -> OptionList:
        return self.query_one("#chat-list", OptionList)

    def on_resize(self) -> None:
        if self.chat_list.scrollable_content_region.width != self._drawn_width:
            self.show_chats(*self._chats)  # the rows are laid out for a width
            self.show_friends(self.friends)

    def show_chats(self, chats: list[Chat], titles: dict[bytes, str]) -> None:
        self._chats = (chats, titles)
        if not self.is_mounted or not self.query("#chat-list"):
            return  # the app is starting or closing: on_resize draws it when it can
        lv = self.chat_list
        current = self._highlighted()
        s = self.tits.settings
        pinned = {bytes.fromhex(x) for x in s.pinned if _hex(x)}
        muted = {bytes.fromhex(x) for x in s.muted if _hex(x)}
        chats = sorted(chats, key=lambda c: (c.conv not in pinned, -c.ts))
        now, tz = self.tits.now_ms(), self.tits.tz
        accent = self.tits.current_theme.primary
        self.rows = [ChatRow(c, titles.get(c.conv, ""), c.conv in pinned, c.conv in muted)
                     for c in chats]  # fmt: skip
        keep = lv.highlighted
        width = max(1, lv.scrollable_content_region.width - 2)  # the option's padding
        self._drawn_width = lv.scrollable_content_region.width
        lv.set_options(
            [Option(r.prompt(width, now, tz, accent), id=r.chat.conv.hex()) for r in self.rows]
        )
        self.query_one("#no-chats").display = not self.rows
        if self.rows:
            where = [i for i, r in enumerate(self.rows) if current and r.chat.conv == current.conv]
            lv.highlighted = where[0] if where else min(keep or 0, len(self.rows) - 1)

    def show_friends(self, friends: list[data.Friend]) -> None:
        self.friends = friends
        if not self.is_mounted or not self.query("#friend-list"):
            return
        lv = self.query_one("#friend-list", OptionList)
        keep = lv.highlighted
        lv.set_options([Option(friend_prompt(f)) for f in friends])
        if friends:
            lv.highlighted = min(keep or 0, len(friends) - 1)

    def set_status(self, text: str) -> None:
        bar = Text("ω IM  ")
        bar.append(text)
        try:
            self.query_one("#topbar", TopBar).update(bar)
        except NoMatches:  # not composed yet, or the app is closing: the status can wait
            pass

    def action_tab(self, which: str) -> None:
        self.query_one(TabbedContent).active = which
        self.query_one("#chat-list" if which == "chats" else "#friend-list", OptionList).focus()

    def _highlighted(self) -> Chat | None:
        i = self.chat_list.highlighted
        return self.rows[i].chat if i is not None and 0 <= i < len(self.rows) else None

    @on(OptionList.OptionSelected)
    async def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        i = event.option_index
        if event.option_list.id == "chat-list" and 0 <= i < len(self.rows):
            await self.tits.open_chat(self.rows[i].chat)
        elif event.option_list.id == "friend-list" and 0 <= i < len(self.friends):
            await self.tits.open_direct(self.friends[i].fp)

    def action_next_unread(self) -> None:
        rows = self.rows
        if not rows:
            return
        start = (self.chat_list.highlighted or 0) + 1
        for i in list(range(start, len(rows))) + list(range(0, start)):
            if rows[i].chat.unread:
                self.action_tab("chats")
                self.chat_list.highlighted = i
                return
        self.notify(_("No unread messages"))

    async def _toggle(self, which: str) -> None:
        chat = self._highlighted()
        if chat is None:
            return
        on_ = await asyncio.to_thread(self.tits.settings.toggle, which, chat.conv)
        self.notify(toggled(which, on_))
        await self.tits.refresh_lists()

    async def action_pin(self) -> None:
        await self._toggle("pinned")

    async def action_mute(self) -> None:
        await self._toggle("muted")


def _hex(x: str) -> bool:
    try:
        bytes.fromhex(x)
        return True
    except ValueError:
        return False


class ConversationScreen(Screen[None]):
    AUTO_FOCUS = "#line"
    BINDINGS = [
        Binding("escape", "back", _("Back")),
        Binding("pageup", "page(-1)", _("Page up"), show=False),
        Binding("pagedown", "page(1)", _("Page down"), show=False),
        Binding("ctrl+f", "search", _("Search")),
        Binding("ctrl+r", "jump_reply", _("Jump to the replied message"), show=False),  # fmt: skip
        Binding("ctrl+o", "open_picture", _("Open the newest picture"), show=False),
        Binding("slash", "search", _("Search"), show=False),
        Binding("f1", "app.help", _("Help")),
    ]

    def __init__(self, chat: Chat, title: str) -> None:
        super().__init__(classes="conversation")
        self.chat = chat
        self.title_text = title
        self.target = "#" + chat.group.hex() if chat.group is not None else chat.peer
        self.shown: dict[bytes, MsgItem] = {}
        self.notices = 0
        self._last_day: tuple[int, int, int] | None = None
        self._oldest: int | None = None
        self._complete = False  # the first message of the chat is loaded
        self._hit_needle = ""
        self._hit_index = -1
        self.lifetime_s = 0  # /lifetime: texts typed from now on vanish this long after shown
        self.members: dict[str, list[str]] = {}  # a group's others and their names (@ completion)
        self.visuals: dict[bytes, Visual] = {}  # media messages as they are drawn (the worker's)

    @property
    def tits(self) -> TitsApp:
        return cast("TitsApp", self.app)

    def compose(self) -> ComposeResult:
        yield TopBar(Text(safe(self.title_text), style="bold"), id="topbar")
        yield Static(id="keywarn")
        yield Static(id="announcement")
        yield Input(placeholder=_("Search in this chat…"), id="search")
        yield MessageView(self.tits.tz, id="log")
        yield Static(_("No messages yet"), id="no-messages", classes="empty")
        with Vertical(id="bottom"):
            yield Input(
                placeholder=_("Type a message"),
                id="line",
                max_length=16000,
                suggester=MentionSuggester(self),
            )

    def on_mount(self) -> None:
        self.query_one("#announcement", Static).display = False
        self.query_one("#keywarn", Static).display = False
        self.query_one("#search", Input).display = False
        self.query_one("#no-messages").display = False
        self.query_one("#line", Input).focus()

    @property
    def view(self) -> MessageView:
        return self.query_one("#log", MessageView)

    def show_announcement(self, ann: Announced | None, names: dict[str, str]) -> None:
        """The 公告 bar at the top of the chat, as LINE pins it."""
        bar = self.query_one("#announcement", Static)
        bar.display = ann is not None
        if ann is not None:
            who = safe(names.get(ann.by, ann.by[:16]))
            bar.update(
                Text.assemble(
                    ("📢 ", "bold"), (_("Announcement"), "bold"), f"  {who}: ", plain(ann.text)
                )
            )

    def warn_key_changed(self, name: str) -> None:
        """The banner against fraud: their key is not the one you compared (a new phone, or
        someone in the middle). The app never asks for a code or a key; it says what to do."""
        bar = self.query_one("#keywarn", Static)
        who = safe(name)
        bar.update(
            Text(
                _(
                    "⚠ {who}'s key has changed. Compare fingerprints in person or on a call, "
                    "then run tits contact confirm"
                ).format(who=who),
                style="bold",
            )
        )
        bar.display = True

    def set_lifetime(self, seconds: int) -> None:
        self.lifetime_s = seconds
        line = self.query_one("#line", Input)
        line.placeholder = (
            _("Type a message (⏱ vanishes after {lifetime_label})").format(
                lifetime_label=lifetime_label(seconds)
            )
            if seconds
            else _("Type a message")
        )

    def read_by(self, counts: dict[bytes, int]) -> None:
        """已讀 N moved for these messages of ours."""
        for msg_id, n in counts.items():
            item = self.shown.get(msg_id)
            if item is not None and item.message.read_by != n:
                item.message.read_by = n
                self.view.changed(item)

    def reacted(self, msg_id: bytes, reactions: dict[str, list[str]]) -> None:
        item = self.shown.get(msg_id)
        if item is not None:
            item.message.reactions = reactions
            self.view.changed(item)

    def expired(self, ids: list[bytes]) -> None:
        for i in ids:
            item = self.shown.get(i)
            if item is not None:
                item.message.expired, item.message.text = True, None
                self.view.changed(item)

    def newest_from_others(self) -> Message | None:
        return self._newest(mine=False)

    def newest_of_mine(self) -> Message | None:
        return self._newest(mine=True)

    def _newest(self, *, mine: bool) -> Message | None:
        for item in reversed(list(self.shown.values())):
            m = item.message
            if item.mine == mine and not m.unsent and not m.expired:
                return m
        return None

    def load(self, messages: list[Message], notices: list[Notice], names: dict[str, str]) -> None:
        self._complete = len(messages) < data.PAGE  # the page holds the start of the chat
        items: list[tuple[int, Message | Notice]] = [(m.ts, m) for m in messages]
        items += [(n.ts, n) for n in notices if self._complete or n.ts >= messages[0].ts]
        items.sort(key=lambda x: x[0])
        self._oldest = messages[0].ts if messages else None
        out: list[Item] = []
        for _unused, it in items:
            out += self._items_for(it, names)
        self.view.set_items(out)
        self.query_one("#no-messages").display = not items

    def _items_for(
        self, it: Message | Notice, names: dict[str, str], state: str = SENT
    ) -> list[Item]:
        out: list[Item] = []
        key = day_key(it.ts, self.tits.tz)
        if key != self._last_day:
            self._last_day = key
            out.append(SepItem(day_label(it.ts, self.tits.now_ms(), self.tits.tz)))
        if isinstance(it, Notice):
            self.notices += 1
            out.append(
                NoticeItem(notice_text(it, names) + "  " + clock(it.ts, self.tits.tz), it.ts)
            )
        else:
            me = self.tits.backend.me
            mine = it.outgoing or it.sender == me
            item = MsgItem(it, names.get(it.sender, it.sender[:16]), mine, state,
                           mentioned=it.mentions_of(me), quote=self._quote(it, names),
                           visual=self.visuals.get(it.id))  # fmt: skip
            self.shown[it.id] = item
            out.append(item)
        return out

    def _quote(self, m: Message, names: dict[str, str]) -> str:
        """回覆: the start of the message answered, if it is shown here."""
        if m.reply_to is None:
            return ""
        quoted = self.shown.get(m.reply_to)
        if quoted is None or quoted.message.unsent or quoted.message.expired:
            return "…"
        who = names.get(quoted.message.sender, quoted.name)
        return f"{who}: {(quoted.message.text or _('[file]'))[:40]}"

    def add(self, it: Message | Notice, names: dict[str, str], state: str = SENT) -> None:
        if isinstance(it, Message) and it.id in self.shown:
            if state != SENDING:
                self.mark(it.id, state)
            return
        self.query_one("#no-messages").display = False
        self.view.append(self._items_for(it, names, state))

    def unsent(self, msg_id: bytes) -> None:
        item = self.shown.get(msg_id)
        if item is not None:
            item.message.unsent, item.message.text = True, None
            self.view.changed(item)

    def mark(self, msg_id: bytes, state: str) -> None:
        item = self.shown.get(msg_id)
        if item is not None and item.state != state:
            item.state = state
            self.view.changed(item)

    # -- keys ------------------------------------------------------------------------------------

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.display = False
            self.query_one("#line", Input).focus()
            return
        self.app.pop_screen()

    async def action_page(self, direction: int) -> None:
        view = self.view
        if direction < 0:
            if view.at_top and not self._complete and self._oldest is not None:
                await self.tits.load_older(self, self._oldest)
            view.scroll_page_up(animate=False)
        else:
            view.scroll_page_down(animate=False)

    def prepend(self, messages: list[Message], names: dict[str, str]) -> None:
        """An older page, above what is shown (PageUp at the top)."""
        if len(messages) < data.PAGE:
            self._complete = True
        if not messages:
            return
        self._oldest = messages[0].ts
        saved, self._last_day = self._last_day, None
        out: list[Item] = []
        for m in messages:
            out += self._items_for(m, names)
        self._last_day = saved
        items = self.view.items
        if (
            items
            and isinstance(items[0], SepItem)
            and day_key(messages[-1].ts, self.tits.tz)
            == (
                day_key(
                    next((i.message.ts for i in items if isinstance(i, MsgItem)), 0), self.tits.tz
                )
            )
        ):
            self.view.items = items[1:]  # the day goes on: one separator, above the older page
        self.view.prepend(out)

    def action_jump_reply(self) -> None:
        """To the message the newest reply answers (LINE: tap the quote)."""
        reply = next((i for i in reversed(list(self.shown.values())) if i.message.reply_to), None)
        if reply is None:
            self.notify(_("No replies here"))
            return
        self.jump_to(reply)

    def jump_to(self, reply: MsgItem) -> None:
        target = self.shown.get(reply.message.reply_to or b"")
        if target is None:
            self.notify(_("The replied message is not loaded"))
            return
        for item in self.shown.values():
            if item.hit:
                item.hit, item.version = False, item.version + 1
        target.hit, target.version = True, target.version + 1
        self.view.redraw()
        self.view.scroll_to_item(target)

    @on(MessageView.Clicked)
    def _clicked(self, event: MessageView.Clicked) -> None:
        if not isinstance(event.item, MsgItem):
            return
        if _is_picture(event.item):
            self.open_picture(event.item)
        elif event.item.message.reply_to:
            self.jump_to(event.item)

    def action_open_picture(self) -> None:
        """The newest picture of the chat, the whole screen (kitty / Sixel where it can)."""
        item = next((i for i in reversed(list(self.shown.values())) if _is_picture(i)), None)
        if item is None:
            self.notify(_("No pictures here"))
            return
        self.open_picture(item)

    def open_picture(self, item: MsgItem) -> None:
        from .picture import PictureScreen

        self.app.push_screen(PictureScreen(item.message, item.name))

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    @on(Input.Submitted, "#search")
    async def _search(self, event: Input.Submitted) -> None:
        event.stop()
        needle = event.value.strip()
        if not needle:
            return
        b = self.tits.backend
        hits = await b.work(data.search, b.store, self.chat.conv, needle)
        for item in self.shown.values():
            if item.hit:
                item.hit = False
                item.version += 1
        shown_hits = [self.shown[m.id] for m in hits if m.id in self.shown]
        if not shown_hits:
            self.view.redraw()
            self.notify(_("“{needle}” not found").format(needle=safe(needle)), markup=False)
            return
        for item in shown_hits:
            item.hit = True
            item.version += 1
        self.view.redraw()
        # each Enter moves to the next older hit
        idx = self._hit_index + 1 if self._hit_needle == needle else 0
        self._hit_needle, self._hit_index = needle, idx % len(shown_hits)
        self.view.scroll_to_item(shown_hits[self._hit_index])
        self.notify(
            _("{hit_index} of {n_shown_hits}").format(
                hit_index=self._hit_index + 1, n_shown_hits=len(shown_hits)
            )
        )

    @on(Input.Submitted, "#line")
    async def _line(self, event: Input.Submitted) -> None:
        event.stop()
        line = event.value
        if not line.strip():
            return
        event.input.clear()
        if is_command(line):
            try:
                cmd = parse(line)
            except CommandError as exc:
                self.notify(safe(str(exc)), severity="warning", markup=False)
                return
            await self.tits.run_command(cmd, self)
            return
        if SHORTCODE.fullmatch(line.strip()) and await self.tits.send_sticker(self, line.strip()):
            return  # "(love)" alone is that sticker, as LINE's input turns it into one
        if not await self.tits.send_text(self, unescape(line)):
            event.input.value = line  # not sent (a mistake to fix): the text is kept


class MentionSuggester(Suggester):
    """Completes a /command, and an @name from the group's members (and @All); → accepts."""

    def __init__(self, screen: ConversationScreen) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.screen = screen

    async def get_suggestion(self, value: str) -> str | None:
        if value.startswith("/") and " " not in value:
            return complete_command(value)
        head, _unused, word = value.rpartition(" ")
        if not word.startswith("@") or not self.screen.members:
            return None
        names = mention_completions(word[1:], self.screen.members)
        if not names or names[0] == word[1:]:
            return None
        return f"{head} @{names[0]}" if head else f"@{names[0]}"


def _is_picture(item: MsgItem) -> bool:
    """A picture (not a sticker: a sticker is drawn in the chat already)."""
    from tits import wire
    from tits.errors import TitsError

    m = item.message
    if m.kind != "media" or m.unsent or m.manifest is None:
        return False
    try:
        man = wire.MANIFEST_DECODER.decode(m.manifest)
    except TitsError:
        return False
    return man.mime.startswith("image/") and not man.sticker
