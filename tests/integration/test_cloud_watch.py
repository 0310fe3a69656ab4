"""`tits cloud up --brokers 6` as a place to watch the cloud: `kill -9` one broker and the
cloud up keeps running, says which died and when the other five had repaired; they keep
serving (a text goes from Alice at one survivor to Bob at another), their /api/status shows
the repair; `tits cloud restart N` from another process brings it back into the cloud."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.broker_fixtures import People, people_fixture  # noqa: F401 - fixture
from tits.client.blocking import Message, Messenger
from tits.keyclient import KeyClient
from tits.localcloud import _status, graph_of, whole

pytestmark = pytest.mark.timeout(300)
TITS = [sys.executable, "-m", "tits.cli"]


class Lines:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.out = proc.stdout
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.out, selectors.EVENT_READ)

    def next(self, timeout: float = 90) -> dict[str, Any]:
        assert self.sel.select(timeout=timeout), f"no line within {timeout} s"
        line = self.out.readline()
        assert line, "cloud up ended"
        return dict(json.loads(line))  # every line is one JSON object

    def until(self, event: str) -> dict[str, Any]:
        while (e := self.next())["event"] != event:
            pass
        return e


def _publish(keyserver: str, *homes: Any) -> None:
    kc = KeyClient(keyserver)
    for home in homes:
        kc.publish_key(home.identity.export_public(home.fingerprint))
        _, cert_bytes, sig = home.certificate
        kc.publish_device(cert_bytes, sig, home.device.prove(cert_bytes))


def test_kill9_one_of_six_the_rest_repair_and_restart_brings_it_back(
    tmp_path: Path, people: People
) -> None:
    root = tmp_path / "cloud"
    proc = subprocess.Popen(
        [*TITS, "cloud", "up", "--brokers", "6", "--json", "--data", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = Lines(proc)
    try:
        summary = lines.next(180)
        assert "event" not in summary and summary["data"] == str(root)
        brokers = summary["brokers"]
        assert len(brokers) == 6
        victim = 2
        os.kill(brokers[victim]["pid"], signal.SIGKILL)
        died = lines.next()
        assert (died["event"], died["broker"], died["code"]) == ("broker.died", 2, -9)
        repaired = lines.until("cloud.repaired")
        assert repaired["live"] == [0, 1, 3, 4, 5] and repaired["dead"] == [2]
        assert proc.poll() is None  # cloud up is still running

        survivors = [b for i, b in enumerate(brokers) if i != victim]
        ids = {b["id"] for b in survivors}
        statuses = [_status(b["http"]) for b in survivors]
        assert whole(statuses, ids)  # each survivor: the five, bridgeless, without the dead one
        for st in statuses:
            assert st is not None
            dead = [b for b in st["brokers"] if b["id"] == brokers[victim]["id"]]
            assert dead and not dead[0]["alive"]
            assert brokers[victim]["id"] not in graph_of(st)

        # the others keep serving: Alice at broker 0 writes to Bob at broker 4
        _publish(summary["keyserver"], people.alice, people.bob)
        alice = Messenger(people.alice, broker=brokers[0]["url"], keyserver=summary["keyserver"])
        alice.send_text([people.bob.fingerprint], "還在嗎？")
        alice.close()
        bob = Messenger(people.bob, broker=brokers[4]["url"], keyserver=summary["keyserver"])
        got: list[Message] = []
        bob.receive(got.append, timeout=30, until=lambda: bool(got))
        bob.close()
        assert [m.text for m in got] == ["還在嗎？"]

        # from another terminal: bring it back; a wrong number is one clear line
        bad = subprocess.run([*TITS, "cloud", "restart", "9", "--data", str(root)],
                             capture_output=True, text=True, timeout=60, check=False,
                             env=dict(os.environ, TITS_LANG="en"))  # fmt: skip
        assert bad.returncode == 1 and "there is no broker 9" in bad.stderr
        res = subprocess.run([*TITS, "cloud", "restart", str(victim), "--data", str(root)],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert res.returncode == 0, res.stderr
        back = lines.next()
        assert back["event"] == "broker.restarted" and back["id"] == brokers[victim]["id"]
        assert back["url"] == brokers[victim]["url"]  # same key, same port
        whole_again = lines.until("cloud.whole")
        assert whole_again["live"] == [0, 1, 2, 3, 4, 5] and whole_again["dead"] == []
        all_ids = {b["id"] for b in brokers}
        assert whole([_status(b["http"]) for b in brokers], all_ids)

        # and a gentle stop, asked the same way
        res = subprocess.run([*TITS, "cloud", "kill", "5", "--data", str(root)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 0 and "broker 5 stopped (SIGTERM, exit 0)" in res.stdout
        killed = lines.next()
        assert (killed["event"], killed["broker"], killed["hard"]) == ("broker.killed", 5, False)
        assert lines.until("cloud.repaired")["dead"] == [5]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
