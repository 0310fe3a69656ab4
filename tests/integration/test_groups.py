"""Bad input to groups, on a real broker with keyd and real GnuPG: each is refused with a
reason (or is a clear error at the sender), nothing of it is applied, and the group goes on.

- a group text from someone who is not a member: a removed member still holding the old
  key, and someone who never was;
- a wrapped key for another group, and a key for an epoch that exists with another key;
- a 500-member invite list, a 10,000-character name, control and bidi characters in a name,
  an empty name, and a group with nobody else in it.
"""

from __future__ import annotations

import time

import pytest

from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    Received,
    cloud1_fixture,
    crowd_fixture,
    group_bundle_frame,
    log_entries,
    sealed_text_frame,
    send_raw,
    state_of,
)
from tests.proc_cloud import ProcCloud
from tits import wire
from tits.client import inbox as inbox_mod
from tits.client import keyring as keyring_mod
from tits.client import memberlog as ml
from tits.client.blocking import Messenger
from tits.errors import BrokerError, ConfigError
from tits.session import SessionKey

pytestmark = pytest.mark.timeout(300)


def join(cloud: ProcCloud, crowd: Crowd, *names: str) -> dict[str, Received]:
    return {n: Received(crowd.messenger(n, cloud.url(0), cloud.local.keyserver)) for n in names}


def _members(m: Messenger, gid: bytes) -> set[str]:
    state = m.client.groups.state(gid)
    return set(state.members) if state else set()


def _has(r: Received, msg_id: bytes) -> bool:
    return msg_id in {m.id for m in r.messages}


def group_of(crowd: Crowd, rs: dict[str, Received], members: list[str]) -> bytes:
    alice = rs["alice"].m
    gid = alice.group_create("壞輸入")
    alice.group_change(gid, "invite", [crowd.fp(n) for n in members])
    want = {crowd.fp("alice")} | {crowd.fp(n) for n in members}
    for n in members:
        rs[n].until(lambda r: _members(r.m, gid) == want, 60, "the group")
    return gid


def refused_reason(r: Received, msg_id: bytes) -> str:
    r.until(lambda r: any(x.id == msg_id for x in r.refused), 60, "the refusal")
    (why,) = [x.reason for x in r.refused if x.id == msg_id]
    return why


def test_a_removed_member_with_the_old_key_is_refused(
    cloud1: ProcCloud, crowd: Crowd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring_mod, "GRACE_S", 0.5)
    rs = join(cloud1, crowd, "alice", "bob", "mallory")
    gid = group_of(crowd, rs, ["bob", "mallory"])
    mallory = rs["mallory"].m
    old = mallory.client.keyring.for_sending(gid, sorted(_members(mallory, gid)), time.time())
    assert old is not None
    rs["alice"].m.group_change(gid, "remove", [crowd.fp("mallory")])
    rs["bob"].until(lambda r: crowd.fp("mallory") not in _members(r.m, gid), 60, "removal")
    rs["mallory"].until(lambda r: mallory.me not in _members(r.m, gid), 60, "she is out")
    time.sleep(1.0)  # past the grace for texts in flight
    # her client would not send to the group any more; a hostile one seals with the key she
    # still holds and addresses Bob and Alice by hand
    frame = sealed_text_frame(mallory, gid, old, "我還在", to=[crowd.fp("alice"), crowd.fp("bob")])
    send_raw(mallory, [frame])
    why = refused_reason(rs["bob"], frame[0].id)
    assert "not a member" in why
    assert not _has(rs["bob"], frame[0].id)
    assert rs["bob"].m.store.message(frame[0].id) is None


