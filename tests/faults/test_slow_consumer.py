"""A consumer that does not read while a sender streams at it: the broker's memory stays
bounded (its window per device, not the backlog), everything is accepted, and once the
consumer reads it gets every message exactly once (short version; the long one is
`benchmarks/broker.py`'s load with a receiver paused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc, People, broker_fixture, connect, people_fixture  # noqa: F401
from tests.integration.test_broker_own_devices import collect
from tits import wire

pytestmark = pytest.mark.timeout(240)
N = 4000
BODY = b"\xa5" * 4096


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_silent_consumer_costs_the_broker_its_window_not_the_backlog(
    broker: BrokerProc, people: People
) -> None:
    assert broker.proc is not None
    bob = connect(people.bob, broker.url)  # logged in, then never reads until the end
    alice = connect(people.alice, broker.url)
    start = rss_mb(broker.proc.pid)
    samples = []
    sends = [
        wire.Send(
            id=wire.new_msg_id(), sender=people.alice.fingerprint, to=[people.bob.fingerprint]
        )  # fmt: skip
        for _ in range(N)
    ]
    for i in range(0, N, 500):
        alice.send_and_wait([(s, BODY) for s in sends[i : i + 500]], timeout=60)
        samples.append(rss_mb(broker.proc.pid))
    # 16 MiB of bodies arrived; the broker holds at most the device's window of them
    # (1,000 × 4 KiB) beside what SQLite caches
    grown = max(samples) - start
    assert grown < 120, (start, samples)
    got = collect(bob, N, 120)
    ids = [x.envelope.id for x in got]
    assert len(ids) == len(set(ids)) == N and set(ids) == {s.id for s in sends}
    alice.close()
    bob.close()
