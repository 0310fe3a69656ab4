"""titsd under systemd, as far as a test machine allows: the units verify, readiness goes out
over $NOTIFY_SOCKET (a unix datagram socket this test binds) only once the client port
answers, STOPPING=1 at SIGTERM; and a broker that binds every interface advertises its name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc
from tests.support import short_tmpdir, stop_process

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "configs" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # the units name the installed /usr/local/bin/titsd; verify checks it exists: ours instead
    bindir = Path(sys.executable).parent
    if not (bindir / "titsd").exists():
        pytest.skip("titsd is not installed beside this Python")
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/usr/local/bin/", f"{bindir}/")
        (tmp_path / unit.name).write_text(text)
    (tmp_path / "titsd@main.service").symlink_to(tmp_path / "titsd@.service")
    for name in ("titsd@main.service", "tits-keyd.service"):
        res = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / name)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert res.returncode == 0 and not res.stderr.strip(), (name, res.stderr)
    text = (UNITS / "titsd@.service").read_text()
    for must in (
        "Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=", "PrivateTmp=yes",
        "ProtectSystem=strict", "NoNewPrivileges=yes", "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service", "--check",
    ):  # fmt: skip
        assert must in text, must


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_ready_is_sent_only_once_the_client_port_answers() -> None:
    root = short_tmpdir("sd")
    data = root / "b"
    sock_path = root / "notify"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(str(sock_path))
    rx.settimeout(60)
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="600000")
    with open(root / "log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tits.broker.main", "--data", str(data), "--client-port", "0",
             "--peer-port", "0", "--pub-port", "0", "--http-port", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    tries: list[tuple[float, bool]] = []  # (when an attempt began, did the port answer)
    done = threading.Event()

    def watch_port() -> None:
        port = None
        while not done.is_set():
            try:
                port = port or json.loads((data / "ready.json").read_text())["client_port"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.005)
                continue
            began = time.monotonic()
            tries.append((began, _port_answers(port)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_port, daemon=True)
    watcher.start()
    try:
        msgs: list[str] = []
        while not any("READY=1" in m for m in msgs):
            msgs.append(rx.recv(4096).decode())
        ready_at = time.monotonic()
        info = json.loads((data / "ready.json").read_text())  # written before READY=1
        assert _port_answers(info["client_port"])
        time.sleep(0.3)
        after = [ok for began, ok in tries if began >= ready_at]
        assert after and all(after), "the client port refused a connection after READY=1"
        ready = next(m for m in msgs if "READY=1" in m)
        assert f"MAINPID={proc.pid}" in ready and "STATUS=serving: 0 peers alive" in ready
        # the watchdog is fed while the loop runs (every WATCHDOG_USEC/3)
        later = [rx.recv(4096).decode() for _ in range(3)]
        assert sum("WATCHDOG=1" in m for m in later) >= 2, later
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in rx.recv(4096).decode():
            pass
        assert proc.wait(30) == 0
    finally:
        done.set()
        stop_process(proc)
        rx.close()
        BrokerProc(data).cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_without_notify_socket_nothing_is_sent_and_it_still_starts(tmp_path: Path) -> None:
    b = BrokerProc(tmp_path / "b", "--bind", "0.0.0.0", "--public-host", "localhost").start()
    try:
        assert b.url.startswith("tcp://localhost:") and b.http.startswith("http://localhost:")
        assert b.info["peer_url"].startswith("tcp://localhost:")
        assert _port_answers(b.info["client_port"])  # every interface, loopback included
        assert b.status()["url"] == b.url
    finally:
        b.cleanup()


def test_a_broker_binds_ipv6_everywhere() -> None:
    root = short_tmpdir("v6")
    b = BrokerProc(root / "b", "--bind", "::", "--public-host", "::1").start()
    try:
        assert b.url.startswith("tcp://[::1]:") and b.http.startswith("http://[::1]:")
        with socket.create_connection(("::1", b.info["client_port"]), timeout=5):
            pass
        assert b.status()["url"] == b.url  # the status page over IPv6
    finally:
        b.cleanup()
        shutil.rmtree(root, ignore_errors=True)
