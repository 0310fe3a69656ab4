"""Petnames in HOME/contacts.toml (`tits.contacts`): add, remove, list, resolve."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tits.contacts import ContactError, Contacts, check_name
from tits.errors import ConfigError, TitsError

A = "A1" * 20
B = "B2" * 20
C = "0123456789ABCDEF" + "C3" * 12


def test_add_list_resolve(tmp_path: Path) -> None:
    c = Contacts(tmp_path)
    assert c.list() == []
    assert c.add("alice", A.lower()) == "alice"
    assert c.add("@陳小明", "0x" + B) == "陳小明"
    assert c.list() == [("alice", A), ("陳小明", B)]
    for who in ("alice", "@alice", "ALICE", " @Alice "):
        assert c.resolve(who) == A
    assert c.resolve("陳小明") == c.resolve("@陳小明") == B
    assert c.resolve(C) == C  # any fingerprint, contact or not
    assert c.resolve(C.lower()) == C
    assert c.resolve("0x" + A[-16:]) == A  # a long key id of one contact
    assert c.names_for(A) == ["alice"]
    # the file is TOML a person can read and edit
    assert tomllib.loads((tmp_path / "contacts.toml").read_text()) == {"alice": A, "陳小明": B}
    assert (tmp_path / "contacts.toml").stat().st_mode & 0o777 == 0o600


def test_unknown_and_ambiguous(tmp_path: Path) -> None:
    c = Contacts(tmp_path)
    with pytest.raises(ContactError, match="unknown contact '@bob'.*tits key fetch bob"):
        c.resolve("@bob")
    c.add("x1", "AAAAAAAA" + "1234567890ABCDEF" * 2)
    c.add("x2", "BBBBBBBB" + "1234567890ABCDEF" * 2)
    with pytest.raises(ContactError, match="matches 2 contacts"):
        c.resolve("1234567890ABCDEF")
    with pytest.raises(ContactError, match="empty"):
        c.resolve("  ")
    assert issubclass(ContactError, TitsError)


def test_names_are_unique_ignoring_case(tmp_path: Path) -> None:
    c = Contacts(tmp_path)
    c.add("Alice", A)
    assert c.add("alice", A) == "Alice"  # same key: nothing to do
    with pytest.raises(ContactError, match="already names"):
        c.add("ALICE", B)
    assert c.remove("@alice") == A
    assert c.list() == []
    with pytest.raises(ContactError, match="no contact named @alice"):
        c.remove("alice")


@pytest.mark.parametrize(
    "name",
    ["", "two words", "a/b", 'quo"te', "#group", "@@x", "x" * 65, "tab\tx", "nul\x00", A, "a:b"],
)
def test_unusable_names(name: str) -> None:
    with pytest.raises(ContactError):
        check_name(name)


def test_bad_fingerprint_and_broken_file(tmp_path: Path) -> None:
    c = Contacts(tmp_path)
    with pytest.raises(TitsError):
        c.add("carol", "1234")
    (tmp_path / "contacts.toml").write_text('carol = "not a fingerprint"\n')
    with pytest.raises(ConfigError, match="carol"):
        c.list()
    (tmp_path / "contacts.toml").write_text("carol = [1, 2]\n")
    with pytest.raises(ConfigError):
        c.resolve("carol")


@given(st.text(min_size=1, max_size=30))
def test_any_accepted_name_round_trips(name: str) -> None:
    import tempfile

    try:
        bare = check_name(name)
    except ContactError:
        return
    with tempfile.TemporaryDirectory() as d:
        c = Contacts(d)
        c.add(name, A)
        assert c.resolve("@" + bare) == A
        assert Contacts(d).list() == [(bare, A)]
