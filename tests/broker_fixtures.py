"""Helpers and fixtures for tests that need a real `titsd` and real users.

    from tests.broker_fixtures import broker_fixture, people_fixture  # noqa: F401

  registers the `broker` and `people` fixtures in a test module.

* `BrokerProc` runs the real `titsd` as a subprocess on 127.0.0.1 with every port 0, reads
  `<data>/ready.json`, and can `kill9()` and `start()` it again on the same data and client
  port (so connected clients reconnect to the same address).
* `people` gives fresh Alice, Bob and Mallory (GnuPG keys + device keys, each other's public
  keys imported), copied from templates made once per session, in short /tmp paths (GnuPG
  socket paths must stay short); gpg-agents are killed at teardown.
* `second_device(home, path)` makes another device of the same user (same GnuPG key, new
  device key and certificate).
* `wait_for(pred, timeout)` polls a condition instead of sleeping a fixed time.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import (  # noqa: F401 - re-exported for the tests
    kill_agent,
    short_tmpdir,
    stop_process,
    wait_for,
)
from tits.client import Connection
from tits.device import DeviceKey
from tits.home import Home

TITSD = [sys.executable, "-m", "tits.broker.main"]
READY_TIMEOUT = 30.0


class BrokerProc:
    def __init__(self, data: Path, *args: str) -> None:
        self.data = Path(data)
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.log_path = self.data.parent / f"{self.data.name}.log"

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def http(self) -> str:
        return str(self.info["http"])

    @property
    def id(self) -> str:
        return str(self.info["id"])

    def start(self) -> BrokerProc:
        """Start (or restart on the same data and client port)."""
        ready = self.data / "ready.json"
        ready.unlink(missing_ok=True)
        port = str(self.info.get("client_port", 0))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *TITSD,
                    "--data",
                    str(self.data),
                    "--client-port",
                    port,
                    "--peer-port",
                    "0",
                    "--pub-port",
                    "0",
                    "--http-port",
                    "0",
                    *self.args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"titsd exited {self.proc.returncode}: {self.stderr()}")
            try:
                info = json.loads(ready.read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.02)
                continue
            if info.get("pid") == self.proc.pid:
                self.info = info
                return self
            time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError(f"titsd not ready within {READY_TIMEOUT}s: {self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> int:
        if self.proc is None:
            return 0
        rc = stop_process(self.proc)
        self.proc = None
        return rc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.http + "/api/status", timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def get(self, path: str) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(self.http + path, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()

    def cleanup(self) -> None:
        from tits.broker.login import close_login_home, login_home_path

        self.stop()
        kill_agent(self.data / "gnupg")
        close_login_home(login_home_path(self.data))  # left by a kill -9


@pytest.fixture(name="broker")
def broker_fixture() -> Iterator[BrokerProc]:
    root = short_tmpdir("tb")
    b = BrokerProc(root / "broker").start()
    yield b
    b.cleanup()
    shutil.rmtree(root, ignore_errors=True)


# -- users ----------------------------------------------------------------------------------


def _copy_home(src: Path, dst: Path) -> Home:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("S.*", "*.lock", "store.db*"))
    return Home(dst)


def second_device(home: Home, path: Path, name: str = "second") -> Home:
    """The same user on another device: same GnuPG key, its own device key and certificate."""
    shutil.copytree(
        home.path / "gnupg", path / "gnupg", ignore=shutil.ignore_patterns("S.*", "*.lock")
    )
    os.chmod(path, 0o700)
    other = Home(path)
    device = DeviceKey.generate()
    cert, sig = device.certify(other.identity, home.fingerprint, name)
    device.save(path / "device.key")
    (path / "device.cert").write_bytes(cert.to_bytes())
    (path / "device.sig").write_text(sig)
    cfg = dict(home.config)
    cfg["device_name"] = name
    other.save_config(**cfg)
    return other


@dataclass
class People:
    root: Path
    alice: Home
    bob: Home
    mallory: Home

    @property
    def all(self) -> tuple[Home, Home, Home]:
        return (self.alice, self.bob, self.mallory)

    def home(self, name: str) -> Home:
        return Home(self.root / name)


_TEMPLATE: Path | None = None


def _template() -> Path:
    global _TEMPLATE
    if _TEMPLATE is None:
        root = short_tmpdir("tu")
        homes = []
        for name, full in (("alice", "Alice 陳"), ("bob", "Bob 林"), ("mallory", "Mallory")):
            h = Home(root / name)
            h.create(full, f"{name}@example.org", f"{name}-phone")
            homes.append(h)
        for a in homes:
            for b in homes:
                if a is not b:
                    a.identity.import_public(b.identity.export_public(b.fingerprint))
        for h in homes:
            kill_agent(h.path / "gnupg")
        _TEMPLATE = root
    return _TEMPLATE


@pytest.fixture(name="people")
def people_fixture() -> Iterator[People]:
    tpl = _template()
    root = short_tmpdir("tp")
    p = People(
        root,
        _copy_home(tpl / "alice", root / "alice"),
        _copy_home(tpl / "bob", root / "bob"),
        _copy_home(tpl / "mallory", root / "mallory"),
    )
    yield p
    for d in root.iterdir():
        kill_agent(d / "gnupg")
    shutil.rmtree(root, ignore_errors=True)


def connect(home: Home, url: str, login: bool = True) -> Connection:
    _, cert_bytes, sig = home.certificate
    conn = Connection(url, home.identity, home.fingerprint, cert_bytes, sig)
    if login:
        conn.login()
    return conn


@atexit.register
def _remove_template() -> None:
    if _TEMPLATE is not None:
        shutil.rmtree(_TEMPLATE, ignore_errors=True)


class RawClient:
    """A bare DEALER to the broker, for sending whatever frames a test likes.

    mechanism: "curve" (a fresh client key, like a real client), "null" or "plain"."""

    def __init__(
        self, url: str, *, mechanism: str = "curve", routing_id: bytes | None = None
    ) -> None:
        import zmq

        from tits.client import BrokerURL

        self.url = BrokerURL.parse(url)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if routing_id is not None:
            self.sock.routing_id = routing_id
        self.curve_public = b""
        if mechanism == "curve":
            public, secret = zmq.curve_keypair()
            self.curve_public = public
            self.sock.curve_serverkey = self.url.server_key
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        elif mechanism == "plain":
            self.sock.plain_username = b"mallory"
            self.sock.plain_password = b"secret"
        self.sock.connect(self.url.address)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def send_msg(self, msg: Any, *extra: bytes) -> None:
        from tits import wire

        self.send(wire.encode(msg), *extra)

    def recv(self, timeout: float = 5.0) -> list[bytes] | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        return list(self.sock.recv_multipart())

    def recv_msg(self, timeout: float = 5.0) -> Any:
        from tits import wire

        frames = self.recv(timeout)
        return None if frames is None else wire.SERVER_DECODER.decode(frames[0])

    def expect(self, kind: type, timeout: float = 5.0) -> Any:
        msg = self.recv_msg(timeout)
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}"
        return msg

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
