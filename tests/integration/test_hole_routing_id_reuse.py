"""Issue 15 hole 2: a client may pick its own routing id. After Alice's link dropped without
a goodbye, Mallory connected with the same routing id and received Alice's pending
deliveries (on main: 11, 8 and 9 messages in three runs). Delivery is bound to the connection
Alice logged in on; a routing id another key holds is refused."""

from __future__ import annotations

import time
from pathlib import Path

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    RawClient,
    connect,
    people_fixture,
    short_tmpdir,
)
from tests.integration.test_broker_own_devices import collect
from tests.raw_login import raw_login
from tits import wire

ROUTE = b"alice-phone-route"


def test_a_reused_routing_id_gets_none_of_the_first_keys_mail(people: People) -> None:
    root = short_tmpdir("tb")
    cfg = Path(root / "titsd.toml")
    cfg.write_text("retry_s = 0.5\n")  # Alice's unacknowledged deliveries go again quickly
    broker = BrokerProc(root / "broker", "--config", str(cfg)).start()
    try:
        alice, bob, mallory = people.alice, people.bob, people.mallory
        a = RawClient(broker.url, routing_id=ROUTE)
        assert isinstance(raw_login(a, alice), wire.Welcome)
        b = connect(bob, broker.url)
        first = [
            wire.Send(id=wire.new_msg_id(), sender=bob.fingerprint, to=[alice.fingerprint])
            for _ in range(5)
        ]
        b.send_and_wait([(s, b"private %d" % k) for k, s in enumerate(first)])
        seen = 0
        while seen < 5 and (frames := a.recv(5)) is not None:
            seen += isinstance(wire.SERVER_DECODER.decode(frames[0]), wire.Deliver)
        assert seen == 5  # delivered, never acknowledged
        a.close()  # the link drops, no goodbye

        m = RawClient(broker.url, routing_id=ROUTE)
        try:
            welcome = raw_login(m, mallory)
            assert isinstance(welcome, wire.Error) and welcome.code == "route-in-use"
            later = [
                wire.Send(id=wire.new_msg_id(), sender=bob.fingerprint, to=[alice.fingerprint])
                for _ in range(3)
            ]
            b.send_and_wait([(s, b"later %d" % k) for k, s in enumerate(later)])
            deadline = time.monotonic() + 3.0  # six retry periods
            stolen = []
            while time.monotonic() < deadline:
                frames = m.recv(0.2)
                if frames is not None:
                    msg = wire.SERVER_DECODER.decode(frames[0])
                    if isinstance(msg, wire.Deliver):
                        stolen.append(msg.id)
            assert stolen == []
        finally:
            m.close()

        # Alice, back on a connection of her own, gets all of it
        again = connect(alice, broker.url)
        got = {x.envelope.id for x in collect(again, 8, 20)}
        assert got == {s.id for s in first + later}
        again.close()
        b.close()
    finally:
        broker.cleanup()


def test_a_second_key_on_a_live_routing_id_is_refused(people: People) -> None:
    """libzmq refuses a second live connection on an id; a key that shows up on an id the
    broker has bound to another key is refused too (and the first key's delivery stops)."""
    root = short_tmpdir("tb")
    broker = BrokerProc(root / "broker").start()
    try:
        a = RawClient(broker.url, routing_id=b"shared")
        assert isinstance(raw_login(a, people.alice), wire.Welcome)
        a.close()
        time.sleep(0.3)
        for _ in range(3):
            m = RawClient(broker.url, routing_id=b"shared")
            m.send_msg(wire.Ping(t=1))
            reply = m.recv_msg(5)
            m.close()
            assert isinstance(reply, wire.Error) and reply.code == "route-in-use"
        other = connect(people.bob, broker.url)  # everyone else is served as before
        other.close()
    finally:
        broker.cleanup()
