"""The pieces the screens are made of. Every text from the wire arrives as `plain()` Text (or
with markup off): a message can never style, move or erase anything."""

from __future__ import annotations

from datetime import tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ListItem, Static

from tits.client.model import Message

from .data import Chat, Friend, Notice
from .text import clock, list_time, plain, safe, t

PREVIEW_CHARS = 80


def preview(m: Message | None) -> str:
    if m is None:
        return ""
    if m.kind == "media":
        return t("[檔案]", "[file]")
    return safe((m.text or "").replace("\n", " ")[:PREVIEW_CHARS])


class ChatRow(ListItem):
    """One chat in the list: name (置頂 📌, 靜音 🔕), time; last message, unread count."""

    def __init__(self, chat: Chat, title: str, now_ms: int, tz: tzinfo | None,
                 pinned: bool, muted: bool) -> None:  # fmt: skip
        super().__init__(classes="chat-row")
        self.chat = chat
        self._title = title
        self._now = now_ms
        self._tz = tz
        self.pinned = pinned
        self.muted = muted

    def compose(self) -> ComposeResult:
        c = self.chat
        name = Text()
        if self.pinned:
            name.append("📌 ")
        name.append(safe(self._title), style="bold")
        if c.group is not None and c.members:
            name.append(f" ({c.members})", style="dim")
        if self.muted:
            name.append(" 🔕")
        when = list_time(c.ts, self._now, self._tz) if c.last else ""
        badge = ""
        if c.unread:
            badge = f" {c.unread if c.unread < 1000 else '999+'} "
        with Horizontal(classes="row1"):
            yield Label(name, classes="chat-name")
            yield Label(when, classes="chat-time")
        with Horizontal(classes="row2"):
            yield Label(Text(preview(c.last)), classes="chat-preview")
            yield Label(badge, classes="badge muted" if self.muted else "badge")


class FriendRow(ListItem):
    def __init__(self, friend: Friend) -> None:
        super().__init__(classes="friend-row")
        self.friend = friend

    def compose(self) -> ComposeResult:
        f = self.friend
        line = Text()
        line.append(safe(f.name), style="bold")
        if f.verified:
            line.append(" ✓ " + t("已驗證", "verified"), style="green")
        line.append("  " + " ".join(f.fp[i : i + 4] for i in range(0, 40, 4)), style="dim")
        yield Label(line)


class DaySep(Static):
    def __init__(self, label: str) -> None:
        super().__init__(f"── {label} ──", classes="day-sep", markup=False)


class NoticeLine(Static):
    """A membership change, centred: "Alice 邀請了 Bob 加入群組"."""

    def __init__(self, notice: Notice, names: dict[str, str], tz: tzinfo | None) -> None:
        super().__init__(Text(notice_text(notice, names) + "  " + clock(notice.ts, tz)),
                         classes="notice")  # fmt: skip
        self.ts = notice.ts


def notice_text(n: Notice, names: dict[str, str]) -> str:
    who = safe(names.get(n.actor, n.actor[:16]))
    them = "、".join(safe(names.get(x, x[:16])) for x in n.targets) if n.targets else ""
    if n.op == "create":
        return t(f"{who} 建立了群組「{safe(n.name)}」", f"{who} created the group “{safe(n.name)}”")
    if n.op == "invite":
        return t(f"{who} 邀請 {them} 加入群組", f"{who} invited {them}")
    if n.op == "remove":
        return t(f"{who} 將 {them} 移出群組", f"{who} removed {them}")
    if n.op == "leave":
        return t(f"{who} 已退出群組", f"{who} left the group")
    if n.op == "admin":
        return t(f"{who} 將 {them} 設為管理員", f"{who} made {them} an admin")
    if n.op == "rename":
        return t(
            f"{who} 將群組名稱改為「{safe(n.name)}」", f"{who} renamed the group “{safe(n.name)}”"
        )
    return f"{who} {n.op}"


SENDING = "sending"
SENT = "sent"
FAILED = "failed"


class Bubble(Vertical):
    """One message: others' on the left with their name, yours on the right with its state."""

    def __init__(self, m: Message, name: str, mine: bool, tz: tzinfo | None,
                 state: str = SENT, show_name: bool = True) -> None:  # fmt: skip
        super().__init__(classes="msg mine" if mine else "msg theirs")
        self.message = m
        self.sender_name = name
        self.mine = mine
        self._tz = tz
        self.state = state
        self.show_name = show_name and not mine

    @property
    def msg_id(self) -> bytes:
        return self.message.id

    def compose(self) -> ComposeResult:
        m = self.message
        if self.show_name:
            name = Text(safe(self.sender_name), style="bold")
            if not m.verified:
                name.append(" ⚠ " + t("未驗證", "not verified"), style="red")
            yield Label(name, classes="msg-name")
        body = (
            plain(m.text) if m.kind == "text" else plain(t("[檔案] ", "[file] ") + (m.mime or ""))
        )
        yield Static(body, classes="bubble")
        yield Label(self._meta(), classes="msg-meta")

    def _meta(self) -> str:
        when = clock(self.message.ts, self._tz)
        if not self.mine:
            return when
        state = {SENDING: t("傳送中…", "Sending…"), SENT: t("已傳送", "Sent"),
                 FAILED: t("傳送失敗", "Not sent")}[self.state]  # fmt: skip
        return f"{state}  {when}"

    def set_state(self, state: str) -> None:
        self.state = state
        self.set_class(state == FAILED, "failed")
        try:
            self.query_one(".msg-meta", Label).update(self._meta())
        except Exception:  # not composed yet: compose() reads self.state
            pass
