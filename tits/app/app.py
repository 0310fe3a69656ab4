"""The App: themes, app-wide keys, the client's events, and what the screens ask for.

The `Client` lives on the app's own asyncio loop (Textual is asyncio): it is made in
`on_mount` (off the loop: it starts gpg), its events are consumed by a worker, and every store
read goes through `Backend.work` (the client's single worker thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.theme import Theme

from tits.client.model import GroupChanged, LinkEvent, Message, SendFailed, Shown, Stored, Unsent
from tits.errors import TitsError
from tits.i18n import _, error_text

from . import data
from .backend import Backend
from .commands import Command
from .data import Chat, Notice
from .msgview import FAILED, SENDING, SENT
from .screens import ConversationScreen, HelpScreen, MainScreen
from .settings import Settings
from .text import safe, toggled

REFRESH_S = 0.25  # the chat list redraws at most this often while messages pour in
BELL_S = 2.0
THEMES = {
    "light": Theme(
        name="tits-light", primary="#06C755", secondary="#00B900", accent="#06C755",
        foreground="#111111", background="#FFFFFF", surface="#F5F6F7", panel="#E8F8EE",
        success="#06C755", warning="#B26B00", error="#D0021B", dark=False,
        variables={"mine-bg": "#A8E6A1", "mine-fg": "#111111", "theirs-bg": "#EEF0F2",
                   "theirs-fg": "#111111"},
    ),
    "dark": Theme(
        name="tits-dark", primary="#06C755", secondary="#4CD787", accent="#4CD787",
        foreground="#E6E6E6", background="#1B1D21", surface="#24272C", panel="#2C3035",
        success="#4CD787", warning="#F5A623", error="#FF5C5C", dark=True,
        variables={"mine-bg": "#1F6F3F", "mine-fg": "#F0F0F0", "theirs-bg": "#33373D",
                   "theirs-fg": "#F0F0F0"},
    ),
    "contrast": Theme(
        name="tits-contrast", primary="#FFFF00", secondary="#00FFFF", accent="#FFFF00",
        foreground="#FFFFFF", background="#000000", surface="#000000", panel="#000000",
        success="#00FF00", warning="#FFFF00", error="#FF4040", dark=True,
        variables={"mine-bg": "#FFFF00", "mine-fg": "#000000", "theirs-bg": "#FFFFFF",
                   "theirs-fg": "#000000"},
    ),
}  # fmt: skip


class TitsApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "ω IM"
    ENABLE_COMMAND_PALETTE = False  # Textual's palette speaks English only
    BINDINGS = [
        Binding("ctrl+q", "quit", _("Quit"), priority=True),
        Binding("f1", "help", _("Help"), show=False),
        Binding("ctrl+n", "next_unread", _("Next unread"), show=False),
    ]

    def __init__(
        self,
        home: Path,
        *,
        offline: bool = False,
        broker: str | None = None,
        now: Callable[[], float] | None = None,
        tz: tzinfo | None = None,
        connect_timeout: float = 3600.0,
    ) -> None:
        super().__init__()
        self.home = Path(home)
        self.backend = Backend(self.home, offline=offline, broker=broker)
        self.settings = Settings.load(self.home)
        self._now = now or time.time
        self.tz = tz
        self.connect_timeout = connect_timeout
        self.main = MainScreen()
        self.chats: list[Chat] = []
        self.titles: dict[bytes, str] = {}
        self.stored: set[bytes] = set()  # Stored events that came before their bubble
        self.ready = asyncio.Event()  # the chat list is drawn (tests, the benchmark)
        self.status = ""
        self._refresh_due = False
        self.lists_stale = False
        self._last_bell = 0.0
        for theme in THEMES.values():
            self.register_theme(theme)
        self.theme = THEMES[self.settings.theme].name

    def now_ms(self) -> int:
        return int(self._now() * 1000)

    # -- start and stop --------------------------------------------------------------------------

    async def on_mount(self) -> None:
        await self.push_screen(self.main)
        self.run_worker(self._start(), name="start", exclusive=True, group="client")

    async def _start(self) -> None:
        try:
            await self.backend.start()
        except TitsError as exc:
            self.notify(safe(error_text(exc.message)), severity="error", markup=False, timeout=30)
            self.set_status(_("Cannot open"))
            return
        await self.refresh_lists()
        self.ready.set()
        if self.backend.client is None:
            self.set_status(_("Offline"))
            return
        self.set_status(_("Connecting…"))
        self.run_worker(self._connect(), name="connect", group="client")
        await self._events()

    async def _connect(self) -> None:
        client = self.backend.client
        assert client is not None
        try:
            await client.connect(timeout=self.connect_timeout)
        except TitsError as exc:
            self.set_status(_("Offline"))
            why = safe(error_text(exc.message))[:300]
            self.notify(why, severity="warning", markup=False, timeout=15)

    async def on_unmount(self) -> None:
        await self.backend.close()

    def set_status(self, text: str) -> None:
        self.status = text
        self.main.set_status(text)

    # -- the chat list ---------------------------------------------------------------------------

    async def refresh_lists(self) -> None:
        self.lists_stale = False
        b = self.backend
        chats, friends, names = await b.work(self._read_lists)
        self.chats = chats
        self.titles = names
        self.main.show_chats(chats, names)
        self.main.show_friends(friends)

    def request_refresh(self) -> None:
        """Refresh the lists soon, once for a burst of events (200 messages a second must not
        cost 200 list reads)."""
        if self.screen is not self.main:  # not in view: read once when it is shown again
            self.lists_stale = True
            return
        if self._refresh_due:
            return
        self._refresh_due = True

        async def later() -> None:
            self._refresh_due = False
            await self.refresh_lists()

        self.set_timer(REFRESH_S, later)

    def _read_lists(self) -> tuple[list[Chat], list[data.Friend], dict[bytes, str]]:
        """Worker thread: the chats, the friends, each chat's title."""
        b = self.backend
        chats = data.chats(b.store, b.me)
        titles = {c.conv: c.name if c.group is not None else b.name_of(c.peer) for c in chats}
        for c in chats:  # a group's last message says who wrote it, as LINE shows it
            if c.group is not None and c.last is not None:
                c.last_sender = b.name_of(c.last.sender)
        friends = data.friends(b.store, b.contacts())
        return chats, friends, titles

    def action_help_quit(self) -> None:
        """Ctrl-C (copy in the input) says how to quit, in the user's language."""
        self.notify(_("Press Ctrl+Q to quit"))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_next_unread(self) -> None:
        if self.lists_stale:
            await self.refresh_lists()
        for c in self.chats:
            if c.unread and not (
                isinstance(self.screen, ConversationScreen) and self.screen.chat.conv == c.conv
            ):
                await self.open_chat(c)
                return
        self.notify(_("No unread messages"))

    # -- a conversation --------------------------------------------------------------------------

    async def open_direct(self, fp: str) -> None:
        from tits.session import direct_conversation_id

        conv = direct_conversation_id(self.backend.me, fp)
        known = [c for c in self.chats if c.conv == conv]
        await self.open_chat(known[0] if known else Chat(conv, None, fp, "", None))

    async def open_chat(self, chat: Chat) -> None:
        b = self.backend
        if isinstance(self.screen, ConversationScreen):
            self.pop_screen()
        title = self.titles.get(chat.conv, "")
        if not title:
            title = await b.work(b.name_of, chat.peer)
        if chat.group is not None and chat.members:
            title += f" ({chat.members})"
        screen = ConversationScreen(chat, title)
        await self.push_screen(screen)
        messages, notices, names = await b.work(self._read_chat, chat)
        screen.load(messages, notices, names)
        if chat.unread:
            chat.unread = 0
            await self.refresh_lists()

    def _read_chat(self, chat: Chat) -> tuple[list[Message], list[Notice], dict[str, str]]:
        b = self.backend
        messages = data.open_chat(b.store, chat.conv)
        notices = data.notices(b.store, chat.group) if chat.group is not None else []
        fps = {m.sender for m in messages} | {n.actor for n in notices}
        fps |= {x for n in notices for x in n.targets}
        return messages, notices, b.names(sorted(fps))

    async def load_older(self, screen: ConversationScreen, before: int) -> None:
        b = self.backend

        def read() -> tuple[list[Message], dict[str, str]]:
            older = data.page(b.store, screen.chat.conv, data.PAGE, before)
            return older, b.names(sorted({m.sender for m in older}))

        older, names = await b.work(read)
        screen.prepend(older, names)

    async def send_text(self, screen: ConversationScreen, text: str) -> None:
        client = self.backend.client
        if client is None:
            self.notify(_("Offline: messages cannot be sent"), severity="warning")
            return
        try:
            item_id = await client.send(screen.target, text.encode("utf-8"))
        except TitsError as exc:
            self.notify(safe(error_text(exc.message)), severity="error", markup=False)
            return
        me = self.backend.me
        m = Message(
            id=item_id, conv=screen.chat.conv, sender=me, to=[screen.target],
            group=screen.chat.group, kind="text", text=text, verified=True, ts=self.now_ms(),
            outgoing=True, read=True,
        )  # fmt: skip
        state = SENT if item_id in self.stored else SENDING
        names = {me: await self.backend.work(self.backend.name_of, me)}
        screen.add(m, names, state)

    async def run_command(self, cmd: Command, screen: ConversationScreen) -> None:
        if cmd.name == "help":
            self.action_help()
        elif cmd.name == "quit":
            self.exit()
        elif cmd.name == "theme":
            self.settings.theme = cmd.args[0]
            await asyncio.to_thread(self.settings.save)  # a file written and synced: off the loop
            self.theme = THEMES[cmd.args[0]].name
            await self.refresh_lists()  # the unread badges take the theme's colour
            self.notify(_("Theme: {args}").format(args=cmd.args[0]))
        elif cmd.name in ("pin", "mute"):
            which = "pinned" if cmd.name == "pin" else "muted"
            on = await asyncio.to_thread(self.settings.toggle, which, screen.chat.conv)
            self.notify(toggled(which, on))
            await self.refresh_lists()
        elif cmd.name in ("invite", "leave"):
            await self._group_command(cmd, screen)

    async def _group_command(self, cmd: Command, screen: ConversationScreen) -> None:
        client = self.backend.client
        gid = screen.chat.group
        if gid is None:
            self.notify(_("This command works in a group only"), severity="warning")
            return
        if client is None:
            self.notify(_("Offline: the group cannot change"), severity="warning")
            return
        try:
            targets = [await client.work(client.resolve, a) for a in cmd.args]
            ev = await client.group_change(gid, cmd.name, targets)
        except TitsError as exc:
            self.notify(safe(error_text(exc.message)), severity="error", markup=False)
            return
        if ev is not None:
            await self._group_changed(ev)
        if cmd.name == "leave":
            self.notify(_("You left the group"))

    # -- the client's events ---------------------------------------------------------------------

    async def _events(self) -> None:
        client = self.backend.client
        assert client is not None
        async for ev in client.events():
            try:
                await self._handle(ev)
            except Exception as exc:  # one odd event must not stop the app receiving
                self.log.error(f"event failed: {exc!r}")

    async def _handle(self, ev: object) -> None:
        screen = self.screen
        conv_screen = screen if isinstance(screen, ConversationScreen) else None
        if isinstance(ev, Shown):
            m = ev.message
            if conv_screen is not None and conv_screen.chat.conv == m.conv:
                names = await self.backend.work(self.backend.names, [m.sender])
                conv_screen.add(m, names)
                await self.backend.work(data.mark_read, self.backend.store, [m.id])
            elif not self._muted(m.conv) and time.monotonic() - self._last_bell > BELL_S:
                self._last_bell = time.monotonic()
                self.bell()
            self.request_refresh()
        elif isinstance(ev, Stored):
            self.stored.add(ev.id)
            for s in self.screen_stack:
                if isinstance(s, ConversationScreen):
                    s.mark(ev.id, SENT)
            self.request_refresh()
        elif isinstance(ev, SendFailed):
            for s in self.screen_stack:
                if isinstance(s, ConversationScreen):
                    s.mark(ev.id, FAILED)
            self.notify(_("Not sent: ") + safe(ev.reason)[:200], severity="error", markup=False)
        elif isinstance(ev, Unsent):
            for s in self.screen_stack:
                if isinstance(s, ConversationScreen) and ev.id in s.shown:
                    s.unsent(ev.id)
            self.request_refresh()
        elif isinstance(ev, GroupChanged):
            await self._group_changed(ev)
        elif isinstance(ev, LinkEvent):
            if ev.state == "ready":
                self.set_status(_("Connected"))
            else:
                self.set_status(_("Offline, reconnecting…"))

    async def _group_changed(self, ev: GroupChanged) -> None:
        for s in self.screen_stack:
            if isinstance(s, ConversationScreen) and s.chat.conv == ev.group:
                n = Notice(ev.ts, ev.event, ev.actor, list(ev.targets), ev.name)
                if ev.event != "rekey":
                    names = await self.backend.work(self.backend.names, [ev.actor, *ev.targets])
                    s.add(n, names)
        self.request_refresh()

    def _muted(self, conv: bytes) -> bool:
        return conv.hex() in self.settings.muted


def run(home: Path, *, offline: bool = False, broker: str | None = None) -> None:
    """Run the app; the client's logs go to HOME/app.log (on stderr they would draw over the
    screen)."""
    import logging

    import structlog

    with open(home / "app.log", "a", encoding="utf-8") as log_file:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(file=log_file),
            cache_logger_on_first_use=False,
        )
        TitsApp(home, offline=offline, broker=broker).run()
