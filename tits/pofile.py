"""Read a gettext `.po` file and write the `.mo` that `gettext.GNUTranslations` reads.

Standard library only: the package build (setup.py) loads this file by path, before any
dependency is installed, and an editable install reads the `.po` sources through it directly.
Fuzzy and obsolete entries are left out, as `msgfmt` does.
"""

from __future__ import annotations

import ast
import struct
from dataclasses import dataclass, field


@dataclass
class Entry:
    msgid: str = ""
    msgstr: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    plurals: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> str:
        """The key in a `.mo` file: the context, EOT, then the id (plural ids NUL-joined)."""
        msgid = self.msgid if self.msgid_plural is None else f"{self.msgid}\0{self.msgid_plural}"
        return msgid if self.msgctxt is None else f"{self.msgctxt}\x04{msgid}"

    @property
    def value(self) -> str:
        if self.msgid_plural is None:
            return self.msgstr
        return "\0".join(self.plurals[i] for i in sorted(self.plurals))

    @property
    def translated(self) -> bool:
        if self.msgid_plural is None:
            return bool(self.msgstr)
        return bool(self.plurals) and all(self.plurals.values())


def _unquote(text: str, lineno: int) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"line {lineno}: expected a quoted string, got {text!r}")
    # a .po string is a C string; Python's escapes are a superset of the ones msgfmt writes
    value = ast.literal_eval(text)
    assert isinstance(value, str)
    return value


def parse(text: str) -> list[Entry]:
    """Every entry of a `.po` file, the header (msgid "") included, in file order."""
    entries: list[Entry] = []
    cur = Entry()
    started = False
    target: tuple[str, int] | None = None  # the field that continuation lines extend

    def finish() -> None:
        nonlocal cur, started, target
        if started:
            entries.append(cur)
        cur, started, target = Entry(), False, None

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            finish()
            continue
        if line.startswith("#"):
            if target is not None and target[0] != "msgctxt":
                finish()  # a comment after a msgstr starts the next entry
            if line.startswith("#,"):
                cur.flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
            continue
        if line.startswith('"'):
            if target is None:
                raise ValueError(f"line {lineno}: a string continues no field")
            name, index = target
            value = _unquote(line, lineno)
            if name == "msgstr[]":
                cur.plurals[index] += value
            else:
                setattr(cur, name, (getattr(cur, name) or "") + value)
            continue
        keyword, _, rest = line.partition(" ")
        if (
            keyword in ("msgctxt", "msgid")
            and target is not None
            and target[0].startswith("msgstr")
        ):
            finish()
        started = True
        cur.obsolete = cur.obsolete or obsolete
        if keyword.startswith("msgstr["):
            index = int(keyword[len("msgstr[") : -1])
            cur.plurals[index] = _unquote(rest, lineno)
            target = ("msgstr[]", index)
        elif keyword in ("msgctxt", "msgid", "msgid_plural", "msgstr"):
            setattr(cur, keyword, _unquote(rest, lineno))
            target = (keyword, 0)
        else:
            raise ValueError(f"line {lineno}: unknown keyword {keyword!r}")
    finish()
    return entries


def compile_mo(entries: list[Entry]) -> bytes:
    """The GNU `.mo` image of the translated, non-fuzzy, non-obsolete entries (and the header)."""
    table = {
        e.key: e.value
        for e in entries
        if not e.obsolete
        and (e.msgid == "" or (e.translated and "fuzzy" not in e.flags))
        and (e.msgid != "" or e.msgstr)
    }
    keys = sorted(table, key=lambda k: k.encode())
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(table[k].encode() + b"\0" for k in keys)
    n = len(keys)
    start = 7 * 4 + 16 * n  # header, then the two tables of (length, offset)
    offsets: list[int] = []
    pos = 0
    for k in keys:
        offsets += [len(k.encode()), start + pos]
        pos += len(k.encode()) + 1
    pos2 = 0
    for k in keys:
        offsets += [len(table[k].encode()), start + len(ids) + pos2]
        pos2 += len(table[k].encode()) + 1
    header = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    return header + struct.pack(f"<{len(offsets)}I", *offsets) + ids + strs


def compile_po(text: str) -> bytes:
    return compile_mo(parse(text))
