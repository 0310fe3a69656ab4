"""Petnames: the user's own names for fingerprints, kept in HOME/contacts.toml.

    "alice" = "0123…CDEF"        # one line per contact: "name" = "40-hex fingerprint"

A name is yours alone; nobody else can make `@alice` mean another key. Names are matched
case-insensitively and are unique that way. `resolve` is what `tits send WHO` calls.
"""

from __future__ import annotations

import builtins
import json
import os
import re
from pathlib import Path

from .config import read_toml
from .errors import ConfigError, IdentityError, TitsError
from .identity import FINGERPRINT_RE, normalise_fingerprint

_NAME_RE = re.compile(r"^[^\s@#:\"'\\/\x00-\x1f\x7f][^\s:\"'\\/\x00-\x1f\x7f]{0,63}\Z")
_HEX_RE = re.compile(r"^(?:0[xX])?[0-9A-Fa-f]{16,40}\Z")


class ContactError(TitsError):
    code = "contact"


def check_name(name: str) -> str:
    """A petname, without a leading '@': 1–64 characters, no spaces, quotes or slashes."""
    bare = name.removeprefix("@")
    if not _NAME_RE.match(bare):
        raise ContactError(
            f"unusable contact name {name[:70]!r}: 1–64 characters, no spaces, quotes, "
            "slashes or colons, not starting with @ or #"
        )
    if FINGERPRINT_RE.match(bare.upper()):
        raise ContactError("a contact name cannot look like a fingerprint")
    return bare


class Contacts:
    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.path = self.home / "contacts.toml"

    def _load(self) -> dict[str, str]:
        data = read_toml(self.path)
        out: dict[str, str] = {}
        for name, fp in data.items():
            if not isinstance(fp, str):
                raise ConfigError(f"{self.path}: {name!r} is not a fingerprint")
            try:
                out[name] = normalise_fingerprint(fp)
            except IdentityError as exc:
                raise ConfigError(f"{self.path}: {name!r}: {exc.message}") from None
        return out

    def _save(self, contacts: dict[str, str]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{json.dumps(n, ensure_ascii=False)} = {json.dumps(fp)}"
            for n, fp in sorted(contacts.items(), key=lambda item: item[0].casefold())
        ]
        tmp = self.path.with_suffix(".toml.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(
                "# ω IM contacts: petname = fingerprint\n" + "".join(f"{ln}\n" for ln in lines)
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def add(self, name: str, fingerprint: str) -> str:
        """Name a fingerprint; return the name as stored. Refuses a name taken by another key."""
        bare = check_name(name)
        fp = normalise_fingerprint(fingerprint)
        contacts = self._load()
        for existing, existing_fp in contacts.items():
            if existing.casefold() == bare.casefold():
                if existing_fp == fp:
                    return existing
                raise ContactError(
                    f"@{existing} already names {existing_fp}; "
                    f"remove it first (`tits contact remove {existing}`)"
                )
        contacts[bare] = fp
        self._save(contacts)
        return bare

    def remove(self, name: str) -> str:
        """Forget a petname; return the fingerprint it named."""
        contacts = self._load()
        key = self._match_name(contacts, name.removeprefix("@"))
        if key is None:
            raise ContactError(f"no contact named @{name.removeprefix('@')}")
        fp = contacts.pop(key)
        self._save(contacts)
        return fp

    def list(self) -> list[tuple[str, str]]:
        """(name, fingerprint) pairs, sorted by name."""
        return sorted(self._load().items(), key=lambda item: item[0].casefold())

    def names_for(self, fingerprint: str) -> builtins.list[str]:
        fp = normalise_fingerprint(fingerprint)
        return [n for n, f in self.list() if f == fp]

    @staticmethod
    def _match_name(contacts: dict[str, str], name: str) -> str | None:
        folded = name.casefold()
        for existing in contacts:
            if existing.casefold() == folded:
                return existing
        return None

    def resolve(self, who: str) -> str:
        """A fingerprint for `who`: a 40-hex fingerprint, `@name` or `name` of a contact, or
        the long key id / fingerprint tail (≥16 hex) of exactly one contact."""
        text = who.strip()
        if not text:
            raise ContactError("empty recipient")
        try:
            return normalise_fingerprint(text)
        except IdentityError:
            pass
        contacts = self._load()
        name = text.removeprefix("@")
        key = self._match_name(contacts, name)
        if key is not None:
            return contacts[key]
        if not text.startswith("@") and _HEX_RE.match(text.replace(" ", "")):
            tail = text.replace(" ", "").upper().removeprefix("0X")
            hits = sorted({fp for fp in contacts.values() if fp.endswith(tail)})
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ContactError(
                    f"{text!r} matches {len(hits)} contacts ({', '.join(hits)}); "
                    "give the whole fingerprint"
                )
        raise ContactError(
            f"unknown contact {text[:70]!r}: give a 40-hex fingerprint, or name one with "
            f"`tits key fetch {name[:70]}` or `tits contact add NAME FINGERPRINT`"
        )
