"""A client that logs in with `batch` is sent `Deliveries` (many deliveries a message): each
delivery once, in order, acknowledged like any; one that does not is sent `Deliver`s."""

from __future__ import annotations

import time
from typing import Any

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    RawClient,
    broker_fixture,
    connect,
    people_fixture,
)
from tests.raw_login import raw_login
from tits import wire


def test_a_batching_client_gets_deliveries_in_batches(broker: BrokerProc, people: People) -> None:
    with RawClient(broker.url) as bob:
        assert isinstance(raw_login(bob, people.bob, batch=True), wire.Welcome)
        alice = connect(people.alice, broker.url)
        gid = wire.new_group_id()
        sends = [
            wire.Send(
                id=wire.new_msg_id(),
                sender=people.alice.fingerprint,
                to=[people.bob.fingerprint, people.mallory.fingerprint],
                group=gid,
            )  # fmt: skip
            for _ in range(300)
        ]
        alice.send_and_wait([(s, b"body %d" % k) for k, s in enumerate(sends)])
        got: list[tuple[bytes, bytes]] = []
        batches = 0
        deadline = time.monotonic() + 20
        while len(got) < len(sends) and time.monotonic() < deadline:
            frames = bob.recv(1.0)
            if frames is None:
                continue
            msg = wire.SERVER_DECODER.decode(frames[0])
            if isinstance(msg, wire.Deliveries):
                assert len(frames) == 1 + len(msg.items)
                batches += 1
                items = list(zip(msg.items, frames[1:], strict=True))
            elif isinstance(msg, wire.Deliver):
                items = [(msg, frames[1])]
            else:
                continue
            got += [(d.id, body) for d, body in items]
            bob.send_msg(wire.Received(ids=[d.id for d, _ in items]))
        assert [i for i, _ in got] == [s.id for s in sends]  # each once, in order
        assert [b for _, b in got] == [b"body %d" % k for k in range(len(sends))]
        assert batches >= 1 and batches < len(sends)
        assert bob.recv(1.0) is None  # all acknowledged: nothing comes again
        alice.close()
    # the one that did not ask gets plain deliveries (and all of them)
    mallory = connect(people.mallory, broker.url)
    n = 0
    deadline = time.monotonic() + 20
    while n < len(sends) and time.monotonic() < deadline:
        plain: list[Any] = [x for x in mallory.poll(0.5) if hasattr(x, "envelope")]
        mallory.ack([x.envelope.id for x in plain])
        n += len(plain)
    assert n == len(sends)
    mallory.close()
