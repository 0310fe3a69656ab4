"""Issue 14, hole 4: while the broker refused with `storage`, `tits send` said "timeout: the
broker did not acknowledge" (the refusal was taken as transient and dropped). Now the text
stays in the outbox and the command says the broker's own reason; once space is back, the next
command sends it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc, People, people_fixture  # noqa: F401
from tests.faults.test_disk_full import fill, small_disk  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(180)


def tits(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TITS_LANG="en", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_send_says_the_brokers_reason_and_keeps_the_text(
    small_disk: Path,  # noqa: F811
    people: People,
) -> None:
    broker = BrokerProc(small_disk / "broker").start()
    try:
        a, b = people.alice, people.bob
        for h in (a, b):
            h.save_config(broker=broker.url)
        assert tits(b.path, "recv", "--timeout", "2").returncode == 0  # Bob is known there
        filler = fill(small_disk)
        big = "滿" * 20_000  # more than a page: it cannot fit in what the database has left
        r = tits(a.path, "send", b.fingerprint, big, "--timeout", "8")
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert "storage" in r.stderr, r.stderr  # the broker's reason, not a bare timeout
        waiting = [json.loads(x) for x in tits(a.path, "outbox", "--json").stdout.splitlines()]
        assert [w["text"] for w in waiting] == [big]
        assert "storage" in waiting[0]["reason"]
        filler.unlink()
        assert tits(a.path, "recv", "--timeout", "5").returncode == 0  # flushes the outbox
        assert tits(a.path, "outbox", "--json").stdout == ""
        r = tits(b.path, "recv", "--json", "--timeout", "10")
        got = [json.loads(x) for x in r.stdout.splitlines()]
        assert [g["text"] for g in got if g["kind"] == "text"] == [big]
    finally:
        broker.cleanup()
