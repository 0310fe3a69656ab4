"""The conversation's messages as one virtualised widget (Textual's Line API): each item is laid
out once per width into strips, only the lines in view are drawn, so a page of hundreds of
messages opens in milliseconds and a long scroll-back stays cheap.

Others' messages on the left with their name, yours on the right with their state; day
separators and group notices centred. Wire text is a Rich `Text` made by `plain()` (never
markup); Rich measures CJK and emoji as two cells when wrapping.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import tzinfo

from rich.cells import cell_len
from rich.console import Console
from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tits.client.model import REACTIONS
from tits.client.model import Message as ChatMessage
from tits.i18n import _

from .media import Visual
from .text import clock, lifetime_label, media_label, plain, safe

SENDING = "sending"
SENT = "sent"
FAILED = "failed"


@dataclass(eq=False)
class MsgItem:
    message: ChatMessage
    name: str
    mine: bool
    state: str = SENT
    show_name: bool = True
    hit: bool = False
    mentioned: bool = False  # it names me (or @All): highlighted
    quote: str = ""  # 回覆: who and the start of what it answers
    visual: Visual | None = None  # media: a sticker, a picture's preview, a file's name
    version: int = 0  # bumped when it must be laid out again


@dataclass(eq=False)
class SepItem:
    label: str
    version: int = 0


@dataclass(eq=False)
class NoticeItem:
    text: str
    ts: int
    version: int = 0


Item = MsgItem | SepItem | NoticeItem


@dataclass
class _Laid:
    width: int
    version: int
    theme: str
    strips: list[Strip] = field(default_factory=list)


class MessageView(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {
        "msgview--theirs",
        "msgview--mine",
        "msgview--name",
        "msgview--meta",
        "msgview--failed",
        "msgview--sep",
        "msgview--notice",
        "msgview--hit",
        "msgview--warn",
        "msgview--mention",
    }
    DEFAULT_CSS = """
    MessageView { background: $surface; scrollbar-gutter: stable; }
    MessageView > .msgview--theirs { background: $panel; color: $foreground; }
    MessageView > .msgview--mine { background: $primary 30%; color: $foreground; }
    MessageView > .msgview--name { text-style: bold; color: $foreground; }
    MessageView > .msgview--meta { color: $text-muted; }
    MessageView > .msgview--failed { color: $error; }
    MessageView > .msgview--sep { color: $text-muted; }
    MessageView > .msgview--notice { color: $text-muted; text-style: italic; }
    MessageView > .msgview--hit { text-style: reverse; }
    MessageView > .msgview--warn { color: $error; }
    MessageView > .msgview--mention { background: $warning; color: $background; }
    """

    def __init__(self, tz: tzinfo | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz
        self.items: list[Item] = []
        self._laid: dict[int, _Laid] = {}  # id(item) -> its strips at a width
        self._lines: list[Strip] = []
        self._starts: list[int] = []  # the first line of each item
        self._width = 0
        self._max_y = 0  # the bottom scroll position at the last layout

    # -- what is shown -------------------------------------------------------------------------

    def set_items(self, items: list[Item]) -> None:
        self.items = list(items)
        self._relayout()
        self._follow()  # a chat just opened is not laid out yet: again once it is

    def append(self, items: list[Item]) -> None:
        # at the bottom as of our own last layout: Textual's max_scroll_y follows a new
        # virtual size only after a refresh, so after an item taller than what was left of
        # the screen (a picture) the view sat short of the end and stopped following
        at_end = self.scroll_y >= self._max_y
        self.items += items
        self._relayout()
        if at_end or any(isinstance(i, MsgItem) and i.mine for i in items):
            self._follow()

    def _follow(self) -> None:
        """To the newest line: now, and again once the new height is known."""
        self.scroll_end(animate=False, immediate=True)
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def prepend(self, items: list[Item]) -> None:
        """Older items above; the view stays on the line it showed."""
        before = len(self._lines)
        self.items = list(items) + self.items
        self._relayout()
        self.scroll_to(y=self.scroll_y + len(self._lines) - before, animate=False, immediate=True)

    def redraw(self) -> None:
        """Lay out again the items whose `version` moved."""
        self._relayout()

    def changed(self, item: Item) -> None:
        item.version += 1
        self._relayout()

    def scroll_to_item(self, item: Item) -> None:
        i = next((n for n, it in enumerate(self.items) if it is item), None)
        if i is not None and i < len(self._starts):
            self.scroll_to(y=max(0, self._starts[i] - 2), animate=False, immediate=True)

    @property
    def at_top(self) -> bool:
        return self.scroll_y <= 0

    def item_at(self, y: int) -> Item | None:
        """The item drawn on line `y` of the view (0: the top line shown)."""
        line = int(self.scroll_offset.y) + y
        i = bisect.bisect_right(self._starts, line) - 1
        return self.items[i] if 0 <= i < len(self.items) and line < len(self._lines) else None

    class Clicked(Message):
        """A message, a separator or a notice was clicked."""

        def __init__(self, item: Item) -> None:
            super().__init__()
            self.item = item

    def on_click(self, event: events.Click) -> None:
        item = self.item_at(event.y)
        if item is not None:
            self.post_message(self.Clicked(item))

    # -- layout ----------------------------------------------------------------------------------

    def on_resize(self) -> None:
        # one that showed the newest line still does when it gets shorter (a bar above it
        # appeared, the terminal shrank) or narrower (lines wrap again)
        at_end = self.scroll_y >= self._max_y
        self._relayout()
        if at_end:
            self._follow()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._laid.clear()
        self._relayout()

    def _relayout(self) -> None:
        width = self.scrollable_content_region.width or self.size.width
        if width <= 0:
            return
        self._width = width
        theme = self.app.theme
        lines: list[Strip] = []
        starts: list[int] = []
        alive: dict[int, _Laid] = {}
        for it in self.items:
            key = id(it)
            laid = self._laid.get(key)
            if laid is None or (laid.width, laid.version, laid.theme) != (width, it.version, theme):
                laid = _Laid(width, it.version, theme, self._layout(it, width))
            alive[key] = laid
            starts.append(len(lines))
            lines.extend(laid.strips)
        self._laid = alive
        self._lines = lines
        self._starts = starts
        self.virtual_size = Size(width, len(lines))
        self._max_y = max(0, len(lines) - self.scrollable_content_region.height)
        self.refresh()

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(name)

    def _layout(self, it: Item, width: int) -> list[Strip]:
        console: Console = self.app.console
        base = self.rich_style
        if isinstance(it, SepItem):
            sep = _centre(f"── {it.label} ──", width, base + self._style("msgview--sep"), console)
            return [Strip.blank(width, base), sep]
        if isinstance(it, NoticeItem):
            return [_centre(it.text, width, base + self._style("msgview--notice"), console)]
        m = it.message
        out = [Strip.blank(width, base)]
        side = "right" if it.mine else "left"
        if it.show_name and not it.mine:
            name = Text(safe(it.name)[: max(1, width)], style=self._style("msgview--name"))
            if not m.verified:
                name.append(" ⚠ " + _("not verified"), style=self._style("msgview--warn"))
            out.append(_line(name, width, "left", base, console))
        if m.unsent:  # 收回: only the notice stays, as LINE shows it
            who = _("You") if it.mine else safe(it.name)
            return out + [
                _centre(
                    _("{who} unsent a message").format(who=who),
                    width,
                    base + self._style("msgview--notice"),
                    console,
                )
            ]
        if m.expired:
            return out + [
                _centre(
                    _("This message has expired"),
                    width,
                    base + self._style("msgview--notice"),
                    console,
                )
            ]
        if m.kind == "media" and it.visual is not None:  # drawn as it is, beside no bubble
            for ln in it.visual.lines:
                out.append(_align(Strip(list(ln.render(console)), ln.cell_len), width, side, base))
            out.append(_line(plain(it.visual.caption), width, side, base, console))
            meta = base + self._style("msgview--meta")
            out.append(_line(Text(_meta(it, self.tz), style=meta), width, side, base, console))
            return out
        if m.kind == "text":
            body = plain(m.text)
            if it.mentioned:
                body = Text("@ ", style=self._style("msgview--mention")) + body
        else:
            body = plain(media_label(m))
        bubble = base + self._style("msgview--mine" if it.mine else "msgview--theirs")
        if it.quote:  # the message answered, above the answer, as LINE quotes it
            quote = Text("↩ " + safe(it.quote), style=self._style("msgview--meta"))
            out.append(_line(quote, max(4, int(width * 0.75)), side, base, console))
        if it.hit:
            bubble += self._style("msgview--hit")
        inner = max(4, int(width * 0.75) - 2)
        wrapped = body.wrap(console, inner, overflow="fold") or [Text("")]
        bw = max(cell_len(ln.plain) for ln in wrapped) + 2
        for ln in wrapped:
            segs = Strip(list(ln.render(console)), cell_len(ln.plain))
            strip = Strip.join([Strip.blank(1), segs, Strip.blank(bw - 1 - segs.cell_length)])
            strip = strip.apply_style(bubble)
            out.append(_align(strip, width, side, base))
        if m.reactions:  # under the bubble, as LINE shows them: ❤️ 2  😆 1
            marks = "  ".join(f"{REACTIONS.get(k, '?')} {len(v)}" for k, v in m.reactions.items())
            out.append(_line(Text(marks), width, side, base, console))
        meta_style = base + self._style(
            "msgview--failed" if it.state == FAILED else "msgview--meta"
        )
        out.append(_line(Text(_meta(it, self.tz), style=meta_style), width, side, base, console))
        return out

    # -- drawing ---------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        n = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if 0 <= n < len(self._lines):
            return self._lines[n].crop_extend(0, width, self.rich_style)
        return Strip.blank(width, self.rich_style)


def _meta(it: MsgItem, tz: tzinfo | None) -> str:
    when = clock(it.message.ts, tz)
    if it.message.lifetime_s:
        when = f"⏱ {lifetime_label(it.message.lifetime_s)}  {when}"
    if not it.mine:
        return when
    state = {SENDING: _("Sending…"), SENT: _("Sent"), FAILED: _("Not sent")}[it.state]
    n = it.message.read_by
    if it.state == SENT and n:  # 已讀 in a 1:1 chat, 已讀 N in a group, as LINE shows it
        state = _("Read by {n}").format(n=n) if it.message.group else _("Read")
    return f"{state}  {when}"


def _line(text: Text, width: int, side: str, base: Style, console: Console) -> Strip:
    text.truncate(width, overflow="ellipsis")
    strip = Strip(list(text.render(console)), cell_len(text.plain))
    return _align(strip, width, side, base)


def _align(strip: Strip, width: int, side: str, base: Style) -> Strip:
    if strip.cell_length >= width:
        return strip.crop(0, width)
    pad = Strip.blank(width - strip.cell_length, base)
    return Strip.join([pad, strip] if side == "right" else [strip, pad])


def _centre(text: str, width: int, style: Style, console: Console) -> Strip:
    t_ = Text(text, style=style)
    t_.truncate(width, overflow="ellipsis")
    w = cell_len(t_.plain)
    left = max(0, (width - w) // 2)
    return Strip.join([Strip.blank(left, style), Strip(list(t_.render(console)), w),
                       Strip.blank(max(0, width - left - w), style)])  # fmt: skip
