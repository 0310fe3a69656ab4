"""The app's small screens over the others: help, and the sticker picker (貼圖)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from tits.i18n import _, pgettext

from .text import safe


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", _("Close")),
        Binding("question_mark", "dismiss", show=False),
        Binding("q", "dismiss", show=False),
    ]

    def compose(self) -> ComposeResult:
        keys = [
            ("?  F1", _("this help")),
            ("↑ ↓", _("move in the chat list")),
            ("Enter", _("open a chat")),
            ("n  Ctrl+N", _("next unread chat")),
            ("1  2", _("chats / friends")),
            ("p  m", _("pin / mute")),
            ("Esc", _("back")),
            ("PgUp PgDn", _("scroll messages")),
            ("/  Ctrl+F", _("search in the chat")),
            ("Ctrl+R", _("jump to the replied message")),
            ("Ctrl+O", _("open the newest picture")),
            ("Ctrl+Q", _("quit")),
        ]
        cmds = [
            ("/help", pgettext("tits.app.screens", "this help")),
            ("/theme light|dark|contrast", _("theme")),
            (_("/invite @name"), _("invite to the group")),
            ("/leave", _("leave the group")),
            ("/pin  /mute", _("pin / mute")),
            (_("/announce [text]"), _("announce (no text: remove)")),
            ("/react like|love|haha|…", _("react to the newest message")),
            ("/lifetime 10m|off", _("texts vanish after shown")),
            (_("/reply text"), _("reply to the newest message")),
            ("/unsend", _("unsend your newest message")),
            ("/sticker", _("stickers (or type a (code))")),
            (_("/file PATH"), _("send a file")),
            ("/quit", _("quit")),
        ]
        text = Text()
        text.append(_("Keys") + "\n", style="bold")
        for k, v in keys:
            text.append(f"  {k:<12}", style="bold")
            text.append(v + "\n")
        text.append("\n" + _("Commands (in the input line)") + "\n", style="bold")
        for k, v in cmds:
            text.append(f"  {k:<28}", style="bold")
            text.append(v + "\n")
        with VerticalScroll(id="help-box"):
            yield Static(_("Help"), id="help-title")
            yield Static(text, id="help-text")


class StickerPicker(ModalScreen[str | None]):
    """貼圖: one tab a pack, arrow keys to choose, Enter sends, Esc closes. Each sticker is
    shown by its text rendering and shortcode (and sent as the pack's image)."""

    BINDINGS = [
        Binding("escape", "dismiss_none", _("Close")),
        Binding("left", "pack(-1)", _("Previous pack"), show=False),
        Binding("right", "pack(1)", _("Next pack"), show=False),
    ]

    def __init__(self, packs: list[tuple[str, str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.packs = packs  # (pack id, its name, [(shortcode, text rendering)])

    def compose(self) -> ComposeResult:
        with Vertical(id="sticker-box"):
            yield Static(_("Stickers"), id="sticker-title")
            with TabbedContent():
                for pack_id, name, stickers in self.packs:
                    with TabPane(safe(name), id=f"pack-{pack_id}"):
                        yield OptionList(
                            *[Option(Text.assemble((safe(text), "bold"), "  ", (code, "dim")),
                                     id=f"{pack_id}/{code}") for code, text in stickers],
                            classes="sticker-list",
                        )  # fmt: skip

    def on_mount(self) -> None:
        lists = self.query(".sticker-list")
        if lists:
            lists.first(OptionList).focus()

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        if pane is not None:
            pane.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    def action_pack(self, step: int) -> None:
        """← → between the packs (↑ ↓ stay within one)."""
        tabs = self.query_one(TabbedContent)
        ids = [f"pack-{p[0]}" for p in self.packs]
        if tabs.active in ids:
            tabs.active = ids[(ids.index(tabs.active) + step) % len(ids)]
            tabs.get_pane(tabs.active).query_one(OptionList).focus()
