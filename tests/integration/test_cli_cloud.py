"""`tits cloud up`: a whole local cloud from one command, reported as JSON, gone on SIGTERM."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

from tits.localcloud import _status, whole

pytestmark = pytest.mark.timeout(120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cloud_up_reports_a_whole_cloud_and_stops_it_all(tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tits.cli", "cloud", "up", "--brokers", "3", "--json",
         "--data", str(tmp_path / "cloud")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=90), "no JSON line within 90 s"
        info = json.loads(proc.stdout.readline())
        assert info["keyserver"].startswith("http://127.0.0.1:")
        brokers = info["brokers"]
        assert len(brokers) == 3 and all(set(b) == {"id", "url", "http", "pid"} for b in brokers)
        ids = {b["id"] for b in brokers}
        assert whole([_status(b["http"]) for b in brokers], ids)  # it said so only when true
        assert (_status(brokers[0]["http"]) or {}).get("pid") == brokers[0]["pid"]
        sel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # closes the pipes too
    assert proc.returncode == 0, err
    deadline = time.monotonic() + 10
    while any(_alive(b["pid"]) for b in brokers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(b["pid"]) for b in brokers)
    assert (tmp_path / "cloud" / "broker0" / "topology.bin").exists()  # --data is kept


def test_cloud_up_refuses_bad_arguments() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tits.cli", "cloud", "up", "--brokers", "0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 2 and "--brokers" in r.stderr
