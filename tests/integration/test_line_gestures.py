"""LINE's gestures beyond texts, on a real broker with real GnuPG: @mentions (members only,
@All), reactions (one per person, from a small set), the 公告 at the top of a chat, and texts
with a display lifetime. Each is a signed, sealed message of the conversation; what a hostile
member forges into one is refused or ignored, never applied."""

from __future__ import annotations

import time

import pytest

from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    Received,
    cloud1_fixture,
    crowd_fixture,
    group_of,
    join,
    send_raw,
    state_of,
)
from tests.proc_cloud import ProcCloud
from tits import wire
from tits.client.controls import reaction_payload
from tits.client.model import ANNOUNCE_MIME, REACTION_MIME, Announced, Reacted
from tits.contacts import Contacts
from tits.errors import ConfigError
from tits.session import Envelope, seal

pytestmark = pytest.mark.timeout(300)


def forged(r: Received, gid: bytes, payload: bytes, mime: str, **header: object) -> bytes:
    """A control message sealed with the group's current key by `r`'s own device: what a
    member's hostile client can send, past its own client's checks."""
    m = r.m
    members = sorted(state_of(m, gid).members)
    key = m.client.keyring.for_sending(gid, members, time.time())
    assert key is not None
    to = [fp for fp in members if fp != m.me]
    send = wire.Send(id=wire.new_msg_id(), sender=m.me, to=to, group=gid)
    env = Envelope(send.id, m.me, to, gid)
    body = seal(key, m.home.device, env, payload, serial=time.time_ns(), mime=mime, **header)  # type: ignore[arg-type]
    send_raw(m, [(send, body)])
    return send.id


def test_mentions_reactions_and_the_announcement(cloud1: ProcCloud, crowd: Crowd) -> None:
    rs = join(cloud1, crowd, "alice", "bob", "carol", "mallory")
    gid = group_of(crowd, rs, ["bob", "carol"], "週末")
    alice, bob, carol = rs["alice"], rs["bob"], rs["carol"]
    target = "#" + gid.hex()

    # @Bob names Bob (the name in his key), @All everyone; Mallory is a contact of Alice's
    # but not a member: naming her is the sender's mistake, said before anything is sent
    opts = alice.m.options_for(target, "@Bob 晚餐吃什麼？ @All")
    assert opts.mentions == [crowd.fp("bob")] and opts.mention_all
    Contacts(alice.m.home.path).add("Mallory", crowd.fp("mallory"))
    with pytest.raises(ConfigError, match="not a member"):
        alice.m.options_for(target, "@Mallory 你好")
    only_bob = alice.m.options_for(target, "@bob 你呢？")
    assert only_bob.mentions == [crowd.fp("bob")] and not only_bob.mention_all
    asked = alice.m.enqueue(target, "@Bob 晚餐吃什麼？ @All".encode(), options=opts)
    alice.m.flush_and_wait([asked], 30)
    plain = alice.m.enqueue(target, "@bob 你呢？".encode(), options=only_bob)
    alice.m.flush_and_wait([plain], 30)
    for r in (bob, carol):
        r.until(lambda r: {asked, plain} <= {m.id for m in r.messages}, 60, "the texts")
    got = {m.id: m for m in bob.messages}
    assert got[asked].mentions_of(crowd.fp("bob")) and got[plain].mentions_of(crowd.fp("bob"))
    on_carol = {m.id: m for m in carol.messages}
    assert on_carol[asked].mentions_of(crowd.fp("carol"))  # @All
    assert not on_carol[plain].mentions_of(crowd.fp("carol"))
    # the chat list's "@" count: unread texts naming me
    assert bob.m.store.extras.mention_counts(crowd.fp("bob")) == {gid: 2}
    assert carol.m.store.extras.mention_counts(crowd.fp("carol")) == {gid: 1}
    bob.m.read(bob.messages)
    assert bob.m.store.extras.mention_counts(crowd.fp("bob")) == {}

    # reactions: one per person (a second replaces the first), seen by everyone in the chat
    bob.m.react(asked, "love")
    carol.m.react(asked, "haha")
    bob.m.react(asked, "thanks")

    def reactions(r: Received) -> dict[str, list[str]]:
        msg = r.m.store.message(asked)
        return msg.reactions if msg else {}

    want = {"haha": [crowd.fp("carol")], "thanks": [crowd.fp("bob")]}
    alice.until(lambda r: reactions(r) == want, 60, "both reactions")
    # each change came as an event too (the first one, since replaced, included)
    alice.until(lambda r: any(isinstance(e, Reacted) and e.name == "love" for e in r.events),
                60, "the first reaction's event")  # fmt: skip
    carol.until(lambda r: reactions(r) == want, 60, "bob's reaction at carol's")
    bob.m.react(asked, "")  # taken back
    alice.until(lambda r: reactions(r) == {"haha": [crowd.fp("carol")]}, 60, "it taken back")
    with pytest.raises(ConfigError, match="no reaction"):
        bob.m.react(asked, "<script>")

    # 公告: put up by a member, at the top of the chat on every device
    alice.m.announce(target, "週六\n晚上 7 點 聚餐")
    for r in (bob, carol):
        r.until(lambda r: r.m.store.extras.announcement(gid) is not None, 60, "the 公告")
        ann = r.m.store.extras.announcement(gid)
        assert ann is not None and ann.text == "週六 晚上 7 點 聚餐" and ann.by == alice.m.me
        r.until(lambda r: any(isinstance(e, Announced) for e in r.events), 60, "its event")
    assert alice.m.store.extras.announcement(gid) is not None  # on the sender's device too
    carol.m.announce(target, "")
    bob.until(lambda r: r.m.store.extras.announcement(gid) is None, 60, "the 公告 taken down")


