"""The thumbnail a sender makes for a picture: at most THUMB_PX on a side, JPEG (PNG when
it has transparency), small enough to ride in the signed manifest (wire.MAX_THUMB)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from tits import wire

THUMB_PX = 160
MAX_PIXELS = 64_000_000  # a decompression bomb is no picture


@dataclass(frozen=True)
class Thumb:
    data: bytes
    mime: str
    width: int  # of the picture itself
    height: int


def make_thumbnail(path: Path) -> Thumb | None:
    """None when Pillow cannot read it as a picture (the file still goes, without one)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            width, height = im.size
            im.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # JPEG: decode at a fraction
            im.thumbnail((THUMB_PX, THUMB_PX))
            alpha = im.mode in ("RGBA", "LA") or "transparency" in im.info
            out = io.BytesIO()
            if alpha:
                im.convert("RGBA").save(out, "PNG", optimize=True)
                mime = "image/png"
            else:
                im.convert("RGB").save(out, "JPEG", quality=70)
                mime = "image/jpeg"
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None
    data = out.getvalue()
    if len(data) > wire.MAX_THUMB:
        return None
    return Thumb(data, mime, width, height)
