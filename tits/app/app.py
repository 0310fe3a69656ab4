"""The App: themes, app-wide keys, the client's events, and what the screens ask for.

The `Client` lives on the app's own asyncio loop (Textual is asyncio): it is made in
`on_mount` (off the loop: it starts gpg), its events are consumed by a worker, and every store
read goes through `Backend.work` (the client's single worker thread).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path

import structlog
from textual.app import App
from textual.binding import Binding
from textual.theme import Theme

from tits.client.controls import lifetime_seconds
from tits.client.model import (
    Announced,
    Expired,
    GroupChanged,
    LinkEvent,
    Message,
    Missed,
    Reacted,
    Receipt,
    SendFailed,
    SettingsChanged,
    Shown,
    Stored,
    Unsent,
)
from tits.errors import TitsError
from tits.i18n import _, error_text

from . import data, notify
from .backend import Backend
from .commands import Command
from .data import Chat, Notice
from .media import Visual, visual_for
from .modals import HelpScreen, StickerPicker
from .msgview import FAILED, SENDING, SENT
from .screens import ConversationScreen, MainScreen
from .settings import Settings
from .text import lifetime_label, safe, toggled, zh

_log = structlog.get_logger("tits.app")


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame, for the log (never the message's text)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else ""


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
        self.notified: list[tuple[str, str]] = []  # (who, what) of each notification given
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
        friends = data.friends(b.store, b.contacts(), b.key_changed)
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
        messages, notices, names, visuals = await b.work(self._read_chat, chat)
        screen.visuals.update(visuals)

        def gone() -> bool:  # closed (Esc) while its parts were being read
            return screen not in self.screen_stack

        if gone():
            return
        screen.load(messages, notices, names)
        changed = chat.group is None and await b.work(b.key_changed, chat.peer)
        ann = await b.work(b.store.extras.announcement, chat.conv)
        ann_names = await b.work(b.names, [ann.by]) if ann is not None else {}
        if chat.group is not None and b.client is not None:
            screen.members = await b.work(b.client.member_names, chat.group)
        if gone():
            return
        if changed:
            screen.warn_key_changed(title)
        if ann is not None:
            screen.show_announcement(ann, ann_names)
        if chat.unread:
            chat.unread = 0
            await self.refresh_lists()

    def _read_chat(
        self, chat: Chat
    ) -> tuple[list[Message], list[Notice], dict[str, str], dict[bytes, Visual]]:
        b = self.backend
        messages = data.open_chat(b.store, chat.conv)
        visuals = self._visuals(messages)
        notices = data.notices(b.store, chat.group) if chat.group is not None else []
        fps = {m.sender for m in messages} | {n.actor for n in notices}
        fps |= {x for n in notices for x in n.targets}
        return messages, notices, b.names(sorted(fps)), visuals

    def _visuals(self, messages: list[Message]) -> dict[bytes, Visual]:
        """Worker thread: how each media message is drawn (decoded off the loop)."""
        out = {}
        for m in messages:
            v = visual_for(self.home, m)
            if v is not None:
                out[m.id] = v
        return out

    async def load_older(self, screen: ConversationScreen, before: int) -> None:
        b = self.backend

        def read() -> tuple[list[Message], dict[str, str], dict[bytes, Visual]]:
            older = data.page(b.store, screen.chat.conv, data.PAGE, before)
            return older, b.names(sorted({m.sender for m in older})), self._visuals(older)

        older, names, visuals = await b.work(read)
        screen.visuals.update(visuals)
        screen.prepend(older, names)

    async def send_text(
        self, screen: ConversationScreen, text: str, reply_to: bytes | None = None
    ) -> bool:
        """Send what was typed; False when it was not (offline, or a mistake in it)."""
        client = self.backend.client
        if client is None:
            self.notify(_("Offline: messages cannot be sent"), severity="warning")
            return False
        try:
            opts = await client.work(client.mention_options, screen.target, text, screen.lifetime_s)
            item_id = await client.send(
                screen.target, text.encode("utf-8"), reply_to=reply_to, options=opts
            )
        except TitsError as exc:
            self.notify(safe(exc.message), severity="error", markup=False)
            return False
        me = self.backend.me
        m = Message(
            id=item_id, conv=screen.chat.conv, sender=me, to=[screen.target],
            group=screen.chat.group, kind="text", text=text, verified=True, ts=self.now_ms(),
            outgoing=True, read=True, lifetime_s=opts.lifetime_s, mentions=opts.mentions,
            mention_all=opts.mention_all, reply_to=reply_to,
        )  # fmt: skip
        state = SENT if item_id in self.stored else SENDING
        names = {me: await self.backend.work(self.backend.name_of, me)}
        screen.add(m, names, state)
        return True

    async def run_command(self, cmd: Command, screen: ConversationScreen) -> None:
        if cmd.name == "help":
            self.action_help()
        elif cmd.name == "quit":
            self.exit()
        elif cmd.name == "theme":
            # a file read, written and synced: off the loop
            await asyncio.to_thread(self.settings.set_theme, cmd.args[0])
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
        elif cmd.name == "lifetime":
            screen.set_lifetime(0 if cmd.args[0] == "off" else lifetime_seconds(cmd.args[0]) or 0)
            self.notify(
                _("Texts now vanish {lifetime_label} after shown").format(
                    lifetime_label=lifetime_label(screen.lifetime_s)
                )
                if screen.lifetime_s
                else _("Texts no longer vanish")
            )
        elif cmd.name in ("announce", "react"):
            await self._gesture(cmd, screen)
        elif cmd.name == "reply":
            answered = screen.newest_from_others()
            if answered is None:
                self.notify(_("No message to reply to"), severity="warning")
                return
            await self.send_text(screen, cmd.args[0], reply_to=answered.id)
        elif cmd.name == "unsend":
            await self._unsend(screen)
        elif cmd.name == "sticker":
            if cmd.args:
                if not await self.send_sticker(screen, cmd.args[0]):
                    self.notify(_("No such sticker here"), severity="warning")
            else:
                await self.open_stickers(screen)
        elif cmd.name == "file":
            path = Path(cmd.args[0]).expanduser()
            if not path.is_file():
                self.notify(
                    _("Not a file: {path}").format(path=safe(str(path))),
                    severity="warning",
                    markup=False,
                )
                return
            self._send_media(screen, path, None)

    # -- media: stickers and files -------------------------------------------------------------

    def _packs(self) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """Worker thread: the sticker packs here, for the picker."""
        from tits.media.stickers import Shelf

        return [
            (p.id, p.name_zh if zh() else p.name_en, [(s.code, s.text) for s in p.stickers])
            for p, _folder, _builtin in Shelf(self.home).packs()
        ]

    async def open_stickers(self, screen: ConversationScreen) -> None:
        packs = await self.backend.work(self._packs)
        if not packs:
            self.notify(_("No sticker packs: tits sticker add"))
            return

        def chosen(ref: str | None) -> None:
            if ref:
                self.run_worker(self.send_sticker(screen, ref), group="media")

        self.push_screen(StickerPicker(packs), chosen)

    async def send_sticker(self, screen: ConversationScreen, ref: str) -> bool:
        """A sticker by `PACK/(code)` or `(code)`; False when no pack here has it."""
        from tits.media.stickers import Shelf

        try:
            found = await self.backend.work(Shelf(self.home).find, ref)
        except TitsError:
            return False
        if found.image is None:
            self.notify(_("That sticker's image is not here"), severity="warning")
            return True
        sticker = (f"{found.sticker.code}.png", f"{found.pack.id}/{found.sticker.code}")
        self._send_media(screen, found.image, sticker)
        return True

    def _send_media(
        self, screen: ConversationScreen, path: Path, sticker: tuple[str, str] | None
    ) -> None:
        """Hash and upload in a worker (a big file takes a while; the chat stays usable), then
        show it as sent."""
        client = self.backend.client
        if client is None:
            self.notify(_("Offline: cannot send"), severity="warning")
            return

        async def go() -> None:
            try:
                manifest = await client.scan(path)
                if sticker is not None:
                    manifest.name, manifest.sticker = sticker
                else:
                    self.notify(_("Sending {name}…").format(name=safe(path.name)), markup=False)
                msg_id = await client.send_file(screen.target, path, manifest=manifest)
            except TitsError as exc:
                self.notify(safe(exc.message), severity="error", markup=False)
                return
            b = self.backend
            msg = await b.work(b.store.message, msg_id)
            if msg is not None and screen in self.screen_stack:
                screen.visuals.update(await b.work(self._visuals, [msg]))
                screen.add(msg, {b.me: await b.work(b.name_of, b.me)})

        self.run_worker(go(), group="media")

    async def _unsend(self, screen: ConversationScreen) -> None:
        client = self.backend.client
        mine = screen.newest_of_mine()
        if client is None or mine is None:
            self.notify(_("No message of yours to unsend"), severity="warning")
            return
        try:
            await client.unsend(mine.id)
        except TitsError as exc:
            self.notify(safe(exc.message), severity="error", markup=False)
            return
        screen.unsent(mine.id)
        self.notify(_("Message unsent"))

    async def _gesture(self, cmd: Command, screen: ConversationScreen) -> None:
        """/announce and /react: signed messages of the chat, like texts."""
        b = self.backend
        if b.client is None:
            self.notify(_("Offline: cannot send"), severity="warning")
            return
        try:
            if cmd.name == "announce":
                await b.client.announce(screen.target, cmd.args[0] if cmd.args else "")
                ann = await b.work(b.store.extras.announcement, screen.chat.conv)
                screen.show_announcement(ann, await b.work(b.names, [b.me]))
                return
            target = screen.newest_from_others()
            if target is None:
                self.notify(_("No message to react to"), severity="warning")
                return
            await b.client.react(target.id, cmd.args[0])
        except TitsError as exc:
            self.notify(safe(exc.message), severity="error", markup=False)
            return
        msg = await b.work(b.store.message, target.id)
        if msg is not None:
            screen.reacted(msg.id, msg.reactions)

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
                _log.error("app.event_failed", event=type(ev).__name__, error=repr(exc)[:500],
                           where=_where(exc))  # fmt: skip

    async def _handle(self, ev: object) -> None:
        screen = self.screen
        conv_screen = screen if isinstance(screen, ConversationScreen) else None
        if isinstance(ev, Shown):
            m = ev.message
            if conv_screen is not None and conv_screen.chat.conv == m.conv:
                names = await self.backend.work(self.backend.names, [m.sender])
                if m.kind == "media":
                    conv_screen.visuals.update(await self.backend.work(self._visuals, [m]))
                conv_screen.add(m, names)
                await self.backend.work(data.mark_read, self.backend.store, [m.id])
            elif (m.group is None or m.mentions_of(self.backend.me)) and not self._muted(m.conv):
                await self._notify_desktop(m)
            self.request_refresh()
        elif isinstance(ev, Receipt):
            screens = [
                cs for cs in self.screen_stack
                if isinstance(cs, ConversationScreen) and cs.chat.conv == ev.conv
            ]  # fmt: skip
            if screens:
                store = self.backend.store

                def counts() -> dict[bytes, int]:
                    found = (store.message(i) for i in ev.ids)
                    return {m.id: m.read_by for m in found if m is not None}

                now = await self.backend.work(counts)
                for open_chat in screens:
                    open_chat.read_by(now)
        elif isinstance(ev, Reacted):
            msg = await self.backend.work(self.backend.store.message, ev.id)
            for s in self.screen_stack:
                if isinstance(s, ConversationScreen) and msg is not None:
                    s.reacted(ev.id, msg.reactions)
        elif isinstance(ev, SettingsChanged):
            names = await self.backend.work(self.backend.names, [ev.by])
            who = safe(names.get(ev.by, ev.by[:8]))
            if ev.unsend_s == 0:
                what = _("{who} turned unsend off in this group").format(who=who)
            else:
                what = _("{who} set this group's unsend window to {span}").format(
                    who=who, span=lifetime_label(ev.unsend_s)
                )
            self.notify(what, markup=False)
        elif isinstance(ev, Announced):
            ann = await self.backend.work(self.backend.store.extras.announcement, ev.conv)
            names = await self.backend.work(self.backend.names, [ev.by])
            for s in self.screen_stack:
                if isinstance(s, ConversationScreen) and s.chat.conv == ev.conv:
                    s.show_announcement(ann, names)
        elif isinstance(ev, Expired):
            for s in self.screen_stack:
                if isinstance(s, ConversationScreen):
                    s.expired(ev.ids)
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
        elif isinstance(ev, Missed):  # the broker tells it once: shown for a minute
            self.notify(ev.text(), severity="warning", timeout=60, markup=False)
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

    async def _notify_desktop(self, m: Message) -> None:
        """A 1:1 text or a mention while its chat is not in view: the terminal's notification
        (or its bell), at most one per BELL_S; never the text itself."""
        if time.monotonic() - self._last_bell <= BELL_S:
            return
        self._last_bell = time.monotonic()
        name = await self.backend.work(self.backend.name_of, m.sender)
        what = _("mentioned you") if m.group is not None else _("sent a message")
        self.notified.append((name, what))
        if not self.is_headless and self._driver is not None:  # App.bell() writes the same way
            self._driver.write(notify.sequence(os.environ, "ω IM", f"{name} {what}"))


def run(home: Path, *, offline: bool = False, broker: str | None = None) -> int:
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
        import faulthandler
        import signal

        # `kill -USR1` on a stuck app writes every thread's stack to the log
        faulthandler.register(signal.SIGUSR1, file=log_file, all_threads=True)
        import sys

        if sys.stdout.isatty():
            from .picture import terminal_graphics

            terminal_graphics()
        app = TitsApp(home, offline=offline, broker=broker)
        app.run()
        return app.return_code or 0
