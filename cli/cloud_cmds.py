"""`tits cloud up`: a whole local cloud on loopback — keyd and N brokers as child processes
that join one another — until Ctrl-C or SIGTERM."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from tits.errors import TitsError
from tits.localcloud import LocalCloud

from .output import console, emit_json, t

cloud_app = typer.Typer(help="A local ω IM cloud for trying things out. 本機測試雲。")


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
    cloud = LocalCloud(root, base_port)

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        with Progress(console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task(t("啟動中…", "starting…"), total=brokers + 2)
            cloud.start(brokers, on_started=lambda: progress.advance(task))
            cloud.wait_whole()
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
