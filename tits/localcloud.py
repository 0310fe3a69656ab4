"""A local cloud on loopback: keyd and brokers as child processes of this one, for
`tits cloud up`, `scripts/run`, tests and benchmarks."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import TitsError
from .router import check_invariants

START_TIMEOUT = 30.0
WHOLE_TIMEOUT = 60.0


def _exe(name: str, module: str) -> list[str]:
    """The console script beside this Python if installed, else the module's main()."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", f"from {module} import main; main()"]


def _wait_ready(path: Path, proc: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TitsError(f"{what} exited with code {proc.returncode}; see {path.parent}/log")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise TitsError(f"{what} did not start within {START_TIMEOUT:.0f} s")


def _status(http: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{http}/api/status", timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def whole(statuses: list[dict[str, Any] | None], ids: set[str]) -> bool:
    """Every broker sees all of them alive, and the graph it sees meets the invariants."""
    for st in statuses:
        if st is None:
            return False
        graph = graph_of(st)
        if set(graph) != ids:
            return False
        if check_invariants({b: dict.fromkeys(peers, 1) for b, peers in graph.items()}):
            return False
    return True


def graph_of(status: dict[str, Any]) -> dict[str, set[str]]:
    """The live brokers and their links, as one broker's /api/status shows them."""
    graph: dict[str, set[str]] = {b["id"]: set() for b in status["brokers"] if b["alive"]}
    for link in status["links"]:
        if link["a"] in graph and link["b"] in graph:
            graph[link["a"]].add(link["b"])
            graph[link["b"]].add(link["a"])
    return graph


def hop_counts(graph: dict[str, set[str]]) -> dict[str, dict[str, int]]:
    """Hop counts between every pair of brokers (BFS)."""
    out = {}
    for src in graph:
        dist, todo = {src: 0}, deque([src])
        while todo:
            node = todo.popleft()
            for nxt in graph[node]:
                if nxt not in dist:
                    dist[nxt] = dist[node] + 1
                    todo.append(nxt)
        out[src] = dist
    return out


class LocalCloud:
    def __init__(self, data: Path, base_port: int, host: str = "127.0.0.1") -> None:
        self.data, self.base_port, self.host = data, base_port, host
        self.procs: list[subprocess.Popen[bytes]] = []
        self.brokers: list[dict[str, Any]] = []
        self.keyserver = ""

    def secret(self) -> Path:
        """The cloud's join secret, made (0600) on first use; every broker gets this file."""
        path = self.data / "cloud.secret"
        if not path.exists():
            self.data.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        return path

    def start(self, brokers: int, on_started: Callable[[], None] | None = None) -> None:
        """keyd, then `brokers` brokers joining the first; returns once all are ready."""
        self.start_keyd()
        if on_started:
            on_started()
        for i in range(brokers):
            self.start_broker(i, self.secret())
            if on_started:
                on_started()

    def wait_whole(self, timeout: float = WHOLE_TIMEOUT) -> None:
        ids = {b["id"] for b in self.brokers}
        deadline = time.monotonic() + timeout
        while not whole([_status(b["http"]) for b in self.brokers], ids):
            if time.monotonic() > deadline:
                raise TitsError(f"the cloud did not become whole in {timeout:.0f} s")
            for proc in self.procs:
                if proc.poll() is not None:
                    raise TitsError(
                        f"a server exited (code {proc.returncode}); logs in {self.data}"
                    )
            time.sleep(0.1)

    def _port(self, n: int) -> str:
        return str(self.base_port + n if self.base_port else 0)

    def _spawn(self, argv: list[str], data: Path) -> subprocess.Popen[bytes]:
        data.mkdir(parents=True, exist_ok=True)
        (data / "ready.json").unlink(missing_ok=True)
        log = open(data / "log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        return proc

    def start_keyd(self) -> str:
        d = self.data / "keyd"
        # every user of a loopback cloud comes from one address: per-address budgets would
        # make them share one, so a local cloud lifts them (a public keyd keeps its own)
        proc = self._spawn(
            [*_exe("tits-keyd", "tits.keyd.main"), "--data", str(d), "--host", self.host,
             "--port", self._port(0), "--upload-rate", "1000", "--upload-burst", "100000",
             "--search-rate", "1000", "--search-burst", "100000"], d,
        )  # fmt: skip
        self.keyserver = _wait_ready(d / "ready.json", proc, "tits-keyd")["url"]
        return self.keyserver

    def start_broker(self, i: int, secret: Path, join: bool = True) -> dict[str, Any]:
        """Broker `i` (its data dir is kept: starting it again is a restart). `join=False`:
        no seed, so it finds the cloud only through the topology it persisted."""
        d = self.data / f"broker{i}"
        ports = [self._port(10 + 4 * i + k) for k in range(4)]
        argv = [
            *_exe("titsd", "tits.broker.main"), "--data", str(d), "--host", self.host,
            "--client-port", ports[0], "--peer-port", ports[1], "--pub-port", ports[2],
            "--http-port", ports[3], "--keyserver", self.keyserver,
            "--cloud-secret", str(secret), "--name", f"broker{i}",
        ]  # fmt: skip
        if join and self.brokers and i > 0:
            first = self.brokers[0]
            argv += ["--join", f"tcp://{self.host}:{first['peer_port']}#{first['curve_key']}"]
        info = _wait_ready(d / "ready.json", self._spawn(argv, d), f"broker {i}")
        if i < len(self.brokers):
            self.brokers[i] = info
        else:
            self.brokers.append(info)
        return info

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for home in self.data.glob("*/gnupg"):  # the servers' gpg-agents outlive them
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                           capture_output=True, check=False)  # fmt: skip
        from tits.broker.login import close_login_home, login_home_path

        for data in self.data.glob("broker*"):  # and a broker's login home in RAM
            close_login_home(login_home_path(data))
