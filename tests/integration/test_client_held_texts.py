"""Across a cloud a text can overtake the message that carries its session key. The client
holds such a text (not shown, not refused, not acknowledged) until the key comes."""

from __future__ import annotations

import time

from tests.broker_fixtures import People, people_fixture  # noqa: F401 - fixtures
from tits import wire
from tits.client import Incoming
from tits.client.blocking import KEY_WAIT_S, Messenger


def _deliveries(alice: Messenger, to: str, text: str, ts_ms: int) -> list[Incoming]:
    items, _, _, _ = alice.prepare_text([to], text)
    return [
        Incoming(wire.Deliver(id=s.id, sender=s.sender, to=s.to, group=s.group, ts=ts_ms), body)
        for s, body in items
    ]


def test_a_text_before_its_key_is_held_then_shown(people: People) -> None:
    alice, bob = Messenger(people.alice), Messenger(people.bob)
    now = int(time.time() * 1000)
    key_msg, text = _deliveries(alice, people.bob.fingerprint, "先到的訊息", now)
    # held: kept on Bob's disk and acknowledged, so the broker's window never fills with it
    assert bob.process([text]) == [] and bob.ackable([text]) == [text.envelope.id]
    assert bob.refused == []
    # the key comes: the held text opens at once, without waiting for the broker's redelivery
    shown = bob.process([key_msg])
    assert [(m.text, m.verified) for m in shown] == [("先到的訊息", True)]
    assert sorted(bob.ackable([key_msg, text])) == sorted([key_msg.envelope.id, text.envelope.id])
    assert bob.process([text]) == []  # the broker's redelivery is dropped as seen
    alice.close()
    bob.close()


def test_text_and_key_reversed_in_one_batch_are_both_taken(people: People) -> None:
    alice, bob = Messenger(people.alice), Messenger(people.bob)
    key_msg, text = _deliveries(alice, people.bob.fingerprint, "同一批", int(time.time() * 1000))
    shown = bob.process([text, key_msg])
    assert [m.text for m in shown] == ["同一批"]
    assert sorted(bob.ackable([text, key_msg])) == sorted([text.envelope.id, key_msg.envelope.id])
    alice.close()
    bob.close()


def test_a_text_whose_key_never_comes_is_refused_in_the_end(people: People) -> None:
    alice, bob = Messenger(people.alice), Messenger(people.bob)
    old = int((time.time() - KEY_WAIT_S - 1) * 1000)
    _, text = _deliveries(alice, people.bob.fingerprint, "孤兒", old)
    assert bob.process([text]) == []
    assert bob.ackable([text]) == [text.envelope.id]  # acknowledged: it will not come back
    assert [r.id for r in bob.refused] == [text.envelope.id]
    alice.close()
    bob.close()
