"""The operator's channel into a running broker (`titsd admin`, broker/admin_cli.py).

Why a Unix socket, `<data>/admin.sock`, mode 0600, rather than the HTTP port with a token: the
HTTP port is often bound to every interface for the public status page, and a token is one
more secret to keep out of shell history and process lists. A socket file is reachable only on
this host, and the kernel checks who may open it (the broker's user, and root) before a byte
is read; SO_PEERCRED is checked as well. Under systemd the operator reaches it with
`sudo titsd admin --data /var/lib/titsd/NAME …` (the unit's StateDirectory).

The protocol: one JSON object a line each way, `{"cmd": "stats"|"users"|"kick"|"drain"|"reload"}`
→ `{"ok": true, …}` or `{"ok": false, "error": "…"}`. The socket's thread only reads and
writes; every command runs on the broker's loop (`run_pending`, which the loop calls when it
is woken), so nothing here races the message path.
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from tits.errors import TitsError
from tits.log import set_level

from .config import LIVE, BrokerConfig, changes, shown
from .sdnotify import notify

if TYPE_CHECKING:
    from .server import Broker

log = structlog.get_logger("titsd.admin")

SOCKET_NAME = "admin.sock"
MAX_REQUEST = 4096  # bytes of one request line
ANSWER_S = 10.0  # the loop answers within this, or the request is reported as timed out
IO_S = 5.0  # a client that sends nothing this long is dropped
SUN_PATH_MAX = 107  # sockaddr_un's sun_path, less its NUL
FINGERPRINT = re.compile(r"[0-9A-F]{40}")
KICK_S = 15 * 60.0  # a kicked user's logins are refused this long, unless told otherwise


@dataclass
class _Request:
    cmd: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)


class AdminServer:
    """Listens on `<data>/admin.sock`; `run_pending()` on the loop answers what came."""

    def __init__(
        self,
        broker: Broker,
        data: Path,
        wake: Callable[[], None],
        load_config: Callable[[], BrokerConfig] | None = None,
    ) -> None:
        """`load_config`: the settings as a start would read them now (for a reload)."""
        self.broker, self.wake = broker, wake
        cfg = broker.cfg
        self.load_config = load_config or (lambda: BrokerConfig.load(cfg.source, data=cfg.data))
        self.path = data / SOCKET_NAME
        self.started = time.time()
        self._pending: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """False (and a warning logged) when the path is too long for a Unix socket."""
        if len(os.fsencode(self.path)) > SUN_PATH_MAX:
            log.warning("admin.path_too_long", path=str(self.path))
            return False
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # made 0600 from the start: no moment where others could open it
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="titsd-admin", daemon=True)
        self._thread.start()
        return True

    def _remove_stale(self) -> None:
        """A socket file a killed broker left behind is removed; anything else is not ours."""
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{self.path} exists and is not a socket")
        self.path.unlink()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            try:
                self.path.unlink()
            except OSError:
                pass

    # -- the socket's thread --------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._one(conn)
                except OSError:
                    pass  # the client went away: nothing to answer

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(IO_S)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid not in (0, os.geteuid()):
            self._send(conn, {"ok": False, "error": "not the broker's user"})
            return
        data = b""
        while b"\n" not in data and len(data) <= MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST + 1)
            if not chunk:
                break
            data += chunk
        try:
            cmd = json.loads(data.split(b"\n", 1)[0])
            if not isinstance(cmd, dict) or not isinstance(cmd.get("cmd"), str):
                raise ValueError
        except ValueError:
            self._send(conn, {"ok": False, "error": "a request is one JSON object with a cmd"})
            return
        request = _Request(cmd)
        self._pending.put(request)
        self.wake()
        if not request.done.wait(ANSWER_S):
            self._send(conn, {"ok": False, "error": f"the broker did not answer in {ANSWER_S:g} s"})
            return
        self._send(conn, request.answer)

    @staticmethod
    def _send(conn: socket.socket, answer: dict[str, Any]) -> None:
        conn.sendall(json.dumps(answer, ensure_ascii=False).encode() + b"\n")

    # -- on the loop --------------------------------------------------------------------------

    def submit(self, cmd: dict[str, Any]) -> None:
        """A command from this process (SIGHUP's reload): answered on the loop, logged."""
        self._pending.put(_Request(cmd))
        self.wake()

    def run_pending(self) -> None:
        while True:
            try:
                request = self._pending.get_nowait()
            except queue.Empty:
                return
            try:
                request.answer = self._answer(request.cmd)
            except _Refused as exc:
                request.answer = {"ok": False, "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - the operator hears of it; the loop goes on
                log.exception("admin.failed", cmd=str(request.cmd.get("cmd"))[:20])
                request.answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            request.done.set()

    def _answer(self, cmd: dict[str, Any]) -> dict[str, Any]:
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "stats": self._stats, "users": self._users, "kick": self._kick, "drain": self._drain,
            "reload": self._reload,
        }  # fmt: skip
        handler = handlers.get(cmd["cmd"])
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd['cmd'][:20]!r}"}
        return {"ok": True, **handler(cmd)}

    def _stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        b = self.broker
        snap = b.snapshot()
        # online here: real devices; Delivery also holds relay devices (toward other brokers)
        devices = [d for devs in b.delivery.online.values() for d in devs.values()]
        users = snap.get("users", [])
        here = sum(1 for u in users if u.get("broker") == b.fingerprint)
        brokers = snap.get("brokers", [])
        alive = sum(1 for x in brokers if x.get("alive", True))
        stats = b.writer.stats
        return {
            "id": b.fingerprint,
            "name": b.cfg.name,
            "url": b.url,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "draining": b.sessions.draining,
            "users_here": here,
            "users_cloud": len(users) - here,
            "devices_here": len(b.sessions.by_device),
            "in_flight": sum(len(d.inflight) for d in devices),
            "devices_behind": len(b.delivery.behind),
            "peers_up": len(b.cloud.peers.up_peers()),
            "brokers_alive": alive,
            "brokers_down": len(brokers) - alive,
            "problems": list(snap.get("problems", [])),
            "counters": dict(snap.get("counters", {})),
            "refusals": {k: v for k, v in b.sessions.refusals.items() if v},
            "logins": {k: v for k, v in b.sessions.login_results.items() if v},
            "commits": int(stats.get("commits", 0)),
            "commit_ms_mean": round(1000 * stats["seconds"] / stats["commits"], 3)
            if stats.get("commits")
            else 0.0,
            "commit_ms_max": round(1000 * stats.get("max_s", 0.0), 3),
        }

    def _users(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """The users logged in here, each with their devices and what is in flight to them."""
        b = self.broker
        out: dict[str, dict[str, Any]] = {}
        for (fp, device), conn in sorted(b.sessions.by_device.items()):
            entry = out.setdefault(fp, {"fingerprint": fp, "name": "", "devices": []})
            if conn.user is not None and conn.user.name:
                entry["name"] = conn.user.name
            entry["listed"] = conn.listed
            dev = conn.device
            entry["devices"].append(
                {"device": device, "in_flight": len(dev.inflight) if dev is not None else 0}
            )
        return {"users": list(out.values()), "draining": b.sessions.draining}

    def _kick(self, cmd: dict[str, Any]) -> dict[str, Any]:
        fp = str(cmd.get("fingerprint", "")).upper()
        if not FINGERPRINT.fullmatch(fp):
            raise _Refused("a fingerprint is 40 hex digits")
        seconds = cmd.get("seconds", KICK_S)
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise _Refused("seconds must be a number ≥ 0")
        n = self.broker.sessions.kick(fp, float(seconds), time.monotonic())
        log.warning("admin.kicked", user=fp[:16], devices=n, seconds=seconds)
        return {"fingerprint": fp, "devices": n, "seconds": seconds}

    def _drain(self, cmd: dict[str, Any]) -> dict[str, Any]:
        on = cmd.get("on", True) is not False
        n = self.broker.sessions.drain(on)
        log.warning("admin.drain" if on else "admin.undrain", devices=n)
        return {"draining": on, "devices": n}

    def _reload(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Read the config again (the file, TITSD_* variables, the flags it started with) and
        apply what can change live; say what needs a restart. A bad file changes nothing."""
        b = self.broker
        # systemd (notify-reload, 253+) waits for READY=1 again; older ones ignore it
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = self.load_config()
        except TitsError as exc:
            log.error("config.reload_failed", error=exc.message)
            notify("READY=1")
            raise _Refused(exc.message) from None
        diff = changes(b.cfg, new)
        live = {k: v for k, v in diff.items() if k in LIVE}
        restart = sorted(k for k in diff if k not in LIVE)
        for key, (_, value) in live.items():
            if key.startswith("limits."):
                setattr(b.limits, key[7:], value)  # the one Limits every part was handed
            else:
                setattr(b.cfg, key, value)
        if "limits.window" in live:
            b.delivery.window = new.limits.window
        if "session_timeout" in live:
            b.sessions.session_timeout = new.session_timeout
        if "retry_s" in live:
            b.delivery.retry_s = new.retry_s
        if "log_level" in live:
            set_level(new.log_level)
        if "status_token" in live:
            b.http.token = new.status_token or None
        changed = {k: [shown(k, old), shown(k, value)] for k, (old, value) in live.items()}
        log.warning(
            "config.reloaded", source=str(b.cfg.source or ""), changed=changed,
            restart_needed=restart,
        )  # fmt: skip
        notify("READY=1")
        return {"changed": changed, "restart_needed": restart}


class _Refused(Exception):
    pass
