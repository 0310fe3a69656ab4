"""Secure chats on a real broker with keyd and real GnuPG: only confirmed people may be
invited; a text under an expired or replaced epoch is refused after the grace; the key
rotates by time and by count without anyone asking; a forged membership entry (signed by
Mallory naming Alice, or by a member without the right) is refused with a reason and changes
nothing; `share_history` gives a newcomer the earlier messages, and without it they read none.
"""

from __future__ import annotations

import time

import pytest

from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    Received,
    cloud1_fixture,
    crowd_fixture,
    entry_by,
    group_bundle_frame,
    log_entries,
    sealed_text_frame,
    send_raw,
    state_of,
)
from tests.proc_cloud import ProcCloud
from tits import wire
from tits.client import keyring as keyring_mod
from tits.client.blocking import Messenger
from tits.device import DeviceKey
from tits.errors import BrokerError, ConfigError, TitsError
from tits.session import Envelope, seal

pytestmark = pytest.mark.timeout(300)


def join(cloud: ProcCloud, crowd: Crowd, *names: str) -> dict[str, Received]:
    rs = {}
    for n in names:
        m = crowd.messenger(n, cloud.url(0), cloud.local.keyserver)
        crowd.confirm_all(m)
        rs[n] = Received(m)
    return rs


def secure_group(crowd: Crowd, rs: dict[str, Received], members: list[str]) -> bytes:
    alice = rs["alice"].m
    gid = alice.group_create("機密", secure=True)
    alice.group_change(gid, "invite", [crowd.fp(n) for n in members])
    want = {crowd.fp("alice")} | {crowd.fp(n) for n in members}
    for n in members:
        rs[n].until(lambda r: _members(r.m, gid) == want, 60, "the secure group")
    return gid


def _members(m: Messenger, gid: bytes) -> set[str]:
    state = m.client.groups.state(gid)
    return set(state.members) if state else set()


def _has(r: Received, msg_id: bytes) -> bool:
    return msg_id in {m.id for m in r.messages}


def _epoch_of(r: Received, gid: bytes, msg_id: bytes) -> int:
    raw = next(b for m, b in r.m.store.raw_history(gid) if m.id == msg_id)
    body = wire.BODY_DECODER.decode(raw)
    assert isinstance(body, wire.SealedBody)
    return body.epoch


