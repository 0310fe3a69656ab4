"""The MIME type from the content, never from the name (a name can lie): `filetype`'s
magic numbers, then UTF-8 text, else application/octet-stream."""

from __future__ import annotations

import re

import filetype  # type: ignore[import-untyped]

SNIFF_BYTES = 8192
_MIME_RE = re.compile(r"^[a-z0-9.+-]+/[a-zA-Z0-9.+-]+\Z")


def sniff(head: bytes) -> str:
    """`head`: the file's first bytes (SNIFF_BYTES of them is plenty)."""
    kind = filetype.guess(head[:SNIFF_BYTES]) if head else None
    if kind is not None and _MIME_RE.match(kind.mime) and len(kind.mime) <= 100:
        return str(kind.mime)
    if b"\0" in head[:SNIFF_BYTES]:
        return "application/octet-stream"
    try:
        head[:SNIFF_BYTES].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head[:SNIFF_BYTES]) - 4:  # not just a character cut at the end
            return "application/octet-stream"
    return "text/plain" if head else "application/octet-stream"


def is_picture(mime: str) -> bool:
    return mime in ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
