"""Chaos (issue 14): a 6-broker cloud, Alice streaming texts to Bob across it while brokers
are killed with SIGKILL and restarted at random; every text a broker acknowledged reaches Bob
exactly once. The short version runs in the suite; `TITS_CHAOS_ROUNDS` makes it longer."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.broker_fixtures import People, people_fixture  # noqa: F401 - fixtures
from tests.proc_cloud import ProcCloud
from tits.client.blocking import Message, Messenger
from tits.errors import BrokerError
from tits.home import Home
from tits.keyclient import KeyClient

pytestmark = pytest.mark.timeout(600)
ROUNDS = int(os.environ.get("TITS_CHAOS_ROUNDS", "3"))
TEXTS = 20 * ROUNDS


@pytest.fixture
def cloud6() -> Iterator[ProcCloud]:
    cloud = ProcCloud(6)
    yield cloud
    cloud.close()


def test_every_acknowledged_text_arrives_once_through_kills(
    cloud6: ProcCloud, people: People
) -> None:
    ks = cloud6.local.keyserver
    kc = KeyClient(ks)
    for h in (people.alice, people.bob):
        kc.publish_key(h.identity.export_public(h.fingerprint))
        _, cert, sig = h.certificate
        kc.publish_device(cert, sig, h.device.prove(cert))
    people.alice.save_config(broker=cloud6.url(0), keyserver=ks)
    people.bob.save_config(broker=cloud6.url(5), keyserver=ks)
    bob = Messenger(Home(people.bob.path))
    bob.connect(60)  # Bob is online at broker 5 (and his client learns the cloud)
    bob.close()

    rng = random.Random(14)
    stop = threading.Event()
    kills: list[int] = []

    def chaos() -> None:
        for _ in range(ROUNDS):
            if stop.wait(rng.uniform(1.0, 3.0)):
                return
            victim = rng.choice([1, 2, 3, 4])  # the cloud between them
            cloud6.local.kill(victim, hard=True)
            kills.append(victim)
            if stop.wait(rng.uniform(1.0, 2.0)):
                return
            cloud6.local.restart(victim)

    monkey = threading.Thread(target=chaos, daemon=True)
    monkey.start()
    alice = Messenger(Home(people.alice.path))
    acked: list[bytes] = []
    try:
        for i in range(TEXTS):
            try:
                acked.append(alice.send_text([people.bob.fingerprint], f"chaos {i}", timeout=60))
            except BrokerError:
                pass  # not acknowledged: no promise (it waits in the outbox)
            time.sleep(0.2)  # a stream that spans the kills
    finally:
        stop.set()
        monkey.join(60)
        alice.close()
    assert len(kills) >= 2 and len(acked) >= TEXTS * 3 // 4
    cloud6.wait_whole(90)

    bob = Messenger(Home(people.bob.path))
    shown: Counter[bytes] = Counter()

    def got(m: Message) -> None:
        shown[m.id] += 1

    try:
        bob.receive(got, follow=True, timeout=180, until=lambda: set(acked) <= set(shown))
    finally:
        bob.close()
    missing = set(acked) - set(shown)
    assert not missing, f"{len(missing)} acknowledged texts never arrived (kills: {kills})"
    assert all(n == 1 for n in shown.values())  # exactly once to the app