def test_only_confirmed_people_may_be_invited(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    alice = rs["alice"].m
    carol = crowd.fp("carol")
    alice.store.db.execute("DELETE FROM confirmed WHERE fp=?", (carol,))  # never confirmed
    gid = alice.group_create("只限確認", secure=True)
    head = state_of(alice, gid).head
    with pytest.raises(ConfigError) as err:
        alice.group_change(gid, "invite", [crowd.fp("bob"), carol])
    assert carol in err.value.message and "tits contact confirm" in err.value.message
    assert state_of(alice, gid).head == head  # nothing made, nothing sent
    assert alice.store.outbox() == []

    # a confirmed contact whose key then changes is not sent to until confirmed again
    alice.group_change(gid, "invite", [crowd.fp("bob")])
    rs["bob"].until(lambda r: crowd.fp("bob") in _members(r.m, gid), 60, "bob in")
    ok = alice.send_text([], "確認過的", group=gid)
    rs["bob"].until(lambda r: _has(r, ok), 60, "the text to bob")
    alice.store.confirm(crowd.fp("bob"), ["0000000000000000"])  # not bob's subkeys now
    with pytest.raises(BrokerError) as sent:
        alice.send_text([], "鑰匙變了", group=gid)
    assert "confirm" in sent.value.message


def test_an_expired_epoch_is_refused_and_the_key_rotates_by_time(
    cloud1: ProcCloud, crowd: Crowd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring_mod, "GRACE_S", 0.5)
    rs = join(cloud1, crowd, "alice", "bob")
    alice, bob = rs["alice"].m, rs["bob"]
    # a secure key lives 6 s here (`tits config set rotate_after` takes 10 minutes at least)
    alice.client.keyring.rotate_s = 6.0
    gid = secure_group(crowd, rs, ["bob"])
    fresh = alice.send_text([], "新鮮的", group=gid)
    bob.until(lambda r: _has(r, fresh), 60, "the fresh text")
    row = alice.store.epoch(gid, _epoch_of(bob, gid, fresh))
    assert row is not None and row.key.expires > 0
    first = row.key

    # the key's lifetime passes: the next text goes under a new epoch, nobody asked for it
    time.sleep(max(0.0, first.expires - time.time()) + 1.0)
    rotated = alice.send_text([], "換了鑰匙", group=gid)
    bob.until(lambda r: _has(r, rotated), 60, "the text under the new key")
    assert _epoch_of(bob, gid, rotated) != first.epoch
    assert [m.verified for m in bob.messages if m.id in (fresh, rotated)] == [True, True]

    # a text under the expired epoch, after the grace: refused with the reason
    stale = sealed_text_frame(alice, gid, first, "過期的鑰匙")
    send_raw(alice, [stale])
    bob.until(lambda r: any(x.id == stale[0].id for x in r.refused), 60, "the refusal")
    (why,) = [x.reason for x in bob.refused if x.id == stale[0].id]
    assert "expired or was replaced" in why
    assert not _has(bob, stale[0].id)


def test_a_replaced_epoch_is_refused_after_the_grace(
    cloud1: ProcCloud, crowd: Crowd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring_mod, "GRACE_S", 0.5)
    rs = join(cloud1, crowd, "alice", "bob", "carol")
    alice, bob = rs["alice"].m, rs["bob"]
    gid = secure_group(crowd, rs, ["bob"])
    before = alice.client.keyring.for_sending(gid, sorted(_members(alice, gid)), time.time())
    assert before is not None
    alice.group_change(gid, "invite", [crowd.fp("carol")])  # a new epoch replaces it
    bob.until(lambda r: crowd.fp("carol") in _members(r.m, gid), 60, "carol in")
    time.sleep(1.0)  # past the grace
    old = sealed_text_frame(alice, gid, before, "舊的一代", to=[crowd.fp("bob")])
    send_raw(alice, [old])
    bob.until(lambda r: any(x.id == old[0].id for x in r.refused), 60, "the refusal")
    (why,) = [x.reason for x in bob.refused if x.id == old[0].id]
    assert "expired or was replaced" in why
    # while the current epoch opens
    now = alice.send_text([], "新的一代", group=gid)
    bob.until(lambda r: _has(r, now), 60, "the text under the new epoch")


def test_the_key_rotates_after_rotate_messages(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    alice, bob = rs["alice"].m, rs["bob"]
    alice.client.keyring.rotate_messages = 2  # what `tits config set rotate_messages 2` sets
    gid = secure_group(crowd, rs, ["bob"])
    ids = [alice.send_text([], f"第 {i} 則", group=gid) for i in range(5)]
    bob.until(lambda r: all(_has(r, i) for i in ids), 60, "five texts")
    epochs = [_epoch_of(bob, gid, i) for i in ids]
    assert epochs[0] == epochs[1] != epochs[2] == epochs[3] != epochs[4]
    assert bob.refused == [] and all(m.verified for m in bob.messages)


def test_forged_membership_entries_are_refused_with_a_reason(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob", "mallory")
    gid = secure_group(crowd, rs, ["bob", "mallory"])
    mallory = rs["mallory"].m
    members = _members(rs["alice"].m, gid)
    head = state_of(rs["alice"].m, gid).head

    # 1. signed by Mallory, naming Alice as the one who removes Bob
    forged = entry_by(mallory, gid, "remove", crowd.fp("alice"), [crowd.fp("bob")])
    f1 = group_bundle_frame(mallory, gid, [forged])
    # 2. signed by Mallory as herself, a plain member: in a secure group only admins invite
    grab = entry_by(mallory, gid, "invite", mallory.me, [crowd.fp("niaj")])
    f2 = group_bundle_frame(mallory, gid, [grab])
    send_raw(mallory, [f1, f2])

    for n in ("alice", "bob"):
        r = rs[n]
        r.until(lambda r: {f1[0].id, f2[0].id} <= {x.id for x in r.refused}, 60, "refusals")
        reasons = {x.id: x.reason for x in r.refused}
        assert reasons[f1[0].id].startswith("bad-signature:"), reasons[f1[0].id]
        assert reasons[f2[0].id].startswith("not-allowed:"), reasons[f2[0].id]
        state = state_of(r.m, gid)
        assert set(state.members) == members  # nobody removed, nobody added
        applied = [a.hash for a in log_entries(r.m, gid).applied()]
        assert head in applied and len(applied) == 2  # create, invite: nothing else applied

    # and the group goes on: Alice's next change and text reach everyone
    text = rs["alice"].m.send_text([], "照常", group=gid)
    for n in ("bob", "mallory"):
        rs[n].until(lambda r: _has(r, text), 60, "the text after")


def test_share_history_gives_a_newcomer_the_past_and_its_absence_does_not(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob", "carol", "dave")
    alice = rs["alice"].m
    gid = secure_group(crowd, rs, ["bob"])
    m1 = alice.send_text([], "過去一：Alice", group=gid)
    m2 = rs["bob"].m.send_text([], "過去二：Bob", group=gid)
    rs["alice"].until(lambda r: _has(r, m2), 60, "bob's text at alice")
    rs["bob"].until(lambda r: _has(r, m1), 60, "alice's text at bob")

    alice.group_change(gid, "invite", [crowd.fp("carol")], share_history=True)
    carol = rs["carol"]
    carol.until(lambda r: _has(r, m1) and _has(r, m2), 60, "the shared history")
    past = {m.id: m for m in carol.messages if m.id in (m1, m2)}
    assert past[m1].text == "過去一：Alice" and past[m2].text == "過去二：Bob"
    assert all(m.verified and not m.outgoing for m in past.values())
    assert past[m1].sender == crowd.fp("alice") and past[m2].sender == crowd.fp("bob")
    assert carol.refused == []

    alice.group_change(gid, "invite", [crowd.fp("dave")])
    dave = rs["dave"]
    dave.until(lambda r: crowd.fp("dave") in _members(r.m, gid), 60, "dave in")
    now = alice.send_text([], "現在", group=gid)
    dave.until(lambda r: _has(r, now), 60, "the text after dave joined")
    dave.drain(1.5)
    assert not _has(dave, m1) and not _has(dave, m2)
    # and he could not if he tried: no key he holds is an epoch of the earlier texts
    old_epochs = {_epoch_of(rs["alice"], gid, m2), _epoch_of(rs["bob"], gid, m1)}
    held = {row.key.epoch for row in dave.m.store.epochs(gid)}
    assert held and not (held & old_epochs)


def test_an_empty_secure_group_and_a_plain_member_inviting_are_clear_errors(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    alice = rs["alice"].m
    gid = alice.group_create("一個人", secure=True)
    with pytest.raises(BrokerError) as err:
        alice.send_text([], "有人嗎", group=gid)
    assert "nobody else" in err.value.message
    # a plain member of a secure group may not invite (only admins)
    alice.group_change(gid, "invite", [crowd.fp("bob")])
    rs["bob"].until(lambda r: crowd.fp("bob") in _members(r.m, gid), 60, "bob in")
    crowd.confirm_all(rs["bob"].m)
    with pytest.raises(TitsError) as no:
        rs["bob"].m.group_change(gid, "invite", [crowd.fp("carol")])
    assert no.value.code == "not-allowed"


def test_an_unverifiable_text_in_a_secure_chat_is_refused_with_the_reason(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    """Sealed under the group's current key, from Alice's own connection, but signed by a
    device key no certificate of hers names: a normal chat would show it unverified; a
    secure one refuses it, and shows why."""
    rs = join(cloud1, crowd, "alice", "bob")
    alice, bob = rs["alice"].m, rs["bob"]
    gid = secure_group(crowd, rs, ["bob"])
    key = alice.client.keyring.for_sending(gid, sorted(_members(alice, gid)), time.time())
    assert key is not None
    to = [crowd.fp("bob")]
    send = wire.Send(id=wire.new_msg_id(), sender=alice.me, to=to, group=gid)
    env = Envelope(send.id, alice.me, to, gid)
    forged = seal(key, DeviceKey.generate(), env, "沒有簽名的".encode(), serial=time.time_ns())
    send_raw(alice, [(send, forged)])
    good = alice.send_text([], "有簽名的", group=gid)
    bob.until(lambda r: _has(r, good) and any(x.id == send.id for x in r.refused), 60, "both")
    (why,) = [x.reason for x in bob.refused if x.id == send.id]
    assert "unverifiable" in why
    assert not _has(bob, send.id)
