"""Acknowledgements are never throttled: a refused ack makes the broker deliver again, which
costs more than the ack — under load it stalled a receiver until its window filled."""

from __future__ import annotations

from pathlib import Path

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    connect,
    people_fixture,
    short_tmpdir,
    wait_for,
)
from tits import wire
from tits.client import Incoming
from tits.client.blocking import Messenger


def test_acks_one_by_one_beyond_the_rate_limit(people: People) -> None:
    root = short_tmpdir("ta")
    cfg = Path(root / "titsd.toml")
    cfg.write_text("[limits]\nrate = 20.0\nburst = 40.0\n")
    b = BrokerProc(root / "broker", "--config", str(cfg)).start()
    try:
        alice = Messenger(people.alice, broker=b.url)
        items, _, _, _ = alice.prepare_text([people.bob.fingerprint], "x")
        for i in range(28):  # within Alice's burst (the key goes with the first text only)
            more, _, _, _ = alice.prepare_text([people.bob.fingerprint], f"#{i}")
            items += more
        alice.connection().send_and_wait(items[:30], timeout=20)
        bob = connect(people.bob, b.url)
        got: list[bytes] = []
        errors: list[str] = []

        def take() -> bool:
            for item in bob.poll(0.2):
                if isinstance(item, Incoming):
                    bob.ack([item.envelope.id])  # one frame per message, as slow clients do
                    got.append(item.envelope.id)
                elif isinstance(item, wire.Error):
                    errors.append(item.code)
            return len(set(got)) >= 30

        wait_for(take, 20, "all 30 deliveries")
        for _ in range(60):  # a burst of acks far past the rate: none refused
            bob.ack([got[0]])
        bob.ping()
        take()  # collects any refusal of those acks (and the pong)
        assert "rate-limited" not in errors
        assert len(got) == len(set(got)) == 30  # nothing delivered twice
        bob.close()
        alice.close()
    finally:
        b.cleanup()
