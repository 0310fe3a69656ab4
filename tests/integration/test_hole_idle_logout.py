"""Issue 14 hole 6: a silent user was logged out after 90 s although the TCP connection lived,
so every idle client logged in again every 90 s (a GnuPG operation at the broker each). A
session now lasts while its connection does (libzmq heartbeats find a dead peer), and ends
`session_timeout` after the connection goes."""

from __future__ import annotations

import time
from pathlib import Path

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    connect,
    people_fixture,
    short_tmpdir,
    wait_for,
)
from tests.integration.test_broker_own_devices import collect
from tits import wire


def test_an_idle_client_keeps_its_session_and_a_lost_one_ends(people: People) -> None:
    root = short_tmpdir("tb")
    cfg = Path(root / "titsd.toml")
    cfg.write_text("session_timeout = 1.0\n")
    broker = BrokerProc(root / "broker", "--config", str(cfg)).start()
    try:
        bob = connect(people.bob, broker.url)
        logins = broker.status()["counters"]["logins"]
        time.sleep(4.0)  # silent for four session timeouts: no frame, no ping
        assert broker.status()["sessions"] == 1
        alice = connect(people.alice, broker.url)
        send = wire.Send(id=wire.new_msg_id(), sender=people.alice.fingerprint,
                         to=[people.bob.fingerprint])  # fmt: skip
        alice.send_and_wait([(send, b"still there?")])
        got = collect(bob, 1, 10)
        assert [x.envelope.id for x in got] == [send.id]  # delivered on the old session
        assert broker.status()["counters"]["logins"] == logins + 1  # Alice's, not Bob's again
        bob.close(bye=False)  # the connection goes, without a goodbye
        wait_for(lambda: broker.status()["sessions"] == 1, 15, "Bob's session to end")
        alice.close()
    finally:
        broker.cleanup()
