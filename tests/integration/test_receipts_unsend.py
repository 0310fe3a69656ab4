"""已讀 and 收回 as signed, sealed messages of the conversation: one receipt message for many
texts; a group's 已讀 N counts each member once, whatever their devices; only the sender may
take a message back, and a message taken back before it was read is never shown."""

from __future__ import annotations

import msgspec

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    people_fixture,
)
from tits import wire
from tits.client.blocking import Message, Messenger
from tits.client.model import RECEIPT_MIME, UNSEND_MIME, Receipt, Refused, Unsent
from tits.session import direct_conversation_id


def drain(m: Messenger, timeout: float = 15.0) -> list[Message]:
    got: list[Message] = []
    m.receive(got.append, timeout=timeout)
    return got


def test_receipts_batched_and_unsend(broker: BrokerProc, people: People) -> None:
    a, b, mal = people.alice, people.bob, people.mallory
    alice = Messenger(a, broker=broker.url)
    ids = [alice.send_text([b.fingerprint], f"第 {i} 則") for i in range(3)]
    oops = alice.send_text([b.fingerprint], "傳錯了")
    alice.unsend(oops)
    alice.close()

    bob = Messenger(b, broker=broker.url)
    got = drain(bob)
    assert [m.text for m in got] == ["第 0 則", "第 1 則", "第 2 則"]  # never the unsent one
    assert any(isinstance(e, Unsent) and e.id == oops for e in bob.events)
    stored = bob.store.message(oops)
    assert stored is not None and stored.unsent and stored.text is None
    bob.read(got)
    bob.close()

    alice = Messenger(a, broker=broker.url)
    drain(alice)
    receipts = [e for e in alice.events if isinstance(e, Receipt)]
    # one receipt message for the three texts, not one each
    assert [sorted(r.ids) for r in receipts] == [sorted(ids)] and receipts[
        0
    ].reader == b.fingerprint
    assert all(alice.store.message(i).read_by == 1 for i in ids)  # type: ignore[union-attr]

    # Mallory cannot take Alice's message back, nor send receipts for a chat she is not in
    mallory = Messenger(mal, broker=broker.url)
    items, _, _, _ = mallory.prepare_text([b.fingerprint], "x")
    conn = mallory.connection()
    conv = direct_conversation_id(mal.fingerprint, b.fingerprint)
    key = mallory.store.epochs(conv)[-1].key
    from tits.session import Envelope, seal

    forged = []
    for mime, payload in ((UNSEND_MIME, ids[0]), (RECEIPT_MIME, msgspec.msgpack.encode([ids[1]]))):
        mid = wire.new_msg_id()
        env = Envelope(mid, mal.fingerprint, [b.fingerprint], None)
        body = seal(key, mal.device, env, payload, mime=mime)
        forged.append(mid)
        items.append((wire.Send(id=mid, sender=mal.fingerprint, to=[b.fingerprint]), body))
    conn.send_and_wait(items)
    mallory.close()
    bob = Messenger(b, broker=broker.url)
    drain(bob)
    refused = {e.id: e.reason for e in bob.events if isinstance(e, Refused)}
    assert set(forged) <= set(refused)
    assert "only its sender" in refused[forged[0]] and "not in this chat" in refused[forged[1]]
    kept = bob.store.message(ids[0])
    assert kept is not None and not kept.unsent and kept.text == "第 0 則"
    bob.close()
