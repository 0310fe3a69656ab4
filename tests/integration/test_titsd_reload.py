"""SIGHUP (issue 13): a running titsd reads its config again and applies what can change live —
limits, retry and retention, the log level, the status token — and logs what changed (a token
only as set/unset) and what needs a restart; a broken file changes nothing and stops nothing.
Checked on a real process by what it does after: the token opens the full view, a burst of 3
refuses the fourth ping, info lines appear."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.broker_fixtures import BrokerProc, RawClient, short_tmpdir, wait_for
from tits import wire

pytestmark = pytest.mark.timeout(240)

TOKEN = "hup-token-5e5a3c"
BEFORE = """\
data = "broker"
name = "before"
log_level = "warning"
log_format = "json"
retry_s = 5.0

[limits]
rate = 20000.0
burst = 40000.0
"""
AFTER = f"""\
data = "broker"
name = "after"
durability = "normal"
log_level = "info"
log_format = "json"
retry_s = 2.0
status_token = "{TOKEN}"

[limits]
rate = 1.0
burst = 3.0
"""


def events(b: BrokerProc, name: str) -> list[dict[str, Any]]:
    out = []
    for line in b.log_path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == name:
            out.append(doc)
    return out


def view(b: BrokerProc, query: str = "") -> str:
    req = urllib.request.Request(
        b.http + "/api/status" + query, headers={"X-Forwarded-For": "203.0.113.7"}
    )  # as if from afar (a proxy on this host): loopback alone no longer gives the full view
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["view"])


def pongs_of_ten_pings(b: BrokerProc) -> tuple[int, int]:
    raw = RawClient(b.url)
    try:
        for _ in range(10):
            raw.send_msg(wire.Ping(t=1))
        pongs = refused = 0
        while pongs + refused < 10:
            msg = raw.recv_msg(10)
            assert msg is not None, (pongs, refused)
            if isinstance(msg, wire.Pong):
                pongs += 1
            elif isinstance(msg, wire.Error) and msg.code == "rate-limited":
                refused += 1
        return pongs, refused
    finally:
        raw.close()


def garbage(b: BrokerProc) -> None:
    raw = RawClient(b.url)
    try:
        raw.send(b"\xc1 not msgpack", b"")
        assert isinstance(raw.recv_msg(10), wire.Error)  # answered after it was logged
    finally:
        raw.close()


def test_sighup_applies_what_changes_live_and_names_the_rest() -> None:
    root = short_tmpdir("th")
    cfg = Path(root / "titsd.toml")
    cfg.write_text(BEFORE)
    b = BrokerProc(root / "broker", "--config", str(cfg)).start()
    try:
        assert view(b, f"?token={TOKEN}") == "public"
        assert pongs_of_ten_pings(b) == (10, 0)
        garbage(b)
        assert not events(b, "conn.refused")  # info: below the level

        cfg.write_text(AFTER)
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)
        reloaded = wait_for(lambda: events(b, "config.reloaded"), 20, "config.reloaded")[0]
        assert reloaded["level"] == "warning" and reloaded["source"] == str(cfg)
        assert reloaded["changed"] == {
            "limits.rate": [20000.0, 1.0],
            "limits.burst": [40000.0, 3.0],
            "log_level": ["warning", "info"],
            "retry_s": [5.0, 2.0],
            "status_token": ["(unset)", "(set)"],
        }
        assert reloaded["restart_needed"] == ["durability", "name"]
        assert TOKEN not in b.log_path.read_text()

        assert view(b, f"?token={TOKEN}") == "full" and view(b) == "public"
        assert pongs_of_ten_pings(b) == (3, 7)  # a new key's burst is 3 now
        garbage(b)  # an info line now
        wait_for(lambda: events(b, "conn.refused"), 20, "an info line")

        cfg.write_text(AFTER + "rate = [\n")  # broken: nothing changes, nothing stops
        b.proc.send_signal(signal.SIGHUP)
        failed = wait_for(lambda: events(b, "config.reload_failed"), 20, "reload_failed")[0]
        assert str(cfg) in failed["error"]
        assert b.alive() and view(b, f"?token={TOKEN}") == "full"
        assert len(events(b, "config.reloaded")) == 1
        assert b.stop() == 0
    finally:
        b.cleanup()
