"""`kill -9` the broker: nothing it acknowledged is lost, nothing is shown twice."""

from __future__ import annotations

import threading
import time

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    people_fixture,
    wait_for,
)
from tits import wire
from tits.client import Incoming
from tits.client.blocking import Message, Messenger


def drain(m: Messenger, timeout: float = 20.0) -> list[Message]:
    got: list[Message] = []
    m.receive(got.append, timeout=timeout)
    return got


def test_kill9_right_after_ack(broker: BrokerProc, people: People) -> None:
    alice = Messenger(people.alice, broker=broker.url)
    msg_id = alice.send_text([people.bob.fingerprint], "before the crash 💥")
    broker.kill9()  # acknowledged a moment ago: it must be on disk
    broker.start()
    bob = Messenger(people.bob, broker=broker.url)
    got = drain(bob)
    assert [(m.id, m.text, m.verified) for m in got] == [(msg_id, "before the crash 💥", True)]
    bob.close()
    alice.close()


def test_kill9_in_the_middle_of_a_1000_message_stream(broker: BrokerProc, people: People) -> None:
    n, kill_at = 1000, 400
    bob_fp = people.bob.fingerprint
    alice = Messenger(people.alice, broker=broker.url)
    first = alice.send_text([bob_fp], "start")  # sends the session key too
    items = []
    for i in range(n):
        prepared, missing, _, _ = alice.prepare_text([bob_fp], f"m{i:04d}")
        assert missing == [] and len(prepared) == 1
        items.append(prepared[0])
    order = [first] + [s.id for s, _ in items]

    bob = Messenger(people.bob, broker=broker.url)
    bconn = bob.connection()
    shown: list[Message] = []

    def bob_turn() -> None:
        deliveries = [x for x in bconn.poll(0) if isinstance(x, Incoming)]
        if deliveries:
            shown.extend(bob.process(deliveries))
            bconn.ack(bob.ackable(deliveries))

    conn = alice.connection()
    pending: dict[bytes, tuple[wire.Send, bytes]] = {}
    accepted: set[bytes] = {first}
    accepted_before_kill = 0
    last_resend = time.monotonic()

    def take(timeout: float) -> None:
        msg = conn.recv(timeout)
        while msg is not None:
            if isinstance(msg, wire.Accepted):
                for i in (msg.id, *msg.ids):
                    if pending.pop(i, None) is not None:
                        accepted.add(i)
            msg = conn.recv(0)

    deadline = time.monotonic() + 60
    i = 0
    while i < n or pending:
        assert time.monotonic() < deadline, f"{len(pending)} never acknowledged"
        if i < n:
            send, body = items[i]
            pending[send.id] = (send, body)
            conn.send(send, body)
            i += 1
            if i % 50 == 0:
                take(0)
                bob_turn()
        else:
            take(0.05)
            bob_turn()
        if i == kill_at and accepted_before_kill == 0:
            accepted_before_kill = len(accepted)
            broker.kill9()  # with messages queued, stored-not-acked and acked-not-delivered
            broker.start()
            conn.login()  # the same socket reconnects; the new process needs a new login
            for send, body in list(pending.values()):
                conn.send(send, body)
            last_resend = time.monotonic()
        elif i >= n and time.monotonic() - last_resend > 2.0:
            for send, body in list(pending.values()):
                conn.send(send, body)
            last_resend = time.monotonic()

    assert 1 <= accepted_before_kill < n + 1
    assert accepted == set(order)
    shown_before = len(shown)
    bob.close()  # its session died with the old process

    bob = Messenger(people.bob, broker=broker.url)
    shown.extend(drain(bob, timeout=30))
    ids = [m.id for m in shown]
    assert len(ids) == len(set(ids)), "a message was shown twice"
    assert ids == order, f"missing {len(set(order) - set(ids))}; {shown_before} before the kill"
    assert all(m.verified for m in shown)
    assert bob.refused == []
    bob.close()
    alice.close()


def test_a_following_receiver_survives_a_broker_restart(broker: BrokerProc, people: People) -> None:
    got: list[Message] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            bob = Messenger(people.bob, broker=broker.url)
            bob.receive(got.append, follow=True, timeout=30, until=stop.is_set)
            bob.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    t = threading.Thread(target=follow)
    t.start()
    try:
        wait_for(lambda: broker.status()["users"], what="bob online")
        alice = Messenger(people.alice, broker=broker.url)
        alice.send_text([people.bob.fingerprint], "before")
        wait_for(lambda: len(got) == 1, what="the first text")
        alice.close()
        broker.kill9()
        broker.start()
        alice = Messenger(people.alice, broker=broker.url)
        alice.send_text([people.bob.fingerprint], "after the restart")
        wait_for(lambda: len(got) == 2, timeout=20, what="the text after the restart")
        alice.close()
    finally:
        stop.set()
        t.join(timeout=30)
    assert errors == []
    assert [m.text for m in got] == ["before", "after the restart"]
