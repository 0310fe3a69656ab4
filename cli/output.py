"""What a person (Rich) or a script (`--json`, one object a line) reads from the client."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def zh() -> bool:
    """Traditional Chinese first: English only when the locale asks for it."""
    lang = os.environ.get("TITS_LANG") or os.environ.get("LC_ALL") or os.environ.get("LANG") or ""
    return not lang.lower().startswith("en")


def t(zh_tw: str, en: str) -> str:
    return zh_tw if zh() else en


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]{t('錯誤', 'error')}:[/] {message}", soft_wrap=True)
    raise SystemExit(code)
