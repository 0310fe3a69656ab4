"""Issue 15 hole 6: a `Bye` reset a connection's bad-frame counter (1,500 bad frames on one
CURVE key, never dropped). The budget belongs to the key, not the session."""

from __future__ import annotations

import os

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    RawClient,
    broker_fixture,
    connect,
    people_fixture,
)
from tits import wire


def test_a_bye_does_not_reset_the_garbage_budget(broker: BrokerProc, people: People) -> None:
    with RawClient(broker.url) as raw:
        codes: list[str] = []
        for _ in range(10):  # 10 × (3 bad frames, a goodbye): 30 bad frames on one key
            for _ in range(3):
                raw.send(os.urandom(64))
            raw.send_msg(wire.Bye())
        while (msg := raw.recv_msg(1.0)) is not None:
            codes.append(msg.code)
        assert codes.count("bad-frame") == 16 and codes[-1] == "dropped"
        raw.send_msg(wire.Hello())  # the key is dropped: ignored from now on
        assert raw.recv(0.5) is None
    ok = connect(people.alice, broker.url)  # and others are served
    ok.close()
