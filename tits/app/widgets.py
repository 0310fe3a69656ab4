"""The chat list's and friends list's rows (options of an `OptionList`: no widget per row, so
a list of hundreds redraws at once) and the wording of group notices. Every text from the wire
is `safe()`d and put in a Rich `Text` (never markup): a message can never style or move
anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from rich.text import Text

from tits.client.model import Message
from tits.i18n import _

from .data import Chat, Friend, Notice
from .text import list_time, media_label, safe

PREVIEW_CHARS = 80


def preview(m: Message | None) -> str:
    if m is None:
        return ""
    if m.unsent:
        return _("Message unsent")
    if m.expired:
        return _("Message expired")
    if m.kind == "media":
        return media_label(m)
    return safe((m.text or "").replace("\n", " ")[:PREVIEW_CHARS])


@dataclass
class ChatRow:
    """One chat in the list: name (置頂 📌, 靜音 🔕), time; last message, unread count."""

    chat: Chat
    title: str
    pinned: bool
    muted: bool

    def prompt(self, width: int, now_ms: int, tz: tzinfo | None, accent: str) -> Text:
        """Two lines laid out by hand for `width` cells (a Rich Table per row costs ms, and
        the list lays out every row on each refresh)."""
        c = self.chat
        name = Text()
        if self.pinned:
            name.append("📌 ")
        name.append(safe(self.title), style="bold")
        if c.group is not None and c.members:
            name.append(f" ({c.members})", style="dim")
        if self.muted:
            name.append(" 🔕")
        when = Text(list_time(c.ts, now_ms, tz) if c.last else "", style="dim")
        badge = Text()
        if c.mentions:  # someone named me: LINE's "@" before the count
            badge.append(" @ ", style="reverse dim" if self.muted else "bold black on yellow")
            badge.append(" ")
        if c.unread:
            n = str(c.unread) if c.unread < 1000 else "999+"
            badge.append(f" {n} ", style="reverse dim" if self.muted else f"bold white on {accent}")
        out = _two_columns(name, when, width)
        out.append("\n")
        last = preview(c.last)
        if c.last_sender and last:
            last = f"{safe(c.last_sender)}: {last}"
        out.append_text(_two_columns(Text(last, style="dim"), badge, width))
        return out


def _two_columns(left: Text, right: Text, width: int) -> Text:
    """`left` cut with … to leave room for `right`, which ends at the right edge."""
    room = max(0, width - right.cell_len - (1 if right.cell_len else 0))
    if left.cell_len > room:
        left.truncate(room, overflow="ellipsis")
    line = left.copy()
    gap = max(0, width - left.cell_len - right.cell_len)
    line.append(" " * gap)
    line.append_text(right)
    line.no_wrap = True
    return line


def friend_prompt(f: Friend) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(safe(f.name), style="bold")
    if f.key_changed:
        line.append(" ⚠ " + _("key changed"), style="bold red")
    elif f.verified:
        line.append(" ✓ " + _("verified"), style="green")
    line.append("  " + " ".join(f.fp[i : i + 4] for i in range(0, 40, 4)), style="dim")
    return line


def notice_text(n: Notice, names: dict[str, str]) -> str:
    """A membership change as a sentence: "Alice 邀請 Bob 加入群組"."""
    who = safe(names.get(n.actor, n.actor[:16]))
    them = "、".join(safe(names.get(x, x[:16])) for x in n.targets) if n.targets else ""
    name = safe(n.name)
    if n.op == "create":
        return _("{who} created the group “{name}”").format(who=who, name=name)
    if n.op == "invite":
        return _("{who} invited {them}").format(who=who, them=them)
    if n.op == "remove":
        return _("{who} removed {them}").format(who=who, them=them)
    if n.op == "leave":
        return _("{who} left the group").format(who=who)
    if n.op == "admin":
        return _("{who} made {them} an admin").format(who=who, them=them)
    if n.op == "rename":
        return _("{who} renamed the group “{name}”").format(who=who, name=name)
    return f"{who} {n.op}"
