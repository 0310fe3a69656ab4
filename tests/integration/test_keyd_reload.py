"""tits-keyd on SIGHUP (issue 13): the search budget changes live (the third search of a client
is refused at once), what needs a restart is named, a broken file changes nothing."""

from __future__ import annotations

import json
import shutil
import signal
from typing import Any

from tests.keyd_fixtures import KeydProcess, short_tmpdir
from tests.support import wait_for


def events(server: KeydProcess, name: str) -> list[dict[str, Any]]:
    out = []
    for line in server.stderr().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == name:
            out.append(doc)
    return out


def searches(server: KeydProcess, n: int) -> list[int]:
    return [server.lookup(op="index", search="nobody@example.org")[0] for _ in range(n)]


def test_sighup_changes_the_search_budget_live() -> None:
    root = short_tmpdir("kh")
    cfg = root / "keyd.toml"
    cfg.write_text("search_rate = 5.0\nsearch_burst = 60\n")
    server = KeydProcess(root / "data", "--config", str(cfg), "--log-json").start()
    try:
        assert 429 not in searches(server, 5)
        cfg.write_text("search_rate = 0.001\nsearch_burst = 2\nmax_upload = 4096\n")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        done = wait_for(lambda: events(server, "config.reloaded"), 20, "config.reloaded")[0]
        assert done["changed"] == {"search_rate": [5.0, 0.001], "search_burst": [60, 2]}
        assert done["restart_needed"] == ["max_upload"]
        # the client's bucket keeps what it had (60 - 5), capped at the new burst of 2
        assert searches(server, 3) == [404, 404, 429]
        cfg.write_text("search_burst = [\n")
        server.proc.send_signal(signal.SIGHUP)
        failed = wait_for(lambda: events(server, "config.reload_failed"), 20, "reload_failed")
        assert str(cfg) in failed[0]["error"]
        assert server.lookup(op="get", search="0x" + "0" * 40)[0] == 404  # still serving
    finally:
        assert server.stop() == 0
        shutil.rmtree(root, ignore_errors=True)
