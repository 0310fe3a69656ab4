"""The cloud benchmark's fleet: a LocalCloud of brokers, what their status pages say, and
when their logs saw links go down and come up. Used by benchmarks/cloud.py (`scripts/bench`
skips modules whose name starts with _)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from tits.localcloud import LocalCloud, _status, whole

# benchmarks/broker.py, loaded by path (benchmarks/ is no package): users, logins, loads
_spec = importlib.util.spec_from_file_location(
    "bench_broker", Path(__file__).with_name("broker.py")
)
assert _spec is not None and _spec.loader is not None
bench = sys.modules.get("bench_broker") or importlib.util.module_from_spec(_spec)
if "bench_broker" not in sys.modules:
    sys.modules["bench_broker"] = bench  # msgspec resolves its Structs' annotations there
    _spec.loader.exec_module(bench)

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def say(text: str) -> None:
    print(text, flush=True)


# -- a cloud of brokers and what its status pages say ---------------------------------------


class Fleet:
    """A `LocalCloud` with its own data directory, secret and keyd."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.local = LocalCloud(root, 0)
        self.secret = root / "cloud.secret"
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(32).hex().encode() + b"\n")
        os.close(fd)
        self.ready_at: list[float] = []  # monotonic time each broker was ready
        self.dead: set[str] = set()

    def start_keyd(self) -> str:
        return self.local.start_keyd()

    def start_broker(self, i: int) -> dict[str, Any]:
        info = self.local.start_broker(i, self.secret)
        self.ready_at.append(time.monotonic())
        return info

    @property
    def brokers(self) -> list[dict[str, Any]]:
        return self.local.brokers

    def proc(self, i: int) -> subprocess.Popen[bytes]:
        return self.local.procs[1 + i]  # procs[0] is keyd

    def live(self) -> list[dict[str, Any]]:
        return [b for b in self.brokers if b["id"] not in self.dead]

    def kill9(self, i: int) -> float:
        """SIGKILL broker i; returns the wall-clock time of the kill (logs use wall time)."""
        proc = self.proc(i)
        t = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.dead.add(self.brokers[i]["id"])
        return t

    def check_alive(self) -> None:
        for i, b in enumerate(self.brokers):
            if b["id"] not in self.dead and self.proc(i).poll() is not None:
                raise SystemExit(f"broker {i} exited on its own; see {self.root}/broker{i}/log")

    def wait_whole(self, timeout: float, slow: float | None = None) -> float | None:
        """Poll the live brokers' status pages until one pass over all of them finds each one
        whole; the monotonic time of that, or None after `timeout`. One broker at a time and
        back off at the first that is not whole: 30 pollers on 2 cores would slow the cloud.
        Still not whole after `slow` seconds: say what is missing, once."""
        live = self.live()
        ids = {b["id"] for b in live}
        start = time.monotonic()
        deadline = start + timeout
        i = ok = 0
        while ok < len(live):
            if time.monotonic() > deadline:
                return None
            if slow is not None and time.monotonic() - start > slow:
                say(f"    not whole after {slow:.0f} s:")
                diagnose(self)
                slow = None
            if whole([_status(live[i % len(live)]["http"])], ids):
                ok += 1
                i += 1
            else:
                ok = 0
                self.check_alive()
                time.sleep(0.02)
        return time.monotonic()

    def cpu(self) -> float:
        """CPU seconds all live brokers have used so far."""
        return sum(self.cpu_each().values())

    def cpu_each(self) -> dict[int, float]:
        """CPU seconds each live broker (by index) has used so far."""
        out = {}
        for i, b in enumerate(self.brokers):
            if b["id"] not in self.dead:
                try:
                    out[i] = bench.proc_cpu(self.proc(i).pid)
                except (OSError, IndexError):
                    pass
        return out

    def stop(self) -> None:
        self.local.stop()


def sys_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, not only ours)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def diagnose(fleet: Fleet) -> None:
    """Why the cloud is not whole: each broker that is not, and what it misses."""
    live = fleet.live()
    ids = {b["id"] for b in live}
    idx = {br["id"]: i for i, br in enumerate(fleet.brokers)}
    bad = 0
    for b in live:
        st = _status(b["http"])
        if st is None:
            say(f"    broker{idx[b['id']]}: no status page")
            bad += 1
            continue
        alive = {x["id"] for x in st["brokers"] if x["alive"]}
        known = {x["id"] for x in st["brokers"]}
        if whole([st], ids):
            continue
        bad += 1
        if bad <= 8:
            say(
                f"    broker{idx[b['id']]} sees as not alive: "
                f"{sorted(idx.get(x, -1) for x in ids - alive)}, of which never heard of: "
                f"{sorted(idx.get(x, -1) for x in ids - known)}; problems: "
                f"{st.get('problems', [])[:2]}"
            )
    say(f"    {bad} of {len(live)} brokers are not whole")


# -- the brokers' logs: when links went down and came up --------------------------------------

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z \[\w+\s*\] (\S+)(.*)$")


def log_events(fleet: Fleet, since: float, names: set[str]) -> list[tuple[float, int, str, str]]:
    """(wall time, broker index, event, rest of the line) of `names` events after `since`."""
    out = []
    for i in range(len(fleet.brokers)):
        try:
            lines = (fleet.root / f"broker{i}" / "log").read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            m = _LOG_LINE.match(line)
            if m:
                stamp, event, rest = m.group(1), m.group(2), m.group(3)
            else:  # a JSON line (LocalCloud starts brokers with --log-json)
                try:
                    obj = json.loads(line)
                    stamp, event = obj.pop("timestamp").rstrip("Z"), obj.pop("event")
                except (ValueError, KeyError, AttributeError, TypeError):
                    continue
                rest = " " + " ".join(f"{k}={v}" for k, v in obj.items() if k != "level")
            if event not in names:
                continue
            t = datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()
            if t >= since:
                out.append((t, i, event, rest))
    return sorted(out)
