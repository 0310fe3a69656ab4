"""A broker that stalls comes back by itself (issue 14, hole 5): real titsd processes, one of
them frozen with SIGSTOP for longer than its peers wait for a heartbeat, then let go. Its peers
have declared it dead meanwhile, and it has missed their heartbeats; both sides must redial and
the cloud be whole again, with messages crossing the broker that stalled."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    People,
    people_fixture,
    short_tmpdir,
    wait_for,
)
from tests.integration.test_cloud_brokers import Cloud, publish
from tits.client.blocking import Message, Messenger
from tits.localcloud import LocalCloud, _status, whole

pytestmark = pytest.mark.timeout(300)

WHOLE_S = 60.0  # generous: the machine is shared; a healthy cloud heals in a few seconds


@pytest.fixture(scope="module")
def cloud4():
    cloud = Cloud(4)
    yield cloud
    cloud.close()


def statuses(cloud: Cloud) -> list[dict | None]:
    return [_status(b["http"]) for b in cloud.local.brokers]


def test_a_broker_frozen_past_the_heartbeat_expiry_rejoins_and_carries_messages(
    cloud4: Cloud, people: People
) -> None:
    """Each of three brokers in turn is frozen for 1.5 s (its peers give up after 1 s of
    silence). On main before the fix about half of the freezes left the broker cut off for
    good (which side noticed first was a race), so three make the test fail there."""
    publish(people, cloud4.local.keyserver)
    ids = set(cloud4.by_id)
    for frozen in cloud4.local.brokers[1:]:
        proc = cloud4.proc[frozen["id"]]
        proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            proc.send_signal(signal.SIGCONT)
        thawed = time.monotonic()
        time.sleep(2.0)  # status pages are 0.5-s snapshots: let each show the aftermath
        wait_for(lambda: whole(statuses(cloud4), ids), WHOLE_S, "the whole cloud again")
        print(f"whole again {time.monotonic() - thawed:.2f} s after SIGCONT")
        for st in statuses(cloud4):
            assert st is not None and not st["problems"], st and st["problems"]
    frozen, other = cloud4.local.brokers[3], cloud4.local.brokers[1]
    # and it carries messages both ways: Alice on the broker that stalled, Bob elsewhere
    ks = cloud4.local.keyserver
    alice = Messenger(people.alice, broker=frozen["url"], keyserver=ks)
    bob = Messenger(people.bob, broker=other["url"], keyserver=ks)
    try:
        alice.connection()
        bob.connection()

        def at(fp: str) -> set[str]:
            users = (_status(frozen["http"]) or {}).get("users", [])
            return {u["broker"] for u in users if u["fingerprint"] == fp}

        wait_for(lambda: at(people.bob.fingerprint) == {other["id"]}, 20, "bob's presence")
        sent = [alice.send_text([people.bob.fingerprint], f"解凍後 {i}") for i in range(5)]
        got: list[Message] = []
        bob.receive(got.append, timeout=30, until=lambda: set(sent) <= {m.id for m in got})
        assert set(sent) <= {m.id for m in got}
        back = bob.send_text([people.alice.fingerprint], "收到")
        mine: list[Message] = []
        alice.receive(mine.append, timeout=30, until=lambda: back in {m.id for m in mine})
        assert back in {m.id for m in mine}
    finally:
        alice.close()
        bob.close()


def test_a_cloud_becomes_whole_while_cpu_burners_run() -> None:
    """Three processes that spin the CPU while a 4-broker cloud starts and joins: the cloud
    must still become whole (a loaded machine is not a dead peer)."""
    burn = "import time\nend = time.monotonic() + 240\nwhile time.monotonic() < end: pass\n"
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(3)]
    root = short_tmpdir("tb")
    local = LocalCloud(root, 0)
    try:
        local.start(4)
        started = time.monotonic()
        local.wait_whole(timeout=120)
        print(f"whole {time.monotonic() - started:.2f} s after the last broker was ready")
        ids = {b["id"] for b in local.brokers}
        assert whole([_status(b["http"]) for b in local.brokers], ids)
    finally:
        for p in burners:
            p.kill()
            p.wait()
        local.stop()
        shutil.rmtree(root, ignore_errors=True)
