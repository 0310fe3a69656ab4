"""`titsd admin`: what an operator does to a running broker at 3 a.m., through its local socket
(`<data>/admin.sock`, broker/admin.py says why a socket).

    titsd admin [--config FILE | --data DIR] [--json] stats
    titsd admin … users                         who is logged in here, their devices, in flight
    titsd admin … kick FINGERPRINT [--minutes 15]   log a user out, refuse their logins a while
    titsd admin … drain [--off]                 send every device to another broker; no logins
    titsd admin … reload                        read the config again (as SIGHUP does)

Tables for a person, `--json` (one object) for scripts. Exit 0; 1 when the broker is not
running or refused the command; 2 for a bad argument (a fingerprint that is not 40 hex).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any, NoReturn

from rich.table import Table
from rich.text import Text

from tits.cli.output import console, emit_json, err_console, safe
from tits.errors import TitsError
from tits.i18n import _

from .admin import ANSWER_S, FINGERPRINT, SOCKET_NAME, SUN_PATH_MAX
from .config import BrokerConfig


def _fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(Text(f"titsd admin: {message}"), style="bold red", soft_wrap=True)
    raise SystemExit(code)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="titsd admin", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="the broker's config file (for its data)")
    p.add_argument("--data", type=Path, help="the broker's data directory")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="stats|users|kick|drain|reload")
    sub.add_parser("stats", help="counters, users, peers, the store")
    sub.add_parser("users", help="users logged in at this broker")
    kick = sub.add_parser("kick", help="log a user out and refuse their logins for a while")
    kick.add_argument("fingerprint", metavar="FINGERPRINT")
    kick.add_argument("--minutes", type=float, default=15.0, help="refuse logins this long [15]")
    drain = sub.add_parser("drain", help="move every device to other brokers; take no logins")
    drain.add_argument("--off", action="store_true", help="take logins again")
    sub.add_parser("reload", help="read the config again; say what changed, what needs a restart")
    return p.parse_args(argv)


def ask(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """One request, one answer; a broker that is not there is one clear line, exit 1."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(ANSWER_S + 5)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        _fail(_("the broker is not running (no admin socket at {path})").format(path=path))
    except PermissionError:
        _fail(
            _("cannot open {path}: permission denied (run as the broker's user, or root)").format(
                path=path
            )
        )
    except TimeoutError:
        _fail(_("the broker did not answer"))
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        _fail(_("the broker's answer is not JSON"))
    if not isinstance(answer, dict):
        _fail(_("the broker's answer is not JSON"))
    if not answer.get("ok"):
        _fail(str(answer.get("error", "refused")))
    answer.pop("ok", None)
    return answer


def main(argv: list[str]) -> None:
    args = parse(argv)
    request: dict[str, Any] = {"cmd": args.cmd}
    if args.cmd == "kick":
        fp = args.fingerprint.replace(" ", "").upper()
        if not FINGERPRINT.fullmatch(fp):
            _fail(
                _("{fingerprint!r} is not a fingerprint (40 hex digits)").format(
                    fingerprint=args.fingerprint
                ),
                2,
            )
        if args.minutes < 0:
            _fail(_("--minutes must not be negative"), 2)
        request.update(fingerprint=fp, seconds=args.minutes * 60)
    elif args.cmd == "drain":
        request["on"] = not args.off
    try:
        cfg = BrokerConfig.load(args.config, data=args.data)
    except TitsError as exc:
        _fail(exc.message, 2)
    path = cfg.data / SOCKET_NAME
    if len(os.fsencode(path)) > SUN_PATH_MAX:  # the broker logged admin.path_too_long
        _fail(
            _(
                "{path} is too long for a Unix socket (over {SUN_PATH_MAX} bytes): the "
                "broker serves no admin socket"
            ).format(path=path, SUN_PATH_MAX=SUN_PATH_MAX)
        )
    answer = ask(path, request)
    if args.json:
        emit_json(answer)
        return
    shows = {"stats": show_stats, "users": show_users, "kick": show_kick, "drain": show_drain}
    shows.get(args.cmd, show_reload)(answer)


