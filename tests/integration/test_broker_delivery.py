"""Alice and Bob on one real broker: offline mailbox, order, exactly once, live delivery, a
second device, and the status API."""

from __future__ import annotations

import json

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    connect,
    people_fixture,
    second_device,
    short_tmpdir,
    wait_for,
)
from tits import wire
from tits.client.blocking import Message, Messenger
from tits.session import Envelope, direct_conversation_id, seal


def drain(m: Messenger, timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []
    m.receive(got.append, timeout=timeout)
    return got


def test_offline_then_live_exactly_once_and_second_device(
    broker: BrokerProc, people: People
) -> None:
    a, b = people.alice, people.bob
    bob2_home = second_device(b, people.root / "bob2", "bob-laptop")
    bob2 = Messenger(bob2_home, broker=broker.url)
    bob2.connection()  # the broker now knows Bob's second device (then it goes offline)
    bob2.close()

    alice = Messenger(a, broker=broker.url)
    texts = ["早安 ☀️", "second message", "第三則：晚安"]
    ids = [alice.send_text([b.fingerprint], t) for t in texts]
    assert len(set(ids)) == 3

    bob = Messenger(b, broker=broker.url)
    got = drain(bob)
    assert [m.text for m in got] == texts
    assert [m.id for m in got] == ids
    assert all(m.verified and m.sender == a.fingerprint and m.kind == "text" for m in got)
    # no petname: the key's own name, marked as unconfirmed, with part of its fingerprint
    assert bob.name_of(got[0].sender) == f"~Alice 陳 ({a.fingerprint[:8]})"
    assert bob.refused == []
    bob.close()

    # logging in again: nothing is delivered twice
    bob = Messenger(b, broker=broker.url)
    assert drain(bob, timeout=1.0) == []

    # live: Bob is online and Alice sends
    conn = bob.connection()
    live_id = alice.send_text([b.fingerprint], "live 🚀")
    deliveries = wait_for(lambda: conn.poll(0.2), timeout=10, what="live delivery")
    shown = bob.process(deliveries)
    conn.ack([d.envelope.id for d in deliveries])
    assert [(m.id, m.text, m.verified) for m in shown] == [(live_id, "live 🚀", True)]

    # a redelivery of the same message is dropped by the client
    assert bob.process(deliveries) == []
    bob.close()

    # Bob's second device gets everything too, in order, verified
    bob2 = Messenger(bob2_home, broker=broker.url)
    got2 = drain(bob2)
    assert [m.text for m in got2] == [*texts, "live 🚀"]
    assert all(m.verified for m in got2)
    bob2.close()

    # and Alice's reply path works: Bob answers with his own session key
    alice.close()
    bob = Messenger(b, broker=broker.url)
    bob.send_text([a.fingerprint], "收到，謝謝")
    alice = Messenger(a, broker=broker.url)
    back = drain(alice)
    assert [(m.text, m.verified, m.sender) for m in back] == [("收到，謝謝", True, b.fingerprint)]
    bob.close()
    alice.close()


def test_status_api_and_page(broker: BrokerProc, people: People) -> None:
    info = json.loads((broker.data / "ready.json").read_text())
    for secret in ("curve.key", "mailbox.db", "gnupg", "."):
        assert (broker.data / secret).stat().st_mode & 0o077 == 0, secret
    assert info["url"].startswith("tcp://127.0.0.1:") and "#" in info["url"]
    st = broker.status()
    assert st["id"] == info["id"] and st["url"] == info["url"] and st["pid"] == info["pid"]
    assert st["users"] == [] and isinstance(st["brokers"], list) and st["links"] == []

    alice = Messenger(people.alice, broker=broker.url)
    alice.connection()
    st = wait_for(lambda: (s := broker.status())["users"] and s, what="alice in status")
    (user,) = st["users"]
    assert user["fingerprint"] == people.alice.fingerprint
    assert user["name"] == "Alice 陳" and user["broker"] == st["id"]
    assert user["devices"] == [people.alice.certificate[0].device]

    code, ctype, page = broker.get("/")
    assert code == 200 and ctype.startswith("text/html")
    assert "Alice 陳" in page.decode()

    code, ctype, key = broker.get("/api/key")
    assert code == 200 and b"BEGIN PGP PUBLIC KEY BLOCK" in key
    fps = people.alice.identity.gpg.scan_keys_mem(key.decode())
    assert [k["fingerprint"] for k in fps] == [st["id"]]
    alice.close()

    # SIGTERM: a clean stop, and ready.json is gone
    assert broker.stop() == 0
    assert not (broker.data / "ready.json").exists()


def test_duplicates_are_dropped_also_for_ids_older_than_the_memory_window(
    broker: BrokerProc, people: People
) -> None:
    a, b = people.alice, people.bob
    alice = Messenger(a, broker=broker.url)
    items, _, _, _ = alice.prepare_text([b.fingerprint], "fresh")
    old_id = (wire.msg_id_time_ms(wire.new_msg_id()) - 7_200_000).to_bytes(6, "big") + bytes(10)
    old_items, _, _, _ = alice.prepare_text([b.fingerprint], "an old id")
    send, body = old_items[-1]
    env = Envelope(old_id, a.fingerprint, [b.fingerprint], None)
    key = alice.store.epochs(direct_conversation_id(a.fingerprint, b.fingerprint))[-1].key
    old = (wire.Send(id=old_id, sender=a.fingerprint, to=[b.fingerprint]),
           seal(key, a.device, env, b"an old id"))  # fmt: skip
    conn = alice.connection()
    for _ in range(2):
        assert conn.send_and_wait([*items, old]) == [*(s.id for s, _ in items), old_id]
    # a different sender may not reuse an id
    mallory = connect(people.mallory, broker.url)
    mallory.send(wire.Send(id=old_id, sender=people.mallory.fingerprint, to=[b.fingerprint]), b"x")
    err = mallory.recv(5)
    assert isinstance(err, wire.Error) and err.code == "id-conflict"
    mallory.close()
    bob = Messenger(b, broker=broker.url)
    assert [m.text for m in drain(bob)] == ["fresh", "an old id"]
    # the second round: all three (key, "fresh", the old id) were duplicates
    wait_for(lambda: broker.status()["counters"]["duplicates"] == 3, what="3 duplicates")
    bob.close()
    alice.close()


def test_a_duplicate_found_only_in_the_store_is_acknowledged_not_stored(
    people: People,
) -> None:
    root = short_tmpdir("tb")
    cfg = root / "titsd.toml"
    cfg.write_text("dedup_s = 0.5\n")  # forget ids (in memory) almost at once
    b = BrokerProc(root / "broker", "--config", str(cfg)).start()
    try:
        alice = Messenger(people.alice, broker=b.url)
        first = alice.send_text([people.bob.fingerprint], "once")
        items, _, _, _ = alice.prepare_text([people.bob.fingerprint], "twice?")
        conn = alice.connection()
        conn.send_and_wait(items)
        wait_for(lambda: b.status()["counters"]["accepted"] == 3, what="3 accepted")
        # housekeeping forgets the ids; then only the store can tell they were seen
        wait_for(lambda: b.status()["remembered_ids"] == 0, what="ids forgotten")
        conn.send_and_wait(items)
        wait_for(lambda: b.status()["counters"]["duplicates"] == 1, what="a duplicate")
        alice.close()
        bob = Messenger(people.bob, broker=b.url)
        got = drain(bob)
        assert [(m.id, m.text) for m in got][0] == (first, "once")
        assert [m.text for m in got] == ["once", "twice?"]
        assert bob.welcome is not None and bob.welcome.pending == 3
        bob.close()
    finally:
        b.cleanup()
