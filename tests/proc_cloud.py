"""A small cloud of real `titsd` processes (and keyd) for broker-core tests: `ProcCloud(n)`
starts it and waits until every broker sees the others; `close()` stops every process."""

from __future__ import annotations

import shutil
import signal
from typing import Any

from tests.support import short_tmpdir, wait_for
from tits.localcloud import LocalCloud, _status, whole


class ProcCloud:
    def __init__(self, n: int) -> None:
        self.root = short_tmpdir("tk")
        self.local = LocalCloud(self.root, 0)
        try:
            self.local.start(n)
            self.wait_whole()
        except BaseException:
            self.close()
            raise

    @property
    def brokers(self) -> list[dict[str, Any]]:
        return self.local.brokers

    def url(self, i: int) -> str:
        return str(self.brokers[i]["url"])

    def status(self, i: int) -> dict[str, Any]:
        return _status(self.brokers[i]["http"]) or {}

    def counters(self, i: int) -> dict[str, int]:
        return dict(self.status(i).get("counters", {}))

    def wait_whole(self, timeout: float = 60) -> None:
        ids = {b["id"] for b in self.brokers}
        wait_for(
            lambda: whole([_status(b["http"]) for b in self.brokers], ids), timeout, "a whole cloud"
        )

    def where(self, i: int, fingerprint: str) -> set[str]:
        """The brokers broker `i` lists `fingerprint` at (its users → proxy table)."""
        users = self.status(i).get("users", [])
        return {u["broker"] for u in users if u["fingerprint"] == fingerprint}

    def kill9(self, i: int) -> None:
        proc = self.local.procs[1 + i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        self.local.stop()
        shutil.rmtree(self.root, ignore_errors=True)
