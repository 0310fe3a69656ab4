"""Desktop notifications through the terminal: OSC 9 (iTerm2, Windows Terminal, kitty,
WezTerm, Ghostty) or OSC 777 (VTE terminals such as GNOME Terminal, foot, urxvt), chosen from
what the environment says the terminal is; a plain bell everywhere else. Only a sender's name
and what happened go into one: never the text of a message (a notification shows on a locked
screen, and stays in the desktop's history)."""

from __future__ import annotations

from collections.abc import Mapping

from .text import safe

_OSC9 = ("iTerm.app", "WezTerm", "ghostty", "vscode")


def sequence(env: Mapping[str, str], title: str, body: str) -> str:
    """The escape sequence that shows a notification here ("\\a" alone where none is known)."""
    title, body = _clean(title), _clean(body)
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if env.get("VTE_VERSION") or term.startswith(("foot", "rxvt")):
        return f"\x1b]777;notify;{title};{body}\x1b\\\a"
    if program in _OSC9 or env.get("WT_SESSION") or term == "xterm-kitty":
        return f"\x1b]9;{title}: {body}\x1b\\\a"
    return "\a"


def _clean(text: str) -> str:
    """Nothing that could end the sequence early or start another: no ESC, BEL, ";" (the
    field separator of OSC 777), and the visible pictures `safe` makes for the rest."""
    return safe(text).replace(";", ",").replace("\x1b", "").replace("\a", "")[:80]
