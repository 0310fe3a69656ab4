"""The screens: the chat list and friends (main), a conversation, help."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, ListView, Static, TabbedContent, TabPane

from tits.client.model import Message

from . import data
from .commands import CommandError, is_command, parse, unescape
from .data import Chat, Notice
from .text import day_key, day_label, safe, t, toggled
from .widgets import SENDING, SENT, Bubble, ChatRow, DaySep, FriendRow, NoticeLine

if TYPE_CHECKING:
    from .app import TitsApp


class TopBar(Static):
    pass


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open", t("開啟", "Open"), show=False),
        Binding("n", "next_unread", t("下一個未讀", "Next unread")),
        Binding("p", "pin", t("置頂", "Pin")),
        Binding("m", "mute", t("靜音", "Mute")),
        Binding("1", "tab('chats')", t("聊天", "Chats"), show=False),
        Binding("2", "tab('friends')", t("好友", "Friends"), show=False),
        Binding("question_mark", "app.help", t("說明", "Help")),
    ]

    @property
    def tits(self) -> TitsApp:
        return cast("TitsApp", self.app)

    def compose(self) -> ComposeResult:
        yield TopBar("ω IM", id="topbar")
        with TabbedContent(initial="chats"):
            with TabPane(t("聊天", "Chats"), id="chats"):
                yield ListView(id="chat-list")
                yield Static(t("還沒有聊天", "No chats yet"), id="no-chats", classes="empty")
            with TabPane(t("好友", "Friends"), id="friends"):
                yield ListView(id="friend-list")
        yield Static(t("? 說明　n 下一個未讀　Enter 開啟　Ctrl+Q 離開",
                       "? help  n next unread  Enter open  Ctrl+Q quit"), id="hints")  # fmt: skip

    def on_mount(self) -> None:
        self.query_one("#chat-list", ListView).focus()

    async def show_chats(self, chats: list[Chat], titles: dict[bytes, str]) -> None:
        lv = self.query_one("#chat-list", ListView)
        keep = lv.index
        current = lv.highlighted_child
        current_conv = current.chat.conv if isinstance(current, ChatRow) else None
        s = self.tits.settings
        pinned = {bytes.fromhex(x) for x in s.pinned if _hex(x)}
        muted = {bytes.fromhex(x) for x in s.muted if _hex(x)}
        chats = sorted(chats, key=lambda c: (c.conv not in pinned, -c.ts))
        now = self.tits.now_ms()
        await lv.clear()
        rows = [ChatRow(c, titles.get(c.conv, ""), now, self.tits.tz, c.conv in pinned,
                        c.conv in muted) for c in chats]  # fmt: skip
        await lv.extend(rows)
        self.query_one("#no-chats").display = not rows
        if rows:
            where = [i for i, r in enumerate(rows) if r.chat.conv == current_conv]
            lv.index = where[0] if where else min(keep or 0, len(rows) - 1)

    async def show_friends(self, friends: list[data.Friend]) -> None:
        lv = self.query_one("#friend-list", ListView)
        await lv.clear()
        await lv.extend([FriendRow(f) for f in friends])

    def set_status(self, text: str) -> None:
        bar = Text("ω IM  ")
        bar.append(text, style="dim")
        self.query_one("#topbar", TopBar).update(bar)

    def action_tab(self, which: str) -> None:
        self.query_one(TabbedContent).active = which
        self.query_one("#chat-list" if which == "chats" else "#friend-list", ListView).focus()

    def _highlighted(self) -> Chat | None:
        row = self.query_one("#chat-list", ListView).highlighted_child
        return row.chat if isinstance(row, ChatRow) else None

    async def action_open(self) -> None:
        if self.query_one(TabbedContent).active == "friends":
            row = self.query_one("#friend-list", ListView).highlighted_child
            if isinstance(row, FriendRow):
                await self.tits.open_direct(row.friend.fp)
            return
        chat = self._highlighted()
        if chat is not None:
            await self.tits.open_chat(chat)

    @on(ListView.Selected)
    async def _selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, ChatRow):
            await self.tits.open_chat(event.item.chat)
        elif isinstance(event.item, FriendRow):
            await self.tits.open_direct(event.item.friend.fp)

    def action_next_unread(self) -> None:
        lv = self.query_one("#chat-list", ListView)
        rows = [r for r in lv.children if isinstance(r, ChatRow)]
        if not rows:
            return
        start = (lv.index or 0) + 1
        for i in list(range(start, len(rows))) + list(range(0, start)):
            if rows[i].chat.unread:
                self.action_tab("chats")
                lv.index = i
                return
        self.notify(t("沒有未讀訊息", "No unread messages"))

    async def _toggle(self, which: str) -> None:
        chat = self._highlighted()
        if chat is None:
            return
        on_ = self.tits.settings.toggle(which, chat.conv)
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
        Binding("escape", "back", t("返回", "Back")),
        Binding("pageup", "page(-1)", t("上一頁", "Page up"), show=False),
        Binding("pagedown", "page(1)", t("下一頁", "Page down"), show=False),
        Binding("ctrl+f", "search", t("搜尋", "Search")),
        Binding("slash", "search", t("搜尋", "Search"), show=False),
        Binding("f1", "app.help", t("說明", "Help")),
        Binding("ctrl+n", "app.next_unread", t("下一個未讀", "Next unread"), show=False),
    ]

    def __init__(self, chat: Chat, title: str) -> None:
        super().__init__(classes="conversation")
        self.chat = chat
        self.title_text = title
        self.target = "#" + chat.group.hex() if chat.group is not None else chat.peer
        self.shown: dict[bytes, Bubble] = {}
        self._last_day: tuple[int, int, int] | None = None
        self._oldest: int | None = None
        self._hits: list[Message] = []

    @property
    def tits(self) -> TitsApp:
        return cast("TitsApp", self.app)

    def compose(self) -> ComposeResult:
        yield TopBar(Text(safe(self.title_text), style="bold"), id="topbar")
        yield Input(placeholder=t("在聊天中搜尋…", "Search in this chat…"), id="search")
        yield VerticalScroll(id="log")
        with Vertical(id="bottom"):
            yield Input(placeholder=t("輸入訊息", "Type a message"), id="line", max_length=16000)

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.query_one("#line", Input).focus()

    @property
    def msglog(self) -> VerticalScroll:
        return self.query_one("#log", VerticalScroll)

    async def load(self, messages: list[Message], notices: list[Notice],
                   names: dict[str, str]) -> None:  # fmt: skip
        items: list[tuple[int, Message | Notice]] = [(m.ts, m) for m in messages]
        whole = len(messages) < data.PAGE  # the page holds the start of the chat
        items += [(n.ts, n) for n in notices if whole or n.ts >= messages[0].ts]
        items.sort(key=lambda x: x[0])
        self._oldest = messages[0].ts if messages else None
        widgets = []
        for _, it in items:
            widgets += self._widgets_for(it, names)
        if widgets:
            await self.msglog.mount_all(widgets)
        self.msglog.scroll_end(animate=False)
        if not items:
            await self.msglog.mount(Static(t("還沒有訊息", "No messages yet"), classes="empty"))

    def _widgets_for(self, it: Message | Notice, names: dict[str, str],
                     state: str = SENT) -> list[Static | Bubble]:  # fmt: skip
        out: list[Static | Bubble] = []
        key = day_key(it.ts, self.tits.tz)
        if key != self._last_day:
            self._last_day = key
            out.append(DaySep(day_label(it.ts, self.tits.now_ms(), self.tits.tz)))
        if isinstance(it, Notice):
            out.append(NoticeLine(it, names, self.tits.tz))
        else:
            mine = it.outgoing or it.sender == self.tits.backend.me
            b = Bubble(it, names.get(it.sender, it.sender[:16]), mine, self.tits.tz, state)
            self.shown[it.id] = b
            out.append(b)
        return out

    async def add(self, it: Message | Notice, names: dict[str, str], state: str = SENT) -> None:
        if isinstance(it, Message) and it.id in self.shown:
            self.shown[it.id].set_state(state if state != SENDING else self.shown[it.id].state)
            return
        for empty in self.msglog.query(".empty"):
            await empty.remove()
        at_end = self.msglog.scroll_y >= self.msglog.max_scroll_y - 1
        await self.msglog.mount_all(self._widgets_for(it, names, state))
        if at_end or (isinstance(it, Message) and it.outgoing):
            self.msglog.scroll_end(animate=False)

    def mark(self, msg_id: bytes, state: str) -> None:
        b = self.shown.get(msg_id)
        if b is not None:
            b.set_state(state)

    # -- keys ------------------------------------------------------------------------------------

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.display = False
            self.query_one("#line", Input).focus()
            return
        self.app.pop_screen()

    async def action_page(self, direction: int) -> None:
        if direction < 0:
            if self.msglog.scroll_y <= 0 and self._oldest is not None:
                await self.tits.load_older(self, self._oldest)
            self.msglog.scroll_page_up(animate=False)
        else:
            self.msglog.scroll_page_down(animate=False)

    async def prepend(self, messages: list[Message], names: dict[str, str]) -> None:
        """An older page, above what is shown (PageUp at the top)."""
        if not messages:
            return
        self._oldest = messages[0].ts
        saved, self._last_day = self._last_day, None
        widgets: list[Static | Bubble] = []
        for m in messages:
            widgets += self._widgets_for(m, names)
        self._last_day = saved
        first = self.msglog.children[0] if self.msglog.children else None
        if first is not None and isinstance(first, DaySep) and widgets:
            last_m = messages[-1]
            first_item = next((c for c in self.msglog.children if isinstance(c, Bubble)), None)
            if first_item is not None and day_key(first_item.message.ts, self.tits.tz) == day_key(
                last_m.ts, self.tits.tz
            ):
                await first.remove()
        await self.msglog.mount_all(widgets, before=0)

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
        hits = await self.tits.backend.work(data.search, self.tits.backend.store, self.chat.conv,
                                            needle)  # fmt: skip
        for b in self.shown.values():
            b.remove_class("hit")
        shown_hits = [self.shown[m.id] for m in hits if m.id in self.shown]
        if not shown_hits:
            self.notify(t(f"找不到「{safe(needle)}」", f"“{safe(needle)}” not found"), markup=False)
            return
        for b in shown_hits:
            b.add_class("hit")
        # each Enter moves to the next older hit
        idx = getattr(self, "_hit_index", -1) + 1
        if getattr(self, "_hit_needle", None) != needle:
            idx = 0
        self._hit_needle, self._hit_index = needle, idx % len(shown_hits)
        target = shown_hits[self._hit_index]
        self.msglog.scroll_to_widget(target, animate=False)
        self.notify(t(f"第 {self._hit_index + 1} 筆，共 {len(shown_hits)} 筆",
                      f"{self._hit_index + 1} of {len(shown_hits)}"))  # fmt: skip

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
        await self.tits.send_text(self, unescape(line))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", t("關閉", "Close")),
        Binding("question_mark", "dismiss", show=False),
        Binding("q", "dismiss", show=False),
    ]

    def compose(self) -> ComposeResult:
        keys = [
            ("?  F1", t("說明（本頁）", "this help")),
            ("↑ ↓", t("在聊天列表中移動", "move in the chat list")),
            ("Enter", t("開啟聊天", "open a chat")),
            ("n  Ctrl+N", t("下一個未讀聊天", "next unread chat")),
            ("1  2", t("聊天／好友", "chats / friends")),
            ("p  m", t("置頂／靜音", "pin / mute")),
            ("Esc", t("返回", "back")),
            ("PgUp PgDn", t("捲動訊息", "scroll messages")),
            ("/  Ctrl+F", t("在聊天中搜尋", "search in the chat")),
            ("Ctrl+Q", t("離開", "quit")),
        ]
        cmds = [
            ("/help", t("說明", "this help")),
            ("/theme light|dark|contrast", t("主題", "theme")),
            ("/invite @名稱", t("邀請加入群組", "invite to the group")) if _zh() else
            ("/invite @name", "invite to the group"),
            ("/leave", t("退出群組", "leave the group")),
            ("/pin  /mute", t("置頂／靜音", "pin / mute")),
            ("/quit", t("離開", "quit")),
        ]  # fmt: skip
        text = Text()
        text.append(t("按鍵", "Keys") + "\n", style="bold")
        for k, v in keys:
            text.append(f"  {k:<12}", style="bold")
            text.append(v + "\n")
        text.append(
            "\n" + t("指令（在輸入列）", "Commands (in the input line)") + "\n", style="bold"
        )
        for k, v in cmds:
            text.append(f"  {k:<28}", style="bold")
            text.append(v + "\n")
        with VerticalScroll(id="help-box"):
            yield Static(t("說明", "Help"), id="help-title")
            yield Static(text, id="help-text")


def _zh() -> bool:
    from .text import zh

    return zh()
