"""systemd's notify protocol, written out (a datagram to $NOTIFY_SOCKET; no dependency):
READY=1 once the client port answers, STATUS= with peers and users, WATCHDOG=1 while the
message loop is alive (it replaces its status snapshot every 0.5 s; a stuck loop stops it,
so the watchdog fires). Without $NOTIFY_SOCKET every call is a no-op."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("titsd.sdnotify")


def notify(state: str, sock_path: str | None = None) -> bool:
    """Send one notification; False when there is no notify socket or it is gone."""
    path = sock_path if sock_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path  # "@…": the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.warning("sdnotify.failed", error=str(exc))
        return False
    return True


def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connection to the port succeeds (the ZMTP greeting is libzmq's)."""
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def status_line(snap: dict[str, Any]) -> str:
    peers = sum(1 for b in snap.get("brokers", []) if b.get("alive")) - 1
    users = len(snap.get("users", []))
    return (
        f"serving: {max(peers, 0)} peers alive, {users} users, {snap.get('sessions', 0)} sessions"
    )


class Notifier:
    """A daemon thread: READY=1 when the client port answers, then STATUS and WATCHDOG."""

    def __init__(
        self, host: str, port: int, snapshot: Callable[[], dict[str, Any]], stop: threading.Event
    ) -> None:
        self.host, self.port, self.snapshot, self.stop = host, port, snapshot, stop
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else 0.0

    def start(self) -> threading.Thread | None:
        if not os.environ.get("NOTIFY_SOCKET"):
            return None
        thread = threading.Thread(target=self._run, name="titsd-sdnotify", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        while not self.stop.is_set() and not port_answers(self.host, self.port):
            self.stop.wait(0.05)
        if self.stop.is_set():
            return
        snap = self.snapshot()
        notify(f"READY=1\nSTATUS={status_line(snap)}\nMAINPID={os.getpid()}")
        log.info("sdnotify.ready", port=self.port)
        every = self.watchdog_s / 3 if self.watchdog_s else 5.0
        last, last_change = snap, time.monotonic()
        while not self.stop.wait(every):
            snap = self.snapshot()
            now = time.monotonic()
            if snap is not last:  # the loop made a new one: it is alive
                last, last_change = snap, now
            msg = f"STATUS={status_line(snap)}"
            if self.watchdog_s and now - last_change < self.watchdog_s / 2:
                msg += "\nWATCHDOG=1"
            notify(msg)

    def stopping(self) -> None:
        notify("STOPPING=1\nSTATUS=draining")
