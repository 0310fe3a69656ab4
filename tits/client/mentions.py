"""@mentions in a group text: which members it names, and @All.

A token is "@" followed by a name, at the start of the text or after a space (so an e-mail
address is not a mention). It names a member when it equals one of that member's names (a
petname, or the name in their key), compared case-insensitively; `@All` (also `@all`,
`@所有人`) names everyone. A token naming a known person who is not a member is a mistake the
sender should hear about; one naming nobody is just text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ALL_WORDS = frozenset({"all", "所有人", "全體成員"})
_TOKEN = re.compile(r"(?:^|(?<=\s))@([^\s@]{1,64})")
_TRAILING = "，,。.!！?？:：;；、)）]」』"


@dataclass
class Found:
    members: list[str] = field(default_factory=list)  # fingerprints, in the order named
    everyone: bool = False
    outsiders: list[str] = field(default_factory=list)  # tokens naming a non-member


def tokens(text: str) -> list[str]:
    return [m.group(1).rstrip(_TRAILING) for m in _TOKEN.finditer(text)]


def find(
    text: str,
    members: Mapping[str, list[str]],
    known: Callable[[str], str | None] = lambda _name: None,
) -> Found:
    """`members`: fingerprint → the names it goes by here; `known`: a name → the fingerprint
    of someone outside the group, if any (a contact), to report rather than ignore."""
    by_name: dict[str, str] = {}
    for fp, names in members.items():
        for name in names:
            by_name.setdefault(name.casefold(), fp)
    out = Found()
    for token in tokens(text):
        if not token:
            continue
        if token.casefold() in ALL_WORDS:
            out.everyone = True
            continue
        who = by_name.get(token.casefold())
        if who is None and token.upper() in members:
            who = token.upper()
        if who is not None:
            if who not in out.members:
                out.members.append(who)
        elif known(token) is not None:
            out.outsiders.append(token)
    return out


def completions(prefix: str, members: Mapping[str, list[str]]) -> list[str]:
    """Names a member goes by that start with `prefix` (for the input line's @ completion),
    with "All" first when it fits."""
    low = prefix.casefold()
    names = sorted({n for ns in members.values() for n in ns if n.casefold().startswith(low)})
    return (["All"] if "all".startswith(low) else []) + names
