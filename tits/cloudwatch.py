"""Watching a running local cloud (`tits cloud up`): which broker died, when the others had
repaired around it, and the requests another terminal makes (`tits cloud kill N [--hard]`,
`tits cloud restart N`) through files in the cloud's run directory:

    <data>/control/req-<id>.json    {"cmd": "kill"|"restart", "broker": N, "hard": bool}
    <data>/control/done-<id>.json   {"ok": bool, "message": "..."}

A file, not a socket: a request survives the watcher being busy (a restart takes seconds),
and the directory's mode (0700) is the access control. The newest cloud of this user is
named in $TMPDIR/tits-cloud-<uid>.json, so the commands need no --data.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import TitsError
from .localcloud import LocalCloud, _status, whole

Event = dict[str, Any]
CONTROL = "control"


def pointer_path() -> Path:
    return Path(tempfile.gettempdir()) / f"tits-cloud-{os.getuid()}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_cloud(data: Path | None) -> Path:
    """The run directory of the cloud a command is for: --data, else the newest one up."""
    if data is not None:
        if not (data / CONTROL).is_dir():
            raise TitsError(f"no running cloud in {data} (no {data / CONTROL})")
        return data
    try:
        info = json.loads(pointer_path().read_text())
        root, pid = Path(info["data"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TitsError("no local cloud is up (start one with `tits cloud up`)") from None
    if not _alive(pid):
        raise TitsError(f"the cloud in {root} is not running any more (pid {pid})")
    return root


def request(root: Path, cmd: str, broker: int, hard: bool = False, timeout: float = 90) -> str:
    """Ask the watcher of the cloud in `root`; its answer, or TitsError."""
    ctl = root / CONTROL
    rid = uuid.uuid4().hex
    tmp = ctl / f".req-{rid}.tmp"
    tmp.write_text(json.dumps({"cmd": cmd, "broker": broker, "hard": hard}))
    os.replace(tmp, ctl / f"req-{rid}.json")
    done = ctl / f"done-{rid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = json.loads(done.read_text())
        except (OSError, ValueError):
            time.sleep(0.1)
            continue
        done.unlink(missing_ok=True)
        if not answer.get("ok"):
            raise TitsError(str(answer.get("message", "refused")))
        return str(answer.get("message", ""))
    (ctl / f"req-{rid}.json").unlink(missing_ok=True)
    raise TitsError(f"the cloud in {root} did not answer within {timeout:.0f} s")


class CloudWatch:
    """Polled by `tits cloud up` every half second; `emit` gets one event a change."""

    def __init__(self, cloud: LocalCloud, emit: Callable[[Event], None]) -> None:
        self.cloud, self.emit = cloud, emit
        self.ctl = cloud.data / CONTROL
        self.ctl.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.ctl, 0o700)
        self.stopped: set[int] = set()  # brokers down on purpose or noticed dead
        self.pending: str | None = None  # "repair" (someone is gone) or "whole" (rejoining)
        self.since = 0.0
        self.keyd_reported = False

    def advertise(self) -> None:
        tmp = pointer_path().with_suffix(".tmp")
        tmp.write_text(json.dumps({"data": str(self.cloud.data.resolve()), "pid": os.getpid()}))
        os.replace(tmp, pointer_path())

    def withdraw(self) -> None:
        try:
            if json.loads(pointer_path().read_text()).get("pid") == os.getpid():
                pointer_path().unlink()
        except (OSError, ValueError):
            pass

    def _event(self, name: str, **fields: Any) -> None:
        self.emit({"event": name, "time": round(time.time(), 3), **fields})

    def poll(self) -> None:
        cloud = self.cloud
        for i, proc in sorted(cloud.broker_procs.items()):
            if i not in self.stopped and proc.poll() is not None:
                self.stopped.add(i)
                self._event(
                    "broker.died", broker=i, id=cloud.brokers[i]["id"], code=proc.returncode
                )
                self._await("repair")
        kp = cloud.keyd_proc
        if kp is not None and kp.poll() is not None and not self.keyd_reported:
            self.keyd_reported = True
            self._event("keyd.died", code=kp.returncode)
        for req in sorted(self.ctl.glob("req-*.json")):
            self._serve(req)
        if self.pending:
            live = cloud.live()
            statuses = [_status(cloud.brokers[i]["http"]) for i in live]
            if live and whole(statuses, {cloud.brokers[i]["id"] for i in live}):
                took = round(time.monotonic() - self.since, 2)
                dead = sorted(set(cloud.broker_procs) - set(live))
                name = "cloud.repaired" if self.pending == "repair" else "cloud.whole"
                problems = sum(len(st.get("problems", [])) for st in statuses if st)
                self._event(name, live=live, dead=dead, took_s=took, problems=problems)
                self.pending = None

    def _await(self, what: str) -> None:
        self.pending, self.since = what, time.monotonic()

    def _serve(self, req: Path) -> None:
        rid = req.stem.removeprefix("req-")
        try:
            ask = json.loads(req.read_text())
            req.unlink()
        except (OSError, ValueError):
            return
        try:
            message = self._do(ask)
            answer = {"ok": True, "message": message}
        except (TitsError, KeyError, ValueError, TypeError) as exc:
            text = exc.message if isinstance(exc, TitsError) else f"bad request: {exc}"
            answer = {"ok": False, "message": text}
        tmp = self.ctl / f".done-{rid}.tmp"
        tmp.write_text(json.dumps(answer))
        os.replace(tmp, self.ctl / f"done-{rid}.json")

    def _do(self, ask: dict[str, Any]) -> str:
        cloud, cmd, i = self.cloud, ask["cmd"], int(ask["broker"])
        if i not in cloud.broker_procs:
            raise TitsError(f"there is no broker {i} (0…{len(cloud.brokers) - 1})")
        running = cloud.broker_procs[i].poll() is None
        if cmd == "kill":
            if not running:
                raise TitsError(f"broker {i} is not running")
            hard = bool(ask.get("hard"))
            self.stopped.add(i)
            code = cloud.kill(i, hard=hard)
            self._event("broker.killed", broker=i, id=cloud.brokers[i]["id"], hard=hard, code=code)
            self._await("repair")
            return f"broker {i} stopped ({'SIGKILL' if hard else 'SIGTERM'}, exit {code})"
        if cmd == "restart":
            if running:
                self.stopped.add(i)
                code = cloud.kill(i)
                self._event("broker.killed", broker=i, id=cloud.brokers[i]["id"], hard=False,
                            code=code)  # fmt: skip
            info = cloud.restart(i)
            self.stopped.discard(i)
            self._event("broker.restarted", broker=i, id=info["id"], url=info["url"],
                        http=info["http"], pid=info["pid"])  # fmt: skip
            self._await("whole")
            return f"broker {i} is back: {info['url']} (pid {info['pid']})"
        raise TitsError(f"unknown request {cmd!r}")
