"""@mentions in a group text: which members it names, and @All.

A mention is "@" followed by one of a member's names (a petname, or the name in their key),
compared case-insensitively, the longest that fits: Chinese runs on without spaces, so the
name is found at the start of what follows, not cut out at the next space. `@All` (also
`@all`, `@所有人`) names everyone. A token naming a known person who is not a member is a
mistake the sender should hear about; one naming nobody is just text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ALL_WORDS = ("all", "所有人", "全體成員")
# "@" begins a mention at the start or after anything but the local part of an e-mail address
# (Chinese is written without spaces: "你好，@小美" and "謝謝@小美" both name 小美)
_AT = re.compile(r"(?<![A-Za-z0-9._%+\-])@")
_WORD = re.compile(r"[^\s@，,。.!！?？:：;；、()（）「」『』\[\]]{1,64}")


@dataclass
class Found:
    members: list[str] = field(default_factory=list)  # fingerprints, in the order named
    everyone: bool = False
    outsiders: list[str] = field(default_factory=list)  # tokens naming a non-member


def tokens(text: str) -> list[str]:
    """What follows each "@", up to a space or a punctuation mark."""
    out = []
    for at in _AT.finditer(text):
        word = _WORD.match(text, at.end())
        if word:
            out.append(word.group())
    return out


def _starts_with(low: str, name: str) -> bool:
    """`low` begins with the whole name (an ASCII name does not match inside a longer word:
    @al is not @alice)."""
    if not name or not low.startswith(name):
        return False
    after = low[len(name) : len(name) + 1]
    return not (name[-1].isascii() and name[-1].isalnum() and after.isascii() and after.isalnum())


def find(
    text: str,
    members: Mapping[str, list[str]],
    known: Callable[[str], str | None] = lambda _name: None,
) -> Found:
    """`members`: fingerprint → the names it goes by here; `known`: a name → the fingerprint
    of someone outside the group, if any (a contact), to report rather than ignore. A mention
    is the longest member name the text after "@" begins with."""
    names = sorted(
        ((n.casefold(), fp) for fp, ns in members.items() for n in ns if n),
        key=lambda p: -len(p[0]),
    )
    out = Found()
    for at in _AT.finditer(text):
        low = text[at.end() : at.end() + 80].casefold()
        if any(_starts_with(low, w) for w in ALL_WORDS):
            out.everyone = True
            continue
        who = next((fp for n, fp in names if _starts_with(low, n)), None)
        word = _WORD.match(text, at.end())
        if who is None and word and word.group().upper() in members:
            who = word.group().upper()
        if who is not None:
            if who not in out.members:
                out.members.append(who)
        elif word and known(word.group()) is not None:
            out.outsiders.append(word.group())
    return out


def completions(prefix: str, members: Mapping[str, list[str]]) -> list[str]:
    """Names a member goes by that start with `prefix` (for the input line's @ completion),
    with "All" first when it fits."""
    low = prefix.casefold()
    names = sorted({n for ns in members.values() for n in ns if n.casefold().startswith(low)})
    return (["All"] if "all".startswith(low) else []) + names
