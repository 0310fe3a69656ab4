"""A fork of the membership log, without sockets (the client library's `Groups` over real
GnuPG homes, messages handed over by hand): two admins change the group on the same head;
every member takes both changes — neither refused, whatever order their hashes put them in —
ends with the same log, and the lowest admin's client makes a key for the members as they
are, which reaches everyone (the one already in the group and the newcomer)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.group_fixtures import Crowd
from tits import wire
from tits.client.groups import Change, Groups, require_key
from tits.client.keyring import Keyring
from tits.client.store import LocalStore

NAMES = ["alice", "bob", "carol", "dave", "erin"]


class Member:
    def __init__(self, crowd: Crowd, name: str) -> None:
        home = crowd.homes[name]
        self.me = home.fingerprint
        self.store = LocalStore(home.path)
        self.keyring = Keyring(self.store, home.identity, self.me)
        _, cert, sig = home.certificate
        self.need_key = require_key(home.identity, None)
        self.groups = Groups(
            self.store, home.identity, self.me, self.keyring, (cert, sig, home.device.prove(cert)),
            require_key(home.identity, None),
        )  # fmt: skip

    def take(self, change: Change) -> bool:
        """Receive the frames of `change` addressed to us; whether we should rekey now."""
        rekey = False
        for env, body in change.frames:
            send = wire.CLIENT_DECODER.decode(env)
            if self.me not in send.to:
                continue
            d = wire.Deliver(id=send.id, sender=send.sender, to=send.to, group=send.group,
                             ts=time.time_ns() // 1_000_000)  # fmt: skip
            decoded = wire.BODY_DECODER.decode(body)
            assert isinstance(decoded, wire.GroupBody)
            _, again = self.groups.receive(d, decoded, self.need_key)
            rekey = rekey or again
        return rekey


@pytest.fixture
def members() -> Iterator[dict[str, Member]]:
    crowd = Crowd(12)
    ms = {n: Member(crowd, n) for n in NAMES}
    yield ms
    for m in ms.values():
        m.store.close()
    crowd.close()


def test_both_sides_of_a_fork_are_taken_and_the_lowest_admin_rekeys(
    members: dict[str, Member],
) -> None:
    alice, bob, carol, dave, erin = (members[n] for n in NAMES)
    gid = alice.groups.create("分岔", secure=False)
    invite = alice.groups.change(gid, "invite", [bob.me, carol.me, dave.me])
    for m in (bob, carol, dave):
        m.take(invite)
    admin = alice.groups.change(gid, "admin", [bob.me])
    for m in (bob, carol, dave):
        m.take(admin)

    # on the same head: Alice invites Erin while Bob removes Dave
    a = alice.groups.change(gid, "invite", [erin.me])
    b = bob.groups.change(gid, "remove", [dave.me])
    rekeys = {"alice": alice.take(b), "bob": bob.take(a), "carol": carol.take(a) | carol.take(b)}
    erin.take(a)
    dave.take(a)
    dave.take(b)

    final = {alice.me, bob.me, carol.me, erin.me}
    for m in (alice, bob, carol):
        state = m.groups.state(gid)
        assert state is not None and set(state.members) == final
    lowest = min((alice, bob), key=lambda m: m.me)
    assert rekeys == {"alice": lowest is alice, "bob": lowest is bob, "carol": False}

    # the lowest admin's key for the group as it is reaches everyone, with the whole log
    fresh = lowest.groups.rekey(gid)
    for m in (alice, bob, carol, erin):
        if m is not lowest:
            m.take(fresh)
    logs = {n: [e.raw for e in members[n].groups.log(gid).entries()] for n in NAMES if n != "dave"}  # type: ignore[union-attr]
    assert len({tuple(v) for v in logs.values()}) == 1
    for m in (alice, bob, carol, erin):
        assert m.keyring.for_sending(gid, sorted(final), time.time()) is not None
    assert dave.keyring.for_sending(gid, sorted(final), time.time()) is None
