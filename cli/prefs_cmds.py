"""`tits pin` and `tits mute`: 置頂 and 靜音 for a chat, the app's /pin and /mute as commands.
Both are this device's own settings (HOME/app.toml, tits/app/settings.py), which the app's
chat list shows; nothing goes to a broker."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from tits.app.settings import Settings
from tits.client.blocking import Messenger
from tits.contacts import Contacts
from tits.errors import ConfigError
from tits.i18n import _
from tits.log import configure

from .chat_cmds import JsonOpt
from .context import State
from .output import console, emit_json, safe

ChatArg = Annotated[str, typer.Argument(help="#group, @name or fingerprint: the chat.")]


def _conversation(m: Messenger, who: str) -> tuple[str, bytes]:
    """The chat's target and conversation id; a chat this device does not know is refused."""
    target = m.client.resolve(who)  # (an unknown name or group: its own clear error)
    conv = m.client.conversation(target)
    known = (
        target.startswith("#")
        or target in dict(Contacts(m.home.path).list()).values()
        or bool(m.store.history(conv, limit=1))
    )
    if not known:
        raise ConfigError(
            _("no chat with {who} yet: send a message first, or add them as a contact").format(
                who=safe(who[:70])
            )
        )
    return target, conv


def _set(ctx: typer.Context, who: str, which: str, on: bool, as_json: bool) -> None:
    configure("warning")
    home = State.of(ctx).home
    with Messenger(home) as m:
        target, conv = _conversation(m, who)
        name = m.name_of(target) if not target.startswith("#") else who
    settings = Settings.load(home.path)
    changed = settings.set(which, conv, on)
    if as_json:
        emit_json({"kind": which, "chat": target, "conv": conv.hex(), which: on,
                   "changed": changed})  # fmt: skip
        return
    messages = {
        ("pinned", True): _("{name} is pinned to the top of the chat list"),
        ("pinned", False): _("{name} is no longer pinned"),
        ("muted", True): _("{name} is muted: no bell or notification for it"),
        ("muted", False): _("{name} is no longer muted"),
    }
    console.print(Text.assemble(("✓ ", "green"), messages[(which, on)].format(name=safe(name))))


def pin(
    ctx: typer.Context,
    who: ChatArg,
    off: Annotated[bool, typer.Option("--off", help="Unpin it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pin a chat to the top of the chat list, or unpin it with --off."""
    _set(ctx, who, "pinned", not off, as_json)


def unpin(ctx: typer.Context, who: ChatArg, as_json: JsonOpt = False) -> None:
    """Unpin a chat (the same as `tits pin --off`)."""
    _set(ctx, who, "pinned", False, as_json)


def mute(
    ctx: typer.Context,
    who: ChatArg,
    off: Annotated[bool, typer.Option("--off", help="Unmute it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mute a chat (no bell or notification for it), or unmute it with --off."""
    _set(ctx, who, "muted", not off, as_json)


def unmute(ctx: typer.Context, who: ChatArg, as_json: JsonOpt = False) -> None:
    """Unmute a chat (the same as `tits mute --off`)."""
    _set(ctx, who, "muted", False, as_json)
