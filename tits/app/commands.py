"""Slash commands typed in the input line: parsed here (pure), run by the conversation screen.

/help              the keys and commands
/theme light|dark|contrast
/invite @x [@y…]   (a group: through client.group_change)
/leave             (a group)
/pin, /mute        toggle 置頂 / 靜音 for this chat
/quit
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tits.i18n import _

from .settings import THEMES

COMMANDS = ("help", "theme", "invite", "leave", "pin", "mute", "quit")


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
    if name in ("leave", "quit", "help", "pin", "mute") and args:
        raise CommandError(_("/{name} takes no arguments").format(name=name))
    return Command(name, args)
