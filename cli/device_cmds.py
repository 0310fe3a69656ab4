"""`tits device link|join|list|revoke`: your account on several devices (docs/devices.md)."""

from __future__ import annotations

import io
import socket
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from tits import pairing
from tits.client import device_admin, linking
from tits.i18n import _
from tits.log import configure

from .context import State
from .output import console, emit_json, err_console, safe

device_app = typer.Typer(help="Your devices: link a new one, list them, revoke one.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON objects, one a line.")]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Accept the short code without asking (scripts).")
]


def _asker(yes: bool, as_json: bool) -> linking.Ask:
    def ask(sas: str) -> bool:
        if as_json:
            emit_json({"sas": sas})
        else:
            console.print(
                f"{_('short code')}: [bold reverse] {sas} [/]  "
                + _("both devices must show the same.")
            )
        if yes:
            return True
        return typer.confirm(_("Do both devices show this code?"), err=True)

    return ask


def _qr(text: str) -> str:
    import segno

    out = io.StringIO()
    segno.make(text, error="l").terminal(out=out, compact=True)
    return out.getvalue()


@device_app.command("link")
def link(
    ctx: typer.Context,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds the code works (at most 900).")
    ] = pairing.CODE_TTL_S,
    broker: Annotated[str | None, typer.Option("--broker", help="Broker to pair through.")] = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a one-time code (and QR) for a new device, wait for it to join."""
    configure("warning")
    home = State.of(ctx).home
    home.require()

    def on_code(code: pairing.Code) -> None:
        text = code.text()
        if as_json:
            emit_json({"code": text, "expires": code.expires})
            return
        console.print(_qr(text), end="", soft_wrap=True, markup=False, highlight=False)
        console.print(_("on the new device, run:"))
        console.print(f"  tits --home NEW device join {text}", soft_wrap=True, markup=False)
        console.print(_("the code works once, for {timeout} s.").format(timeout=int(timeout)))

    done = linking.link(home, _asker(yes, as_json), on_code, broker=broker, ttl_s=timeout)
    if as_json:
        emit_json({"linked": done.device, "name": done.name, "seconds": round(done.seconds, 2),
                   "chunks": {"total": done.chunks_total, "sent": done.chunks_sent,
                              "skipped": done.chunks_skipped}})  # fmt: skip
    else:
        console.print(
            f"[bold green]✓[/] {_('device linked')}: {escape(safe(done.name))} ({done.device})"
        )
        if done.chunks_skipped:
            console.print(
                "  "
                + _(
                    "history resumed: {skipped} of {total} parts were already on the new "
                    "device, {sent} sent now"
                ).format(
                    skipped=done.chunks_skipped, total=done.chunks_total, sent=done.chunks_sent
                )
            )


class _Bar:
    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def update(self, have: int, total: int) -> None:
        if self.disabled:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn(_("history")),
                BarColumn(),
                MofNCompleteColumn(),
                console=err_console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("history", total=total)
        assert self.task is not None
        self.progress.update(self.task, completed=have, total=total)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@device_app.command("join")
def join(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="The code `tits device link` showed.")],
    name: Annotated[
        str | None, typer.Option("--name", help="This device's name [hostname].")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each answer.")
    ] = linking.ANSWER_S,
    history: Annotated[
        str, typer.Option("--history", help="How much history to bring: none, 30d or all.")
    ] = "all",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Join your account from this (new) device with the code another device showed."""
    configure("warning")
    home = State.of(ctx).home
    dev = name or socket.gethostname()[:64] or "device"
    bar = _Bar(disabled=as_json)  # only once the history comes: the short code is asked first
    try:
        done = linking.join(
            home, code, _asker(yes, as_json), dev, answer_s=timeout, history=history,
            progress=bar.update,
        )  # fmt: skip
    finally:
        bar.stop()
    if as_json:
        emit_json({"fingerprint": done.fingerprint, "device": done.device,
                   "published": done.published, "messages": done.messages,
                   "chunks": {"total": done.chunks_total, "resumed": done.chunks_resumed,
                              "fetched": done.chunks_fetched}})  # fmt: skip
        return
    joined = _("joined account")
    console.print(f"[bold green]✓[/] {joined}: [bold]{done.fingerprint}[/]")
    console.print(f"  {_('device')}: {escape(safe(dev))} ({done.device})")
    console.print(f"  {_('messages brought over')}: {done.messages}")
    if done.chunks_resumed:
        console.print(
            "  "
            + _(
                "history resumed: {resumed} of {total} parts were already here "
                "(from the pairing that broke off), {fetched} came now"
            ).format(
                resumed=done.chunks_resumed, total=done.chunks_total, fetched=done.chunks_fetched
            )
        )
    if not done.published:
        err_console.print(
            _("the device certificate is not on the key server yet: run `tits key publish`.")
        )


KeyserverOpt = Annotated[
    str | None, typer.Option("--keyserver", help="Key server URL [the home's keyserver].")
]


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@device_app.command("list")
def list_cmd(ctx: typer.Context, keyserver: KeyserverOpt = None, as_json: JsonOpt = False) -> None:
    """Your devices: name, created, last seen, which one this is."""
    home = State.of(ctx).home
    rows = device_admin.list_devices(home, keyserver)
    if as_json:
        for r in rows:
            emit_json(r.to_json())
        return
    table = Table(box=None, pad_edge=False)
    for col in (_("name"), "id", _("created"), _("last seen"), ""):
        table.add_column(col)
    for r in rows:
        mark = _("← this one") if r.this else ""
        if r.revoked:
            mark = _("revoked")
        seen = _when(r.last_seen_ms / 1000 if r.last_seen_ms else None)
        table.add_row(Text(safe(r.name)), r.device, _when(r.created), seen, mark)
    console.print(table)


@device_app.command("revoke")
def revoke_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The device's name or id (`tits device list`).")],
    keyserver: KeyserverOpt = None,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds for brokers to end its session before the rekey."),
    ] = device_admin.SESSION_END_S,
    as_json: JsonOpt = False,
) -> None:
    """Revoke another of your devices: brokers refuse it, others refuse its signatures, and
    your groups move to new keys without it."""
    configure("warning")
    home = State.of(ctx).home
    row = device_admin.revoke_device(home, name, keyserver)
    from tits.client.blocking import Messenger

    if not as_json:
        waiting = _("revoked; waiting for brokers to end its session, then rekeying…")
        console.print(waiting)
    time.sleep(max(0.0, wait))  # a session it holds now must not receive the new keys

    with Messenger(home, keyserver=keyserver) as m:
        groups = m.rekey_groups()
    if as_json:
        emit_json({"revoked": row.device, "name": row.name, "groups_rekeyed": groups})
        return
    console.print(
        f"[bold green]✓[/] {_('device revoked')}: {escape(safe(row.name))} "
        f"({row.device}); {_('groups rekeyed')}: {groups}"
    )
