"""The `tits` command: Typer app, global options, and one readable line for every error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tits.app.cli import app_cmd
from tits.errors import TitsError
from tits.i18n import choose_roc_year, error_text

from . import (
    chat_cmds,
    cloud_cmds,
    config_cmds,
    friend_cmds,
    group_cmds,
    helptext,
    identity_cmds,
    key_cmds,
    logs_cmds,
    media_cmds,
    prefs_cmds,
    react_cmds,
    sticker_cmds,
)
from .context import State
from .device_cmds import device_app
from .output import choose_lang, fail

helptext.install()

app = typer.Typer(
    name="tits",
    help="ω IM — TiTs isn't Telegram, sorry. Your GnuPG key is who you are.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="Home directory [$TITS_HOME, then ~/.tits].", show_default=False
        ),
    ] = None,
) -> None:
    state = ctx.obj = State(home_arg=home)
    try:
        lang, roc = state.home.config.get("lang"), state.home.config.get("roc_year")
    except TitsError:
        lang = roc = None  # an unreadable config is reported by the command that needs it
    choose_lang(lang if isinstance(lang, str) else None)
    choose_roc_year(roc is True)
    if ctx.invoked_subcommand is None:  # `tits` alone: the app on a terminal, else the help
        if sys.stdin.isatty() and sys.stdout.isatty():
            app_cmd(ctx, offline=False, broker=None)
            raise typer.Exit()
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


app.command()(identity_cmds.init)
app.command()(identity_cmds.whoami)
app.add_typer(key_cmds.key_app, name="key")
app.add_typer(key_cmds.contact_app, name="contact")
app.add_typer(friend_cmds.friend_app, name="friend")
app.command()(chat_cmds.send)
app.command()(chat_cmds.recv)
app.add_typer(cloud_cmds.cloud_app, name="cloud")
app.add_typer(group_cmds.group_app, name="group")
app.command()(chat_cmds.chat)
app.command()(chat_cmds.outbox)
app.command()(chat_cmds.unsend)
app.command()(react_cmds.react)
app.command()(react_cmds.announce)
app.command()(prefs_cmds.pin)
app.command()(prefs_cmds.unpin)
app.command()(prefs_cmds.mute)
app.command()(prefs_cmds.unmute)
app.command()(logs_cmds.logs)
app.add_typer(config_cmds.config_app, name="config")
app.add_typer(device_app, name="device")
app.add_typer(media_cmds.media_app, name="media")
app.add_typer(sticker_cmds.sticker_app, name="sticker")
app.command("app")(app_cmd)


def main() -> None:
    try:
        app()
    except TitsError as exc:
        fail(error_text(exc.message))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
