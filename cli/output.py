"""What a person (Rich) or a script (`--json`, one object a line) reads from the client."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from tits.i18n import _, choose_lang, zh

__all__ = ["choose_lang", "console", "emit_json", "err_console", "fail", "safe", "t", "zh"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def t(zh_tw: str, en: str) -> str:
    """Deprecated: write `_("English")` (tits.i18n) and put the zh-TW text in the catalog.
    `scripts/i18n-convert` turns the calls that are left into that; a test lists them."""
    return zh_tw if zh() else en


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> None:
    # the message as it is (a "[…]" in it is text, not Rich markup)
    err_console.print(Text.assemble((_("error: "), "bold red"), message), soft_wrap=True)
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
