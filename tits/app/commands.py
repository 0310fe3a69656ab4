"""Slash commands typed in the input line: parsed here (pure), run by the conversation screen.

/help              the keys and commands
/theme light|dark|contrast
/invite @x [@y…]   (a group: through client.group_change)
/leave             (a group)
/pin, /mute        toggle 置頂 / 靜音 for this chat
/announce [text]   put up the chat's 公告 (no text: take it down)
/react NAME        react to the newest message from someone else (like, love, haha, …)
/lifetime 10m|off  texts typed after it vanish that long after they are shown
/reply text        answer the newest message from someone else, quoting it
/unsend            take back your newest message (收回, within 24 hours)
/sticker [(code)]  the sticker picker (packs as tabs), or send that sticker at once
/file PATH         send a file (a picture shows as a preview)
/quit
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tits.client.controls import lifetime_seconds
from tits.client.model import REACTIONS
from tits.i18n import _

from .settings import THEMES

COMMANDS = (
    "help", "theme", "invite", "leave", "pin", "mute", "announce", "react", "lifetime", "reply",
    "unsend", "sticker", "file", "quit",
)  # fmt: skip


@dataclass
class Command:
    name: str
    args: list[str] = field(default_factory=list)


class CommandError(ValueError):
    """A command typed wrong: the message says what to type instead."""


def is_command(line: str) -> bool:
    """A line starting with one "/" is a command; "//text" sends "/text"."""
    return line.startswith("/") and not line.startswith("//")


def unescape(line: str) -> str:
    return line[1:] if line.startswith("//") else line


def parse(line: str) -> Command:
    parts = line[1:].split()
    if not parts:
        raise CommandError(_("type a command, for example /help"))
    name, args = parts[0].lower(), parts[1:]
    if name not in COMMANDS:
        raise CommandError(_("no command /{name}: type /help").format(name=name))
    if name == "theme" and (len(args) != 1 or args[0] not in THEMES):
        raise CommandError(_("usage: /theme light|dark|contrast"))
    if name == "invite" and not args:
        raise CommandError(_("usage: /invite @name"))
    if name in ("leave", "quit", "help", "pin", "mute", "unsend") and args:
        raise CommandError(_("/{name} takes no arguments").format(name=name))
    if name == "announce":  # the text as typed, spaces kept
        return Command(name, [line[1:].split(None, 1)[1]] if len(parts) > 1 else [])
    if name == "file":
        if len(parts) < 2:
            raise CommandError(_("usage: /file PATH"))
        return Command(name, [line[1:].split(None, 1)[1].strip()])
    if name == "sticker" and len(args) > 1:
        raise CommandError(_("usage: /sticker or /sticker (code)"))
    if name == "reply":
        if len(parts) < 2:
            raise CommandError(_("usage: /reply your answer"))
        return Command(name, [line[1:].split(None, 1)[1]])
    if name == "react" and (len(args) != 1 or args[0].lower() not in REACTIONS):
        raise CommandError(_("usage: /react {join}").format(join="|".join(REACTIONS)))
    if name == "lifetime":
        if len(args) != 1 or (args[0] != "off" and lifetime_seconds(args[0]) is None):
            raise CommandError(_("usage: /lifetime 30s|10m|2h|1d|off"))
    return Command(name, [a.lower() for a in args] if name == "react" else args)


def complete(prefix: str) -> str | None:
    """The one command a typed "/an" can only be (None: none, or several)."""
    if not prefix.startswith("/") or " " in prefix:
        return None
    hits = [c for c in COMMANDS if c.startswith(prefix[1:].lower())]
    return "/" + hits[0] if len(hits) == 1 and hits[0] != prefix[1:] else None
