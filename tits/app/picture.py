"""A picture opened from a chat (Enter on it, a click, or Ctrl+O for the newest): the whole
screen, drawn the best way the terminal can — kitty's graphics protocol or Sixel where the
terminal answers for them, coloured half blocks otherwise (textual-image picks).

In the chat itself a picture stays a half-block preview: Sixel draws at the cursor and takes
no cells, so a view that draws only the lines in sight cannot place or clip it.

The thumbnail its sender signed shows at once; the picture itself is fetched (every chunk
checked against the signed manifest) when it is not here yet. Pillow decodes and shrinks on a
worker thread: a 20-megapixel photo never holds the screen.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tits import wire
from tits.client.model import Message
from tits.errors import TitsError
from tits.i18n import _, error_text

from .text import safe

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .app import TitsApp

MAX_PIXELS = 1600  # a side at most once decoded: more than any terminal shows


def terminal_graphics() -> None:
    """Ask the terminal what it can draw. Only before the app starts: textual-image asks once,
    on its import, by writing to the terminal and reading the answer, which it cannot do once
    Textual reads the keyboard."""
    try:
        import textual_image.widget  # noqa: F401
    except ImportError:  # an install without it: half blocks, made by us
        pass


def _image_widget(id: str) -> Any:
    try:
        from textual_image.widget import Image
    except ImportError:
        return Static(id=id, markup=False)
    return Image(id=id)


def decode(data: bytes | Path) -> PILImage | None:
    """Worker thread. The picture, shrunk to MAX_PIXELS a side; None if it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(src) as img:
            img.draft("RGB", (MAX_PIXELS, MAX_PIXELS))  # a JPEG decodes at a fraction
            img.thumbnail((MAX_PIXELS, MAX_PIXELS))
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


class PictureScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", _("Close")),
        Binding("q", "dismiss", show=False),
    ]

    def __init__(self, message: Message, sender: str) -> None:
        super().__init__()
        self.message = message
        self.sender = sender
        self.manifest: wire.Manifest | None = None
        if message.manifest is not None:
            try:
                self.manifest = wire.MANIFEST_DECODER.decode(message.manifest)
            except TitsError:
                pass

    @property
    def tits(self) -> TitsApp:
        from .app import TitsApp

        assert isinstance(self.app, TitsApp)
        return self.app

    def compose(self) -> ComposeResult:
        with Vertical(id="picture-box"):
            yield _image_widget("picture")
            yield Static(self._caption(), id="picture-caption", markup=False)

    def _caption(self, state: str = "") -> str:
        m = self.manifest
        name = safe(m.name) if m is not None and m.name else _("[picture]")
        parts = [f"{safe(self.sender)}：{name}"]
        if not self.message.verified:
            parts.append("⚠ " + _("not verified"))
        if state:
            parts.append(state)
        return "  ".join(parts)

    def on_mount(self) -> None:
        self.run_worker(self._load(), exclusive=True, group="picture")

    async def _load(self) -> None:
        b = self.tits.backend
        m = self.manifest
        if m is not None and m.thumb:
            self._show(await b.work(decode, m.thumb), _("Thumbnail"))
        path = Path(self.message.file) if self.message.file else None
        if path is None or not path.is_file():
            client = b.client
            if client is None:
                self._state(_("The picture is not on this device (offline)"))
                return
            self._state(_("Downloading…"))
            try:
                path = await client.fetch(self.message)
            except TitsError as exc:
                self._state(safe(error_text(exc.message))[:200])
                return
        self._show(await b.work(decode, path), "")

    def _show(self, img: PILImage | None, state: str) -> None:
        widget = self.query_one("#picture")
        if img is not None and hasattr(widget, "image"):
            widget.image = img
        self._state(state if img is not None else _("This file is not a picture"))

    def _state(self, state: str) -> None:
        self.query_one("#picture-caption", Static).update(self._caption(state))