def show_stats(a: dict[str, Any]) -> None:
    state = _("draining") if a.get("draining") else _("serving")
    head = Text()
    head.append(safe(str(a.get("name", ""))), style="bold")
    head.append(f"  {str(a.get('id', ''))[:16]}…  pid {a.get('pid')}  {state}")
    console.print(head)
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="cyan")
    table.add_column(justify="right")
    rows: list[tuple[str, Any]] = [
        (_("uptime"), f"{a.get('uptime_s', 0):,.0f} s"),
        (_("users here"), a.get("users_here", 0)),
        (_("users elsewhere"), a.get("users_cloud", 0)),
        (_("devices here"), a.get("devices_here", 0)),
        (_("in flight"), a.get("in_flight", 0)),
        (_("peers up"), a.get("peers_up", 0)),
        (
            _("brokers alive/down"),
            f"{a.get('brokers_alive', 0)}/{a.get('brokers_down', 0)}",
        ),
        (
            _("commits count/mean/max"),
            f"{a.get('commits', 0):,} / {a.get('commit_ms_mean', 0)} ms / "
            f"{a.get('commit_ms_max', 0)} ms",
        ),
    ]
    for name, value in dict(a.get("counters", {})).items():
        rows.append((str(name), value))
    for code, n in dict(a.get("refusals", {})).items():
        rows.append((_("refused {code}").format(code=code), n))
    for result, n in dict(a.get("logins", {})).items():
        rows.append((_("logins {result}").format(result=result), n))
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    for problem in a.get("problems", []):
        console.print(Text(f"⚠ {safe(str(problem))}", style="yellow"))


def show_users(a: dict[str, Any]) -> None:
    users = a.get("users", [])
    if not users:
        console.print(_("no users logged in at this broker"))
        return
    table = Table(title=_("{n_users} users here").format(n_users=len(users)))
    table.add_column(_("name"))
    table.add_column(_("fingerprint"), no_wrap=True)
    table.add_column(_("devices"))
    table.add_column(_("in flight"), justify="right")
    for u in users:
        devices = u.get("devices", [])
        name = safe(str(u.get("name") or "—"))
        if not u.get("listed", True):
            name += _(" (unlisted)")
        table.add_row(
            Text(name),
            str(u.get("fingerprint", "")),
            Text(", ".join(safe(str(d.get("device", ""))) for d in devices)),
            f"{sum(int(d.get('in_flight', 0)) for d in devices):,}",
        )
    console.print(table)
    if a.get("draining"):
        console.print(_("this broker is draining: no logins"))


def show_kick(a: dict[str, Any]) -> None:
    fp, n, minutes = a.get("fingerprint", ""), a.get("devices", 0), a.get("seconds", 0) / 60
    if n:
        console.print(_("logged out {n} device(s) of {fp}").format(n=n, fp=fp))
    else:
        console.print(_("{fp} is not online at this broker").format(fp=fp))
    if minutes:
        console.print(_("their logins are refused for {minutes:g} min").format(minutes=minutes))


def show_drain(a: dict[str, Any]) -> None:
    if not a.get("draining"):
        console.print(_("this broker takes logins again"))
        return
    n = a.get("devices", 0)
    console.print(
        _(
            "draining: {n} device(s) sent to other brokers, no logins taken. Stop "
            "the broker when you like (systemctl stop), or take logins again: titsd "
            "admin drain --off."
        ).format(n=n)
    )


def show_reload(a: dict[str, Any]) -> None:
    changed, restart = a.get("changed", {}), a.get("restart_needed", [])
    if not changed:
        console.print(_("no setting that changes live was changed"))
    for key, (old, new) in changed.items():
        console.print(Text(f"{key}: {old} → {new}"))
    if restart:
        console.print(
            Text(_("needs a restart: ") + ", ".join(restart)),
            style="yellow",
        )
