"""Issue 15, hole 3: any user could freeze another's inbox. Mallory sent texts sealed under a
session key she never sent; Bob's client held them unacknowledged, the broker stopped at its
window, and Alice's next text reached Bob two minutes later. Held texts are now kept on Bob's
disk and acknowledged, and one sender may have at most HELD_PER_SENDER of them."""

from __future__ import annotations

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    people_fixture,
)
from tits import wire
from tits.client.blocking import Message, Messenger
from tits.client.inbox import HELD_PER_SENDER
from tits.client.model import Held, Refused

FLOOD = 1_100  # past the broker's 1,000-delivery window and past the per-sender cap


def test_texts_without_their_key_do_not_jam_the_inbox(broker: BrokerProc, people: People) -> None:
    a, b, m = people.alice, people.bob, people.mallory
    mallory = Messenger(m, broker=broker.url)
    frames: list[tuple[wire.Send, bytes]] = []
    for i in range(FLOOD):
        items, _, _, _ = mallory.prepare_text([b.fingerprint], f"垃圾 {i}")
        frames += [(s, body) for s, body in items if not isinstance(
            wire.BODY_DECODER.decode(body), wire.KeyBody)]  # fmt: skip  # the key never goes
    conn = mallory.connection()
    for i in range(0, len(frames), 200):
        conn.send_and_wait(frames[i : i + 200], timeout=60)
    mallory.close()

    alice = Messenger(a, broker=broker.url)
    sent = alice.send_text([b.fingerprint], "還在嗎？")
    alice.close()

    bob = Messenger(b, broker=broker.url)
    got: list[Message] = []
    # the whole flood and Alice's text all come in one drain: nothing waits on the window
    bob.receive(got.append, timeout=120, until=lambda: any(x.id == sent for x in got))
    assert [(x.id, x.text) for x in got] == [(sent, "還在嗎？")]
    held = [e for e in bob.events if isinstance(e, Held)]
    refused = [e for e in bob.events if isinstance(e, Refused) and e.sender == m.fingerprint]
    assert len(held) == HELD_PER_SENDER  # Mallory filled her own share, and no more
    assert len(refused) >= FLOOD - HELD_PER_SENDER - 5  # the rest refused, acknowledged
    assert all("waiting for a key" in e.reason for e in refused)
    assert len(bob.store.held()) == HELD_PER_SENDER  # on Bob's disk, not in the broker's window
    bob.close()
