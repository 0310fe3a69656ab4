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

from tits.cli.output import console, emit_json, err_console, safe, t
from tits.errors import TitsError

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
        _fail(
            t(
                f"伺服器沒有在執行（{path} 沒有管理通道）",
                f"the broker is not running (no admin socket at {path})",
            )
        )
    except PermissionError:
        _fail(
            t(
                f"無法開啟 {path}：權限不足（請以伺服器的使用者或 root 執行）",
                f"cannot open {path}: permission denied (run as the broker's user, or root)",
            )
        )
    except TimeoutError:
        _fail(t("伺服器沒有回應", "the broker did not answer"))
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        _fail(t("伺服器的回答無法解讀", "the broker's answer is not JSON"))
    if not isinstance(answer, dict):
        _fail(t("伺服器的回答無法解讀", "the broker's answer is not JSON"))
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
                t(
                    f"{args.fingerprint!r} 不是指紋（應為 40 個十六進位字元）",
                    f"{args.fingerprint!r} is not a fingerprint (40 hex digits)",
                ),
                2,
            )
        if args.minutes < 0:
            _fail(t("--minutes 不可為負數", "--minutes must not be negative"), 2)
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
            t(
                f"{path} 太長，無法作為 Unix socket（上限 {SUN_PATH_MAX} 位元組）："
                "伺服器沒有管理通道",
                f"{path} is too long for a Unix socket (over {SUN_PATH_MAX} bytes): the broker "
                "serves no admin socket",
            )
        )
    answer = ask(path, request)
    if args.json:
        emit_json(answer)
        return
    shows = {"stats": show_stats, "users": show_users, "kick": show_kick, "drain": show_drain}
    shows.get(args.cmd, show_reload)(answer)


def show_stats(a: dict[str, Any]) -> None:
    state = t("排空中", "draining") if a.get("draining") else t("服務中", "serving")
    head = Text()
    head.append(safe(str(a.get("name", ""))), style="bold")
    head.append(f"  {str(a.get('id', ''))[:16]}…  pid {a.get('pid')}  {state}")
    console.print(head)
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="cyan")
    table.add_column(justify="right")
    rows: list[tuple[str, Any]] = [
        (t("運作時間", "uptime"), f"{a.get('uptime_s', 0):,.0f} s"),
        (t("本機使用者", "users here"), a.get("users_here", 0)),
        (t("雲端其他使用者", "users elsewhere"), a.get("users_cloud", 0)),
        (t("本機裝置", "devices here"), a.get("devices_here", 0)),
        (t("傳送中", "in flight"), a.get("in_flight", 0)),
        (t("相連伺服器", "peers up"), a.get("peers_up", 0)),
        (
            t("伺服器 在線/離線", "brokers alive/down"),
            f"{a.get('brokers_alive', 0)}/{a.get('brokers_down', 0)}",
        ),
        (
            t("提交 次數/平均/最長", "commits count/mean/max"),
            f"{a.get('commits', 0):,} / {a.get('commit_ms_mean', 0)} ms / "
            f"{a.get('commit_ms_max', 0)} ms",
        ),
    ]
    for name, value in dict(a.get("counters", {})).items():
        rows.append((str(name), value))
    for code, n in dict(a.get("refusals", {})).items():
        rows.append((t(f"拒絕 {code}", f"refused {code}"), n))
    for result, n in dict(a.get("logins", {})).items():
        rows.append((t(f"登入 {result}", f"logins {result}"), n))
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    for problem in a.get("problems", []):
        console.print(Text(f"⚠ {safe(str(problem))}", style="yellow"))


def show_users(a: dict[str, Any]) -> None:
    users = a.get("users", [])
    if not users:
        console.print(t("目前沒有使用者登入本伺服器", "no users logged in at this broker"))
        return
    table = Table(title=t(f"本機使用者 {len(users)} 位", f"{len(users)} users here"))
    table.add_column(t("名稱", "name"))
    table.add_column(t("指紋", "fingerprint"), no_wrap=True)
    table.add_column(t("裝置", "devices"))
    table.add_column(t("傳送中", "in flight"), justify="right")
    for u in users:
        devices = u.get("devices", [])
        name = safe(str(u.get("name") or "—"))
        if not u.get("listed", True):
            name += t("（未公開）", " (unlisted)")
        table.add_row(
            Text(name),
            str(u.get("fingerprint", "")),
            Text(", ".join(safe(str(d.get("device", ""))) for d in devices)),
            f"{sum(int(d.get('in_flight', 0)) for d in devices):,}",
        )
    console.print(table)
    if a.get("draining"):
        console.print(t("本伺服器正在排空：不接受登入", "this broker is draining: no logins"))


def show_kick(a: dict[str, Any]) -> None:
    fp, n, minutes = a.get("fingerprint", ""), a.get("devices", 0), a.get("seconds", 0) / 60
    if n:
        console.print(t(f"已登出 {fp} 的 {n} 個裝置", f"logged out {n} device(s) of {fp}"))
    else:
        console.print(t(f"{fp} 目前不在本伺服器上線", f"{fp} is not online at this broker"))
    if minutes:
        console.print(
            t(f"接下來 {minutes:g} 分鐘拒絕其登入", f"their logins are refused for {minutes:g} min")
        )


def show_drain(a: dict[str, Any]) -> None:
    if not a.get("draining"):
        console.print(t("本伺服器再次接受登入", "this broker takes logins again"))
        return
    n = a.get("devices", 0)
    console.print(
        t(
            f"排空中：{n} 個裝置已被請到其他伺服器，不再接受登入。"
            "之後可停止本伺服器（systemctl stop），或以 titsd admin drain --off 恢復。",
            f"draining: {n} device(s) sent to other brokers, no logins taken. Stop the broker "
            "when you like (systemctl stop), or take logins again: titsd admin drain --off.",
        )
    )


def show_reload(a: dict[str, Any]) -> None:
    changed, restart = a.get("changed", {}), a.get("restart_needed", [])
    if not changed:
        console.print(t("沒有可即時變更的設定改變了", "no setting that changes live was changed"))
    for key, (old, new) in changed.items():
        console.print(Text(f"{key}: {old} → {new}"))
    if restart:
        console.print(
            Text(t("需重新啟動才生效：", "needs a restart: ") + ", ".join(restart)),
            style="yellow",
        )