def test_a_text_from_someone_who_never_was_a_member_is_refused(
    cloud1: ProcCloud, crowd: Crowd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_mod, "KEY_WAIT_S", 3.0)  # held this long for a key, then refused
    rs = join(cloud1, crowd, "alice", "bob", "mallory")
    gid = group_of(crowd, rs, ["bob"])
    mallory = rs["mallory"].m
    to = [crowd.fp("alice"), crowd.fp("bob")]
    key = SessionKey.generate(gid, 77, members=sorted([mallory.me, *to]))
    text = sealed_text_frame(mallory, gid, key, "我也是成員", to=to)
    send_raw(mallory, [text])
    # and a bundle from her with a key for the group, the log as a member forwarded it
    log = rs["alice"].m.client.groups.log(gid)
    assert log is not None
    made = SessionKey.generate(gid, 78, members=sorted([mallory.me, *to]), creator=mallory.me)
    bundle = group_bundle_frame(mallory, gid, keys=[made], log=log.entries(), to=to)
    send_raw(mallory, [bundle])
    bob = rs["bob"]
    assert "not a member" in refused_reason(bob, bundle[0].id)
    assert bob.m.store.epoch(gid, 78) is None
    why = refused_reason(bob, text[0].id)  # held for its key, then refused
    assert "no session key" in why or "not a member" in why
    assert not _has(bob, text[0].id)
    assert _members(bob.m, gid) == {crowd.fp("alice"), crowd.fp("bob")}


