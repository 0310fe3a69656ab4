"""What a media message looks like in a chat: a sticker as its pack draws it, a picture as a
half-block preview of the thumbnail its sender signed (two pixels a cell, "▀" with the top
pixel as the colour and the bottom one as the background: any colour terminal, over SSH
too), any other file by its name and size.

Made on the worker thread (Pillow decodes; the sticker packs are files) when a chat is read
or a message arrives, never while the view is drawn.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from rich.style import Style
from rich.text import Text

from tits import wire
from tits.client.model import Message
from tits.errors import TitsError
from tits.i18n import _

from .text import safe

PICTURE_CELLS = 24  # a preview's width at most, in cells
STICKER_CELLS = 12
MAX_ROWS = 10


@dataclass
class Visual:
    caption: str  # a sticker's text rendering, or a file's name and size
    lines: list[Text] = field(default_factory=list)  # the half-block picture (may be none)


def visual_for(home: Path, m: Message) -> Visual | None:
    """Worker thread only. None for a message that is not media (or whose manifest is bad)."""
    if m.kind != "media" or m.manifest is None:
        return None
    try:
        man = wire.MANIFEST_DECODER.decode(m.manifest)
    except TitsError:
        return None
    if man.sticker:
        return _sticker(home, man)
    lines = _halfblock(man.thumb, PICTURE_CELLS) if man.thumb else []
    label = _("[picture]") if man.mime.startswith("image/") else _("[file]")
    return Visual(f"{label} {safe(man.name) or man.sha256.hex()[:12]}  {_size(man.size)}", lines)


def _sticker(home: Path, man: wire.Manifest) -> Visual:
    from tits.media.stickers import Shelf

    shelf = Shelf(home)
    try:
        found = shelf.find(man.sticker)
        caption = safe(found.sticker.text) or found.sticker.code
    except TitsError:
        caption = _("[sticker]")
    image = shelf.image(man.sha256)  # our own copy of the pack draws it, if we have it
    data = image.read_bytes() if image is not None else man.thumb
    return Visual(caption, _halfblock(data, STICKER_CELLS) if data else [])


def _halfblock(data: bytes, cells: int) -> list[Text]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (cells * 4, cells * 4))  # a JPEG decodes at a fraction of its size
            rgb = img.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError):
        return []
    w, h = rgb.size
    if w == 0 or h == 0:
        return []
    cols = min(cells, w)
    rows = max(1, min(MAX_ROWS, round(h * cols / w / 2)))  # a cell is about twice as tall
    small = rgb.resize((cols, rows * 2))
    px = small.load()
    assert px is not None
    out = []
    for y in range(rows):
        line = Text()
        for x in range(cols):
            top, bottom = _rgb(px[x, 2 * y]), _rgb(px[x, 2 * y + 1])
            line.append("▀", Style(color=top, bgcolor=bottom))
        out.append(line)
    return out


def _rgb(p: object) -> str:
    r, g, b, a = p if isinstance(p, tuple) and len(p) == 4 else (0, 0, 0, 0)
    if a < 128:  # transparent: the terminal's background would show; white reads well on both
        r = g = b = 255
    return f"#{r:02x}{g:02x}{b:02x}"


def _size(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
