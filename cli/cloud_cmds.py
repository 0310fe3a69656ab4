"""`tits cloud up`: a whole local cloud on loopback — keyd and N brokers as child processes
that join one another — until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from tits.errors import TitsError
from tits.router import check_invariants

from .output import console, emit_json, t

cloud_app = typer.Typer(help="A local ω IM cloud for trying things out. 本機測試雲。")

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
        alive = {b["id"] for b in st.get("brokers", []) if b.get("alive")}
        if alive != ids:
            return False
        graph: dict[str, dict[str, int]] = {b: {} for b in alive}
        for link in st.get("links", []):
            if link["a"] in graph and link["b"] in graph:
                graph[link["a"]][link["b"]] = graph[link["b"]][link["a"]] = 1
        if check_invariants(graph):
            return False
    return True


class LocalCloud:
    def __init__(self, data: Path, base_port: int, host: str = "127.0.0.1") -> None:
        self.data, self.base_port, self.host = data, base_port, host
        self.procs: list[subprocess.Popen[bytes]] = []
        self.brokers: list[dict[str, Any]] = []
        self.keyserver = ""

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
        proc = self._spawn(
            [*_exe("tits-keyd", "tits.keyd.main"), "--data", str(d), "--host", self.host,
             "--port", self._port(0)], d,
        )  # fmt: skip
        self.keyserver = _wait_ready(d / "ready.json", proc, "tits-keyd")["url"]
        return self.keyserver

    def start_broker(self, i: int, secret: Path) -> dict[str, Any]:
        d = self.data / f"broker{i}"
        ports = [self._port(10 + 4 * i + k) for k in range(4)]
        argv = [
            *_exe("titsd", "tits.broker.main"), "--data", str(d), "--host", self.host,
            "--client-port", ports[0], "--peer-port", ports[1], "--pub-port", ports[2],
            "--http-port", ports[3], "--keyserver", self.keyserver,
            "--cloud-secret", str(secret), "--name", f"broker{i}",
        ]  # fmt: skip
        if self.brokers:
            first = self.brokers[0]
            argv += ["--join", f"tcp://{self.host}:{first['peer_port']}#{first['curve_key']}"]
        info = _wait_ready(d / "ready.json", self._spawn(argv, d), f"broker {i}")
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


@cloud_app.command("up")
def up(
    brokers: Annotated[int, typer.Option("--brokers", min=1, max=64, help="How many brokers.")] = 4,
    base_port: Annotated[
        int,
        typer.Option(
            "--base-port", min=0, max=65000, help="keyd on P, broker i on P+10+4i…; 0: any"
        ),
    ] = 0,
    data: Annotated[
        Path | None, typer.Option("--data", help="Keep keys and mailboxes here [a temp dir].")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object when whole.")
    ] = False,
) -> None:
    """Start keyd and N brokers on 127.0.0.1; print their addresses once the cloud is whole."""
    tmp = None if data else Path(tempfile.mkdtemp(prefix="tits-cloud-"))
    root = data or tmp
    assert root is not None
    root.mkdir(parents=True, exist_ok=True)
    secret = root / "cloud.secret"
    if not secret.exists():
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    cloud = LocalCloud(root, base_port)

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        with Progress(console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task(t("啟動中…", "starting…"), total=brokers + 2)
            cloud.start_keyd()
            progress.advance(task)
            for i in range(brokers):
                cloud.start_broker(i, secret)
                progress.advance(task)
            ids = {b["id"] for b in cloud.brokers}
            deadline = time.monotonic() + WHOLE_TIMEOUT
            while not whole([_status(b["http"]) for b in cloud.brokers], ids):
                if time.monotonic() > deadline:
                    raise TitsError(f"the cloud did not become whole in {WHOLE_TIMEOUT:.0f} s")
                for proc in cloud.procs:
                    if proc.poll() is not None:
                        raise TitsError(f"a server exited (code {proc.returncode}); logs in {root}")
                time.sleep(0.1)
            progress.advance(task)
        summary = {
            "keyserver": cloud.keyserver,
            "brokers": [
                {"id": b["id"], "url": b["url"], "http": b["http"], "pid": b["pid"]}
                for b in cloud.brokers
            ],
        }
        if as_json:
            emit_json(summary)
        else:
            table = Table(title=t("ω IM 本機雲已就緒", "ω IM local cloud is up"))
            for col in ("#", "id", "broker URL (--broker)", t("狀態頁", "status page")):
                table.add_column(col)
            for i, b in enumerate(cloud.brokers):
                table.add_row(str(i), b["id"][:16] + "…", b["url"], b["http"])
            console.print(table)
            console.print(f"{t('金鑰伺服器', 'key server')}: {cloud.keyserver}   data: {root}")
            console.print(t("按 Ctrl-C 結束。", "Ctrl-C stops it."))
        while all(p.poll() is None for p in cloud.procs):
            time.sleep(0.5)
        raise TitsError(f"a server exited; logs in {root}")
    except KeyboardInterrupt:
        if not as_json:
            console.print(t("正在停止…", "stopping…"))
    finally:
        cloud.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