def test_forged_gestures_are_refused_and_mentions_of_outsiders_ignored(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob", "carol", "mallory")
    gid = group_of(crowd, rs, ["bob", "carol"], "週末")
    alice, bob, carol = rs["alice"], rs["bob"], rs["carol"]
    first = alice.m.send_text([], "大家好", group=gid)
    carol.until(lambda r: first in {m.id for m in r.messages}, 60, "the text")

    # Bob's hostile client: a reaction outside the set, a reaction to a message of another
    # chat, a 公告 with terminal controls in it, and a text "mentioning" a non-member
    bad_name = forged(bob, gid, reaction_payload(first, "💣"), REACTION_MIME)
    elsewhere = forged(bob, gid, reaction_payload(wire.new_msg_id(), "love"), REACTION_MIME)
    garbage = forged(bob, gid, b"\x93\x01", REACTION_MIME)
    controls = forged(bob, gid, "\x1b[2J清空畫面".encode(), ANNOUNCE_MIME)
    outsider = forged(
        bob, gid, "@Mallory 嗨".encode(), "text/plain", mentions=[crowd.fp("mallory")]
    )
    carol.until(lambda r: outsider in {m.id for m in r.messages}, 60, "the text")
    carol.until(
        lambda r: {bad_name, elsewhere, garbage, controls} <= {e.id for e in r.refused},
        60, "the refusals",
    )  # fmt: skip
    refused = {e.id: e.reason for e in carol.refused}
    assert "outside the set" in refused[bad_name]
    assert "not in this chat" in refused[elsewhere]
    assert "does not name a message" in refused[garbage]
    assert "control characters" in refused[controls]
    assert carol.m.store.message(first).reactions == {}  # type: ignore[union-attr]
    assert carol.m.store.extras.announcement(gid) is None
    shown = {m.id: m for m in carol.messages}[outsider]
    assert shown.mentions == [] and shown.text == "@Mallory 嗨"


def test_a_text_with_a_lifetime_is_removed_from_every_device(
    cloud1: ProcCloud, crowd: Crowd
) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    alice, bob = rs["alice"], rs["bob"]
    to = crowd.fp("bob")
    opts = alice.m.options_for(to, "十秒後消失", lifetime_s=10)
    item = alice.m.enqueue(to, "十秒後消失".encode(), options=opts)
    alice.m.connect()
    alice.m.flush_and_wait([item], 30)
    bob.until(lambda r: item in {m.id for m in r.messages}, 60, "the text")
    msg = bob.m.store.message(item)
    assert msg is not None and msg.lifetime_s == 10 and msg.text == "十秒後消失"
    # counted from when it is first shown here: unread, it waits however long it takes
    assert bob.m.store.extras.expire(time.time() + 3600) == []
    bob.m.read([msg])
    shown_at = time.time()
    assert bob.m.store.extras.expire(shown_at + 5) == []
    assert bob.m.store.extras.expire(shown_at + 11) == [item]
    gone = bob.m.store.message(item)
    assert gone is not None and gone.expired and gone.text is None
    # the sender's own copy counts from when it was sent
    assert alice.m.store.extras.expire(time.time() + 11) == [item]
    for bad in (1, 30 * 86400):
        with pytest.raises(ConfigError, match="lifetime"):
            alice.m.options_for(to, "x", lifetime_s=bad)
