"""`tits send` and `tits recv`: texts through the broker, sealed and signed on this device."""

from __future__ import annotations

import mimetypes
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
import zmq
from rich.text import Text

from tits.client import Incoming
from tits.errors import ConfigError
from tits.log import configure

from .context import State
from .messenger import Message, Messenger
from .output import console, emit_json, err_console, t
from .store import Shown

STICKER_MIME = "application/x-tits-sticker"


def _resolve(state: State, who: str) -> tuple[list[str], bytes | None]:
    if who.startswith("#"):
        raise ConfigError(t("群組尚未支援", "groups are not supported yet") + f": {who}")
    from tits.contacts import Contacts

    return [Contacts(state.home.path).resolve(who)], None


def send(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="@name, fingerprint (or #group).")],
    text: Annotated[str, typer.Argument(help="The text to send (a caption with --file).")] = "",
    file: Annotated[
        Path | None, typer.Option("--file", help="Send a file (signed, not encrypted; ≤ 1 MiB).")
    ] = None,
    sticker: Annotated[str | None, typer.Option("--sticker", help="Send a sticker by id.")] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", help="Broker URL [the one in your config].")
    ] = None,
    keyserver: Annotated[str | None, typer.Option("--keyserver", help="Key server URL.")] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Give up after this many seconds.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Send a text (or a file, a sticker); exits 0 once the broker has stored it."""
    configure("warning")
    state = State.of(ctx)
    to, group = _resolve(state, who)
    if not text and file is None and sticker is None:
        raise ConfigError(t("沒有內容可傳送", "nothing to send: give a text, --file or --sticker"))
    media: list[tuple[bytes, str]] = []
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{file}: {exc.strerror or exc}") from None
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        media.append((data, mime))
    if sticker is not None:
        media.append((sticker.encode(), STICKER_MIME))
    with Messenger(state.home, broker=broker, keyserver=keyserver) as m:
        ids = []
        if text:
            ids.append(m.send_text(to, text, group, timeout=timeout))
        for data, mime in media:
            ids.append(m.send_media(to, data, mime, group, timeout=timeout))
        if as_json:
            emit_json(
                {
                    "id": ids[0].hex(),
                    "ids": [i.hex() for i in ids],
                    "to": to,
                    "broker": m.connection().broker,
                }
            )
        else:
            names = ", ".join(m.name_of(fp) for fp in to)
            for i in ids:
                console.print(
                    f"[green]✓[/] {t('已送達伺服器', 'stored by the broker')} → {names}  "
                    f"[dim]{i.hex()}[/]"
                )


def _render(m: Message) -> Text:
    when = time.strftime("%H:%M:%S", time.localtime(m.ts / 1000))
    line = Text()
    line.append(f"{when} ", style="dim")
    line.append(m.sender_name, style="bold cyan")
    if m.verified:
        line.append(" ✓", style="bold green")
    else:
        line.append(f" ? {t('未驗證', 'not verified')}", style="bold yellow")
    line.append(": ")
    line.append(m.text if m.text is not None else f"[{m.mime}] {m.file or ''}")
    return line


def recv(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep listening for new messages.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop after this many seconds.")
    ] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", help="Broker URL [the one in your config].")
    ] = None,
    keyserver: Annotated[str | None, typer.Option("--keyserver", help="Key server URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Print the messages waiting for you (oldest first) and exit; --follow keeps listening."""
    configure("warning")
    state = State.of(ctx)
    if timeout is None and not follow:
        timeout = 30.0

    def show(msg: Message) -> None:
        if as_json:
            emit_json(msg.to_json())
        else:
            console.print(_render(msg))

    with Messenger(state.home, broker=broker, keyserver=keyserver) as m:
        try:
            n = m.receive(show, follow=follow, timeout=timeout)
        except KeyboardInterrupt:
            n = -1
        for r in m.refused:
            err_console.print(
                f"[red]✗[/] {t('已拒收', 'refused')} {r.id.hex()[:12]} "
                f"({r.sender[:16]}): {r.reason}",
                soft_wrap=True,
            )
        if n == 0 and not as_json:
            err_console.print(f"[dim]{t('沒有新訊息', 'no new messages')}[/]")


def _render_shown(m: Messenger, s: Shown) -> Text:
    return _render(
        Message(
            s.id,
            s.sender,
            m.name_of(s.sender),
            s.recipients,
            s.group,
            s.kind,
            s.text,
            s.verified,
            s.ts,
        )
    )


def chat(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="@name or fingerprint.")],
    broker: Annotated[
        str | None, typer.Option("--broker", help="Broker URL [the one in your config].")
    ] = None,
    keyserver: Annotated[str | None, typer.Option("--keyserver", help="Key server URL.")] = None,
    history: Annotated[int, typer.Option("--history", help="Earlier messages to show.")] = 20,
) -> None:
    """Chat with someone: type a line and press Enter to send; /quit or Ctrl-D to leave."""
    configure("warning")
    state = State.of(ctx)
    to, group = _resolve(state, who)
    peer = to[0]
    with Messenger(state.home, broker=broker, keyserver=keyserver) as m:
        conn = m.connection()
        pending = conn.welcome.pending if conn.welcome is not None else 0
        console.rule(f"{m.name_of(peer)}  [dim]{peer}[/]")
        for s in m.store.history(history, peer):
            console.print(_render_shown(m, s))
        poller = zmq.Poller()
        poller.register(conn.sock, zmq.POLLIN)
        poller.register(sys.stdin, zmq.POLLIN)
        stdin_open = True
        received = 0
        last_ping = time.monotonic()
        while stdin_open or received < pending:
            events = dict(poller.poll(1000))
            if conn.sock in events or conn.inbox:
                items = [x for x in conn.poll(0) if isinstance(x, Incoming)]
                if items:
                    for msg in m.process(items):
                        console.print(_render(msg))
                    conn.ack(m.ackable(items))
                    received += len(items)
            if stdin_open and sys.stdin.fileno() in events:
                line = sys.stdin.readline()
                if not line or line.strip() in ("/quit", "/exit", "/q"):
                    stdin_open = False
                    poller.unregister(sys.stdin)
                    continue
                text = line.rstrip("\n")
                if text.strip():
                    msg_id = m.send_text(to, text, group)
                    for s in m.store.history(1, peer):
                        if s.id == msg_id:
                            console.print(_render_shown(m, s))
            if time.monotonic() - last_ping > m.ping_s:
                conn.ping()
                last_ping = time.monotonic()
            if not stdin_open and received >= pending:
                break
        for r in m.refused:
            err_console.print(f"[red]✗[/] {t('已拒收', 'refused')} ({r.sender[:16]}): {r.reason}")
