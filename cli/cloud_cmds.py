"""`tits cloud up`: a whole local cloud on loopback — keyd and N brokers as child processes
that join one another — until Ctrl-C or SIGTERM, watching it: a broker that dies is reported,
then the moment the others have repaired around it; `tits cloud kill N [--hard]` and
`tits cloud restart N` from another terminal act on it (tits/cloudwatch.py)."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from tits.cloudwatch import CloudWatch, Event, find_cloud, request
from tits.i18n import _
from tits.localcloud import LocalCloud, _status, whole

from .output import console, emit_json

cloud_app = typer.Typer(help="A local ω IM cloud for trying things out.")


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
        bool,
        typer.Option("--json", help="One JSON object a line: the summary, then an event a line."),
    ] = False,
) -> None:
    """Start keyd and N brokers on 127.0.0.1; print their addresses once the cloud is whole."""
    tmp = None if data else Path(tempfile.mkdtemp(prefix="tits-cloud-"))
    root = data or tmp
    assert root is not None
    root.mkdir(parents=True, exist_ok=True)
    cloud = LocalCloud(root, base_port)

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        with Progress(console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task(_("starting…"), total=brokers + 2)
            cloud.start(brokers, on_started=lambda: progress.advance(task))
            cloud.wait_whole()
            progress.advance(task)
        summary = {
            "data": str(root),
            "keyserver": cloud.keyserver,
            "brokers": [
                {"id": b["id"], "url": b["url"], "http": b["http"], "pid": b["pid"]}
                for b in cloud.brokers
            ],
        }
        if as_json:
            emit_json(summary)
        else:
            table = Table(title=_("ω IM local cloud is up"))
            for col in ("#", "id", "broker URL (--broker)", _("status page")):
                table.add_column(col)
            for i, b in enumerate(cloud.brokers):
                table.add_row(str(i), b["id"][:16] + "…", b["url"], b["http"])
            console.print(table)
            console.print(f"{_('key server')}: {cloud.keyserver}   data: {root}")
            console.print(
                _(
                    "Ctrl-C stops it. From another terminal: tits cloud kill N [--hard], "
                    "tits cloud restart N; logs: tits logs {root}/*/log"
                ).format(root=root),
                soft_wrap=True,
            )
        watch = CloudWatch(cloud, emit_json if as_json else _say)
        watch.advertise()
        try:
            if as_json:
                while True:
                    watch.poll()
                    time.sleep(0.5)
            board = Board(cloud)
            with Live(board.render(), console=console, refresh_per_second=2) as live:
                while True:  # events print above the board; the board redraws in place
                    watch.poll()
                    if board.due():
                        live.update(board.render())
                    time.sleep(0.5)
        finally:
            watch.withdraw()
    except KeyboardInterrupt:
        if not as_json:
            console.print(_("stopping…"))
    finally:
        cloud.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


class Board:
    """The live view: each broker up or down, its links, users online, sessions and the
    messages a second it accepts, from its /api/status every 2 s; and whether the cloud is
    whole (every live broker sees the same bridgeless graph of the live ones)."""

    EVERY_S = 2.0

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.next = 0.0
        self.last: dict[int, tuple[float, int]] = {}  # broker → (when, accepted so far)

    def due(self) -> bool:
        return time.monotonic() >= self.next

    def render(self) -> Table:
        self.next = time.monotonic() + self.EVERY_S
        cloud, live = self.cloud, set(self.cloud.live())
        table = Table(title=_("ω IM local cloud"), title_justify="left")
        cols = ["#", "id", _("state"), _("links"), _("users")]
        cols += [_("sessions"), _("msg/s"), _("status page")]
        for col in cols:
            table.add_column(col)
        statuses: dict[int, dict[str, Any] | None] = {}
        for i, b in enumerate(cloud.brokers):
            st = _status(b["http"]) if i in live else None
            statuses[i] = st
            if st is None:
                state = "[bold red]down[/]" if i not in live else "[yellow]?[/]"
                table.add_row(str(i), b["id"][:16] + "…", state, "", "", "", "", b["http"])
                continue
            links = sum(1 for link in st.get("links", []) if b["id"] in (link["a"], link["b"]))
            users = sum(1 for u in st.get("users", []) if u.get("broker") == b["id"])
            accepted = int(st.get("counters", {}).get("accepted", 0))
            now = time.monotonic()
            then, before = self.last.get(i, (now, accepted))
            rate = (accepted - before) / (now - then) if now > then else 0.0
            self.last[i] = (now, accepted)
            table.add_row(
                str(i), b["id"][:16] + "…", "[green]up[/]", str(links), str(users),
                str(st.get("sessions", 0)), f"{rate:.0f}", b["http"],
            )  # fmt: skip
        ids = {cloud.brokers[i]["id"] for i in live}
        ok = bool(live) and whole([statuses[i] for i in sorted(live)], ids)
        table.caption = (
            _("✓ whole") if ok else _("… repairing")
        ) + f"  {len(live)}/{len(cloud.brokers)} brokers up · {time.strftime('%H:%M:%S')}"
        return table


def _say(e: Event) -> None:
    """An event as a person reads it."""
    when = time.strftime("%H:%M:%S", time.localtime(e["time"]))
    name, i = e["event"], e.get("broker")
    if name == "broker.died":
        why = f"signal {-e['code']}" if e["code"] < 0 else f"exit {e['code']}"
        console.print(
            f"{when} [bold red]✗[/] broker {i} ({e['id'][:16]}…) {_('died')} ({why}); "
            + _("restart it: tits cloud restart {i}").format(i=i),
            soft_wrap=True,
        )
    elif name == "broker.killed":
        how = "SIGKILL" if e["hard"] else "SIGTERM"
        console.print(f"{when} [yellow]■[/] broker {i} {_('stopped')} ({how})")
    elif name == "broker.restarted":
        console.print(f"{when} [cyan]↻[/] broker {i} {_('restarted')}: {e['url']}", soft_wrap=True)
    elif name in ("cloud.repaired", "cloud.whole"):
        live = ", ".join(map(str, e["live"]))
        dead = f"; {_('down')}: {', '.join(map(str, e['dead']))}" if e["dead"] else ""
        what = _("the rest repaired") if name == "cloud.repaired" else _("whole again")
        console.print(
            f"{when} [bold green]✓[/] {what} ({e['took_s']} s): brokers {live}{dead} — "
            + _("each sees the same bridgeless graph"),
            soft_wrap=True,
        )
    elif name == "keyd.died":
        console.print(f"{when} [bold red]✗[/] keyd {_('died')} (exit {e['code']})")


DataOpt = Annotated[
    Path | None, typer.Option("--data", help="The cloud's --data [the newest cloud up].")
]


@cloud_app.command("kill")
def kill(
    n: Annotated[int, typer.Argument(help="The broker's number (0 is the first).")],
    hard: Annotated[bool, typer.Option("--hard", help="SIGKILL: a crash, no goodbye.")] = False,
    data: DataOpt = None,
) -> None:
    """Stop broker N of the running `tits cloud up` (SIGTERM; --hard: kill -9)."""
    console.print(request(find_cloud(data), "kill", n, hard=hard), soft_wrap=True)


@cloud_app.command("restart")
def restart(
    n: Annotated[int, typer.Argument(help="The broker's number (0 is the first).")],
    data: DataOpt = None,
) -> None:
    """Start broker N of the running `tits cloud up` again (same id, key and ports)."""
    console.print(request(find_cloud(data), "restart", n), soft_wrap=True)
