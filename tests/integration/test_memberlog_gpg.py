"""The membership log with real GnuPG: entries signed by `Identity.sign_detached`, merged with
`Identity.verify_detached`, each checkable with plain `gpg --verify`; a forged entry refused;
a log already known merged again without running gpg at all."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Users
from tests.support import kill_agent, short_tmpdir
from tits.client.memberlog import (
    Entry,
    MemberLog,
    Op,
    SignedEntry,
    VerifyFn,
    decode_entry,
    encode_entry,
    entry_hash,
    export_for_gpg,
    make_entry,
    new_group_id,
    sign_entry,
)
from tits.home import Home


class Counting:
    """Wraps a verify callable and counts its calls: each one is a gpg process."""

    def __init__(self, verify: VerifyFn) -> None:
        self.verify = verify
        self.calls = 0

    def __call__(self, raw: bytes, signature: str, expected: str) -> None:
        self.calls += 1
        self.verify(raw, signature, expected)


class Member:
    """One user's client side of a group: their log, signing with their own key."""

    def __init__(self, home: Home, group: str) -> None:
        self.home, self.fp = home, home.fingerprint
        self.log = MemberLog(group)
        self.verify = Counting(home.identity.verify_detached)
        self.ts = 0

    def act(self, op: Op, **kw: object) -> SignedEntry:
        self.ts += 1
        entry = make_entry(self.log.state, op, self.fp, group=self.log.group, ts=self.ts, **kw)  # type: ignore[arg-type]
        se = sign_entry(entry, self.home.identity.sign_detached)
        result = self.log.add_own(se)  # our own signature: no gpg
        assert result.applied and not result.refused, result.refused
        return se

    def receive(self, entries: list[SignedEntry]) -> None:
        result = self.log.merge(entries, self.verify)
        assert result.problems == [], result.problems


@pytest.fixture
def stock_gpg(users: Users) -> Iterator[list[str]]:
    """A fresh GnuPG home holding the three public keys: `gpg` as anyone would run it."""
    home = short_tmpdir("ml-gpg-")
    try:
        for h in users.all:
            subprocess.run(
                ["gpg", "--homedir", str(home), "--batch", "--import"],
                input=h.identity.export_public(h.fingerprint).encode(),
                check=True,
                capture_output=True,
                timeout=30,
            )
        yield ["gpg", "--homedir", str(home), "--batch", "--status-fd", "1"]
    finally:
        kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def gpg_verify(gpg: list[str], signed: SignedEntry, where: Path) -> str | None:
    """Plain `gpg --verify entry.json.asc entry.json`: the signer's fingerprint, or None."""
    data, signature = export_for_gpg(signed)
    (where / "entry.json").write_bytes(data)
    (where / "entry.json.asc").write_text(signature)
    out = subprocess.run(
        [*gpg, "--verify", str(where / "entry.json.asc"), str(where / "entry.json")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    for line in out.stdout.splitlines():
        if line.startswith("[GNUPG:] VALIDSIG ") and out.returncode == 0:
            return line.split()[-1]  # the primary key's fingerprint
    return None


def test_a_group_signed_with_gnupg(users: Users, stock_gpg: list[str], tmp_path: Path) -> None:
    alice, bob, mallory = users.alice, users.bob, users.mallory
    group = new_group_id(alice.fingerprint)
    a, b = Member(alice, group), Member(bob, group)

    a.act("create", name="Hikers 🥾")
    a.act("invite", targets=[bob.fingerprint, mallory.fingerprint])
    a.act("admin", targets=[bob.fingerprint])
    b.receive(a.log.entries())
    assert b.verify.calls == 3 and b.log.state == a.log.state
    b.act("rename", name="Hikers")
    b.act("remove", targets=[mallory.fingerprint])
    a.receive(b.log.entries())
    assert a.verify.calls == 2  # only Bob's two new entries went to gpg
    assert a.log.state == b.log.state
    state = a.log.state
    assert state is not None and state.name == "Hikers"
    assert sorted(state.members) == sorted([alice.fingerprint, bob.fingerprint])

    # every entry checks with plain GnuPG, signed by exactly its actor
    for se in a.log.entries():
        assert gpg_verify(stock_gpg, se, tmp_path) == decode_entry(se.raw).actor
    tampered = SignedEntry(raw=a.log.entries()[1].raw.replace(b'"ts":2', b'"ts":3'),
                           signature=a.log.entries()[1].signature)  # fmt: skip
    assert gpg_verify(stock_gpg, tampered, tmp_path) is None


def test_a_forged_entry_is_refused(users: Users, stock_gpg: list[str], tmp_path: Path) -> None:
    """Mallory, a plain member, signs an entry naming Alice as its actor (Alice may remove
    Bob; Mallory may not): gpg calls her signature good, the log refuses it."""
    alice, bob, mallory = users.alice, users.bob, users.mallory
    a = Member(alice, new_group_id(alice.fingerprint))
    a.act("create", name="Team")
    a.act("invite", targets=[bob.fingerprint, mallory.fingerprint])
    b = Member(bob, a.log.group)
    b.receive(a.log.entries())
    before = b.log.state

    entry = make_entry(
        before, "remove", alice.fingerprint, group=a.log.group, targets=[bob.fingerprint], ts=9
    )
    raw = encode_entry(entry)
    forged = SignedEntry(
        raw=raw, signature=mallory.identity.sign_detached(raw, mallory.fingerprint)
    )
    # stock gpg finds a good signature, by Mallory: why the log compares fingerprints
    assert gpg_verify(stock_gpg, forged, tmp_path) == mallory.fingerprint
    result = b.log.merge([forged], b.verify)
    assert [(r.hash, r.code) for r in result.refused] == [(entry_hash(raw), "bad-signature")]
    assert alice.fingerprint in result.refused[0].reason  # "... expected <Alice>"
    assert not result.applied and b.log.state == before and len(b.log) == 2

    # signed honestly by Mallory as herself, it is a good signature without the right
    own = sign_entry(
        make_entry(
            None,
            "create",
            mallory.fingerprint,
            group=new_group_id(mallory.fingerprint),
            name="x",
            ts=0,
        ),  # fmt: skip
        mallory.identity.sign_detached,
    )
    assert b.log.merge([own], b.verify).refused[0].code == "wrong-group"
    mine = Entry(
        group=a.log.group,
        prev=before.head if before else None,
        op="remove",
        actor=mallory.fingerprint,
        targets=[bob.fingerprint],
        ts=10,
    )
    result = b.log.merge([sign_entry(mine, mallory.identity.sign_detached)], b.verify)
    assert [r.code for r in result.refused] == ["not-allowed"]
    assert b.log.is_member(bob.fingerprint)


def test_merging_a_known_log_runs_no_gpg(users: Users) -> None:
    alice, bob = users.alice, users.bob
    a = Member(alice, new_group_id(alice.fingerprint))
    a.act("create", name="Quiet")
    for i in range(6):
        a.act("rename", name=f"Quiet {i}")
    a.act("invite", targets=[bob.fingerprint])
    b = Member(bob, a.log.group)
    b.receive(list(reversed(a.log.entries())))  # children first: placed, then verified once
    assert b.verify.calls == len(a.log) == 8
    for _ in range(3):
        result = b.log.merge(a.log.entries(), b.verify)
        assert not result.changed and result.problems == []
    assert b.verify.calls == 8
    assert b.log.state == a.log.state
