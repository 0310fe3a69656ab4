"""`tits app` (and `tits` alone on a terminal): the command that opens the full-screen app."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from tits.cli.context import State


def app_cmd(
    ctx: typer.Context,
    offline: Annotated[
        bool, typer.Option("--offline", help="Open without connecting (history only).")
    ] = False,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker", help="Broker URL (default: the one in your config).", metavar="URL"
        ),
    ] = None,
) -> None:
    """The full-screen app (also `tits` alone on a terminal)."""
    from .app import run

    state = State.of(ctx)
    state.home.require()
    code = run(state.home.path, offline=offline, broker=broker)
    # the store is closed and the log flushed by now; a key lookup of the client's still
    # waiting for the network (a worker thread, joined at interpreter exit) must not hold
    # the terminal after Ctrl+Q
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
