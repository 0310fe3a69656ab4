"""What a person (Rich) or a script (`--json`, one object a line) reads from the client."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


_chosen: str | None = None  # `tits config set lang`, read from the home by the CLI


def choose_lang(lang: str | None) -> None:
    global _chosen
    _chosen = lang


def zh() -> bool:
    """Traditional Chinese first. `TITS_LANG`, then the home's `lang` setting, then the locale
    as gettext reads it (LANGUAGE, LC_ALL, LC_MESSAGES, LANG): zh_* is zh-TW, C/POSIX or none
    is zh-TW (our first language), any other is English."""
    lang = os.environ.get("TITS_LANG") or _chosen
    if not lang:
        for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
            if os.environ.get(var):
                lang = os.environ[var].split(":")[0]
                break
    low = (lang or "").lower()
    if not low or low in ("c", "posix") or low.startswith(("c.", "posix.")):
        return True
    return low.startswith("zh")


def t(zh_tw: str, en: str) -> str:
    return zh_tw if zh() else en


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]{t('錯誤', 'error')}:[/] {message}", soft_wrap=True)
    raise SystemExit(code)


_BIDI_AND_FORMAT = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def safe(text: str) -> str:
    """Text from the wire or from a key, made harmless for a terminal: control characters are
    shown as their visible pictures (ESC as ␛, so `ESC[2K` cannot erase a line and draw a fake
    "Alice ✓"), bidi controls as <U+202E>, line breaks as ↵ (a new line could fake a sender).
    The caller still hands it to Rich as plain `Text`, never as markup."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\n":
            out.append("↵ ")
        elif o < 0x20:
            out.append(chr(0x2400 + o))
        elif o == 0x7F:
            out.append("␡")
        elif 0x80 <= o < 0xA0:
            out.append(f"<U+{o:04X}>")
        elif o in _BIDI_AND_FORMAT or o in (0x2028, 0x2029):
            out.append(f"<U+{o:04X}>")
        else:
            out.append(ch)
    return "".join(out)
