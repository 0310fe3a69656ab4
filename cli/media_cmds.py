"""`tits media get`, and the progress bars the media commands share (on stderr, hidden with
--json): an upload, a download, the hashing of a big file before it goes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from tits.client.blocking import Messenger
from tits.client.model import Message
from tits.errors import ConfigError, MediaError
from tits.i18n import _
from tits.log import configure
from tits.media.stickers import Shelf

from .context import State
from .output import console, emit_json, err_console, safe

media_app = typer.Typer(
    help="Pictures and files: fetch what a message names.", no_args_is_help=True
)

Callback = Callable[[int, int], None]


@contextmanager
def bar(label: str, hidden: bool) -> Iterator[Callback]:
    """A Rich progress bar on stderr; `hidden` (--json, or no terminal): nothing drawn."""
    if hidden or not err_console.is_terminal:
        yield lambda _done, _total: None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=err_console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(safe(label)[:40], total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def fetch_shown(m: Messenger, msg: Message, hidden: bool) -> str | None:
    """Fetch a media message's file for `recv`; the reason when it could not be."""
    info = msg.media()
    if info is None or msg.file:
        return None
    try:
        with bar(_("fetching {name}").format(name=info["name"]), hidden) as cb:
            m.fetch(msg, progress=cb, timeout=600.0)
    except MediaError as exc:
        return exc.message
    return None


def render_media(msg: Message, home: Path | None = None) -> Text:
    info = msg.media()
    if info is None:
        return Text(f"[{msg.mime}] {msg.file or ''}")
    if info["sticker"] and home is not None:
        try:
            found = Shelf(home).find(str(info["sticker"]))
            if found.sticker.sha256 == info["sha256"]:
                return Text.assemble(safe(found.sticker.text), (f"  {found.sticker.code}", "dim"))
        except MediaError:
            pass  # a pack we do not have: shown as the file it is
    size = _size(int(info["size"]))
    out = Text.assemble(
        ("[", "dim"), safe(str(info["mime"])), ("] ", "dim"), safe(str(info["name"])),
        (f" ({size})", "dim"),
    )  # fmt: skip
    if msg.file:
        out.append(f"  {safe(msg.file)}", style="dim")
    else:
        out.append(f"  tits media get {info['sha256']}", style="dim")
    return out


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


@media_app.command("get")
def get(
    ctx: typer.Context,
    sha256: Annotated[str, typer.Argument(help="The file's SHA-256 (recv --json shows it).")],
    broker: Annotated[str | None, typer.Option("--broker", metavar="URL")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after seconds.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fetch a file a message named (each chunk checked against its signed manifest)."""
    configure("warning")
    state = State.of(ctx)
    want = sha256.strip().lower()
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise ConfigError(_("a SHA-256 is 64 hex digits"))
    with Messenger(state.home, broker=broker) as m:
        msg = next(
            (x for x in m.store.media_messages() if (x.media() or {}).get("sha256") == want), None
        )
        if msg is None:
            raise ConfigError(_("no message here names that file (tits recv first)"))
        with bar(str((msg.media() or {}).get("name", want[:12])), as_json) as cb:
            path = m.fetch(msg, progress=cb, timeout=timeout)
        if as_json:
            emit_json({"kind": "media", "id": msg.id.hex(), "media": msg.media()})
        else:
            console.print(Text.assemble(("✓ ", "green"), str(path)))
