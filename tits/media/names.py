"""A file name from a sender, made safe to save under: no folders, no control or bidi
characters, no leading dots (`../../.bashrc` becomes `bashrc`), short enough for any disk."""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 120
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10))} | {
    f"lpt{i}" for i in range(10)
}
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def safe_name(name: str, fallback: str = "file") -> str:
    """The last path component of `name`, cleaned; `fallback` when nothing is left."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        " " if unicodedata.category(ch) == "Zs" else ch
        for ch in unicodedata.normalize("NFC", name)
        if unicodedata.category(ch) not in _BAD_CATEGORIES and ch not in '<>:"|?*'
    )
    name = name.strip(" .")
    if not name or name.split(".", 1)[0].lower() in _RESERVED:
        name = f"{fallback}-{name}" if name else fallback
    return _shorten(name)


def _shorten(name: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    keep = MAX_NAME_BYTES - len(ext.encode()) - (1 if ext else 0)
    cut = stem.encode()[:keep].decode("utf-8", "ignore").rstrip(" .") or "file"
    return f"{cut}.{ext}" if ext else cut
