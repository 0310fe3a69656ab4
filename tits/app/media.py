"""What a media message looks like in a chat: a sticker by its pack's text rendering, a
picture or any other file by its kind, name and size.

Pictures are not drawn yet: a half-block preview of the signed thumbnail (lines of "▀" and
shades) drew in Textual's pilot but, in a real terminal (tmux), stopped the view showing the
messages that came after it; until that is understood, the caption stands alone. `lines` is
where a preview goes.

Made on the worker thread (the sticker packs are files) when a chat is read or a message
arrives, never while the view is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text

from tits import wire
from tits.client.model import Message
from tits.errors import TitsError
from tits.i18n import _

from .text import safe


@dataclass
class Visual:
    caption: str  # a sticker's text rendering, or a file's name and size
    lines: list[Text] = field(default_factory=list)  # a preview, drawn above the caption


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
    label = _("[picture]") if man.mime.startswith("image/") else _("[file]")
    return Visual(f"{label} {safe(man.name) or man.sha256.hex()[:12]}  {_size(man.size)}")


def _sticker(home: Path, man: wire.Manifest) -> Visual:
    from tits.media.stickers import Shelf

    shelf = Shelf(home)
    try:
        found = shelf.find(man.sticker)
        caption = safe(found.sticker.text) or found.sticker.code
    except TitsError:
        caption = _("[sticker]")
    return Visual(caption)


def _size(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
