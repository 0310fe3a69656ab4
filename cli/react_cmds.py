"""`tits react` and `tits announce`: the LINE gestures that are not texts — a reaction to a
message, and the 公告 pinned at the top of a chat. Both are signed, sealed messages of the
conversation, like texts."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from tits.client.blocking import Messenger
from tits.client.model import REACTIONS
from tits.errors import ConfigError
from tits.i18n import _
from tits.log import configure

from .chat_cmds import BrokerOpt, JsonOpt, KeyserverOpt, _msg_id, _target, _text_arg
from .context import State
from .output import console, emit_json, safe

TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")]


def react(
    ctx: typer.Context,
    msg_id: Annotated[
        str, typer.Argument(help="The message (32 hex digits, recv --json shows it).")
    ],
    reaction: Annotated[
        str | None,
        # a literal, for the catalog: the names are checked against REACTIONS below
        typer.Argument(help="One of: like, love, haha, wow, sad, thanks.", metavar="REACTION"),
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Take your reaction back.")] = False,
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """React to a message (👍 ❤️ 😆 😮 😢 🙏); everyone in the chat sees who reacted."""
    configure("warning")
    raw = _msg_id(msg_id)
    if remove == (reaction is not None):
        raise ConfigError(
            _("give a reaction ({join}) or --remove").format(join=", ".join(REACTIONS))
        )
    name = (reaction or "").lower()
    if name and name not in REACTIONS:
        raise ConfigError(
            _("no reaction {name!r}: one of {join}").format(
                name=safe(name), join=", ".join(REACTIONS)
            )  # fmt: skip
        )
    with Messenger(State.of(ctx).home, broker=broker, keyserver=keyserver) as m:
        m.react(raw, name, timeout)
    mark = REACTIONS.get(name, "")
    console.print(
        Text.assemble(
            ("✓ ", "green"),
            _("reacted {mark}").format(mark=mark) if mark else _("reaction taken back"),
        )  # fmt: skip
    )


def announce(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="#group, @name or fingerprint: the chat.")],
    text: Annotated[
        str | None, typer.Argument(help="The announcement (none: show the current one).")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Take the announcement down.")] = False,
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Put up an announcement at the top of a chat for all its members (or show it, or
    --clear it)."""
    configure("warning")
    if clear and text:
        raise ConfigError(_("--clear takes no text"))
    with Messenger(State.of(ctx).home, broker=broker, keyserver=keyserver) as m:
        target = _target(m, who)
        if text is None and not clear:
            ann = m.store.extras.announcement(m.client.conversation(target))
            if as_json:
                emit_json(ann.to_json(m.name_of(ann.by)) if ann else {"kind": "announcement",
                          "text": None})  # fmt: skip
            elif ann is None:
                console.print(_("this chat has no announcement"))
            else:
                console.print(
                    Text.assemble(("📢 ", "bold"), safe(m.name_of(ann.by)), ": ", safe(ann.text))
                )
            return
        m.announce(target, "" if clear else _text_arg(text or ""), timeout)
    if as_json:
        emit_json({"kind": "announcement", "to": target, "text": None if clear else text})
    else:
        console.print(
            Text.assemble(
                ("✓ ", "green"),
                _("announcement taken down") if clear else _("announcement posted"),
            )  # fmt: skip
        )


assert list(REACTIONS) == ["like", "love", "haha", "wow", "sad", "thanks"], "react's help"