def test_a_wrapped_key_for_another_group_is_refused(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    g1 = group_of(crowd, rs, ["bob"])
    g2 = group_of(crowd, rs, ["bob"])
    # two groups of one name: the name alone is refused, naming both ids
    with pytest.raises(ConfigError) as taken:
        rs["alice"].m.client.groups.find("#壞輸入")
    assert g1.hex() in taken.value.message and g2.hex() in taken.value.message
    bob = rs["bob"].m
    members = sorted(_members(bob, g1))
    state = bob.client.groups.state(g1)
    assert state is not None
    other = SessionKey.generate(g2, 4242, members=members, creator=bob.me,
                                basis=state.epoch_basis)  # fmt: skip
    frame = group_bundle_frame(bob, g1, keys=[other])
    send_raw(bob, [frame])
    why = refused_reason(rs["alice"], frame[0].id)
    assert "another group" in why
    alice = rs["alice"].m
    assert alice.store.epoch(g2, 4242) is None and alice.store.epoch(g1, 4242) is None
    # and both groups go on
    t1 = alice.send_text([], "一組", group=g1)
    t2 = alice.send_text([], "二組", group=g2)
    rs["bob"].until(lambda r: _has(r, t1) and _has(r, t2), 60, "both texts")


def test_a_key_for_an_epoch_that_exists_with_another_key_is_refused(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    gid = group_of(crowd, rs, ["bob"])
    bob, alice = rs["bob"].m, rs["alice"].m
    members = sorted(_members(bob, gid))
    current = bob.client.keyring.for_sending(gid, members, time.time())
    assert current is not None
    state = bob.client.groups.state(gid)
    assert state is not None
    rival = SessionKey.generate(gid, current.epoch, members=members, creator=bob.me,
                                basis=state.epoch_basis)  # fmt: skip
    frame = group_bundle_frame(bob, gid, keys=[rival])
    send_raw(bob, [frame])
    why = refused_reason(rs["alice"], frame[0].id)
    assert "already exists with another key" in why
    row = alice.store.epoch(gid, current.epoch)
    assert row is not None and row.key.key == current.key  # the first key stands
    text = alice.send_text([], "照舊", group=gid)
    rs["bob"].until(lambda r: _has(r, text), 60, "the text under the first key")


def test_a_500_member_invite_list_is_a_clear_error_at_once(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice")
    alice = rs["alice"].m
    gid = alice.group_create("大群")
    head = state_of(alice, gid).head
    many = [f"{i:040X}" for i in range(1, 501)]  # fingerprints nobody has keys for
    t = time.monotonic()
    with pytest.raises(ml.GroupError) as err:
        alice.group_change(gid, "invite", many)
    assert err.value.code == "too-many-targets"
    assert "at most 100" in err.value.message
    assert time.monotonic() - t < 30  # not 500 key-server look-ups first
    assert state_of(alice, gid).head == head
    assert alice.store.outbox() == []


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("名" * 10_000, "at most 64 characters"),
        ("tea\x07time", "control characters"),
        ("line\nbreak", "control characters"),
        ("evil\u202egnp.exe", "bidi"),
        ("   ", "needs a name"),
        ("", "needs a name"),
    ],
)
def test_bad_group_names_are_clear_errors(
    cloud1: ProcCloud, crowd: Crowd, name: str, what: str
) -> None:
    rs = join(cloud1, crowd, "alice")
    alice = rs["alice"].m
    with pytest.raises(ml.GroupError) as err:
        alice.group_create(name)
    assert err.value.code == "bad-name" and what in err.value.message
    assert len(err.value.message) < 200  # the name is not echoed back
    assert alice.store.groups() == []
    gid = alice.group_create("好名字")
    with pytest.raises(ml.GroupError) as again:  # checked before anything is signed
        alice.client.groups.change(gid, "rename", [], name=name)
    assert again.value.code == "bad-name"
    assert [n for _, n, _ in alice.store.groups()] == ["好名字"]


def test_a_group_with_nobody_else_is_a_clear_error(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice")
    alice = rs["alice"].m
    gid = alice.group_create("空的")
    with pytest.raises(BrokerError) as err:
        alice.send_text([], "有人嗎", group=gid)
    assert "nobody else" in err.value.message
    (item,) = alice.store.outbox()
    assert item.state == "failed" and "nobody else" in item.reason


def test_a_member_renames_the_group(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    gid = group_of(crowd, rs, ["bob"])
    rs["alice"].m.group_change(gid, "rename", [], name="新名字")
    rs["bob"].until(lambda r: state_of(r.m, gid).name == "新名字", 60, "the rename")


def test_an_invitee_whose_key_is_not_here_is_fetched_from_the_key_server(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob", "carol")
    alice = rs["alice"].m
    carol = crowd.fp("carol")
    assert str(alice.client.identity.gpg.delete_keys(carol)) == "ok"
    assert not alice.client.identity.has_key(carol)
    gid = group_of(crowd, rs, ["bob", "carol"])  # keys checked in one listing, then keyd
    assert alice.client.identity.has_key(carol)
    text = alice.send_text([], "鑰匙從伺服器來", group=gid)
    rs["carol"].until(lambda r: _has(r, text), 60, "the text")


def test_an_entry_after_an_unknown_one_and_a_forwarded_bundle_are_refused(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob", "carol")
    gid = group_of(crowd, rs, ["bob", "carol"])
    bob, alice = rs["bob"].m, rs["alice"].m
    before = [e.raw for e in log_entries(alice, gid).entries()]

    # an entry naming a predecessor nobody has (signed by Bob, a member who may invite)
    entry = ml.Entry(
        group=gid.hex(), prev="ab" * 32, op="invite", actor=bob.me, targets=[crowd.fp("dave")],
        ts=time.time_ns() // 1_000_000,
    )  # fmt: skip
    raw = ml.encode_entry(entry)
    orphan = ml.SignedEntry(raw=raw, signature=bob.client.identity.sign_detached(raw, bob.me))
    f1 = group_bundle_frame(bob, gid, [orphan])
    # a group message of Alice's (signed by her), sent again by Bob as if it were his
    hers, body = group_bundle_frame(alice, gid)
    f2 = (wire.Send(id=wire.new_msg_id(), sender=bob.me, to=hers.to, group=gid), body)
    send_raw(bob, [f1, f2])

    carol = rs["carol"]
    assert refused_reason(carol, f1[0].id).startswith("unknown-prev:")
    assert "expected " + bob.me in refused_reason(carol, f2[0].id)  # not signed by its sender
    assert [e.raw for e in log_entries(carol.m, gid).entries()] == before
    assert crowd.fp("dave") not in _members(carol.m, gid)


def test_a_text_sent_before_its_sender_left_still_opens(cloud1: ProcCloud, crowd: Crowd) -> None:
    """The leave supersedes the epoch when it is applied: what the broker took from the
    leaver before then opens for the others, though they learn of the leave first."""
    rs = join(cloud1, crowd, "alice", "bob", "carol")
    gid = group_of(crowd, rs, ["bob", "carol"])
    carol = rs["carol"].m
    text = carol.send_text([], "我先走了", group=gid)
    carol.group_change(gid, "leave", [])
    bob = rs["bob"]
    bob.until(lambda r: crowd.fp("carol") not in _members(r.m, gid), 60, "the leave")
    bob.until(lambda r: _has(r, text), 60, "the text sent before the leave")
    # and the group goes on: Alice's next text makes a key for Alice and Bob only
    after = rs["alice"].m.send_text([], "下次見", group=gid)
    bob.until(lambda r: _has(r, after), 60, "the text after")
