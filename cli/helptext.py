"""`--help` in the interface's language, in one language.

The help texts are English in the code (`help=` and command docstrings, extracted into the
catalog by scripts/i18n-update) and translated here, when Typer draws the help: the language is
known only then (`tits config set lang` is read after the modules are imported). Also here:
Typer's own words (panel titles, `[default: …]`, `[required]`, the `--help` line), Rich markup
escaped so a `[$TITS_HOME, …]` in a help text is shown rather than eaten as a tag, and no
`<bool>` type next to a flag, which takes no value.
"""

from __future__ import annotations

import inspect
from typing import Any

from rich.markup import escape
from typer import rich_utils
from typer.core import TyperOption

from tits.i18n import N_, _

# Typer's words, by their names in typer.rich_utils (read from there at each drawing)
TYPER_WORDS = {
    "ARGUMENTS_PANEL_TITLE": N_("Arguments"),
    "OPTIONS_PANEL_TITLE": N_("Options"),
    "COMMANDS_PANEL_TITLE": N_("Commands"),
    "ERRORS_PANEL_TITLE": N_("Error"),
    "DEFAULT_STRING": N_("[default: {}]"),
    "REQUIRED_LONG_STRING": N_("[required]"),
    "ENVVAR_STRING": N_("[env var: {}]"),
    "DEPRECATED_STRING": N_("(deprecated) "),
    "ABORTED_TEXT": N_("Aborted."),
    "RICH_HELP": N_("Try [blue]'{command_path} {help_option}'[/] for help."),
}
HELP_OPTION = N_("Show this message and exit.")

_ORIGINAL = "_tits_help"  # the English texts of an object, kept for the next drawing


def _localize(obj: Any, attrs: tuple[str, ...], markup: bool) -> None:
    original: dict[str, str | None] = obj.__dict__.setdefault(
        _ORIGINAL, {a: getattr(obj, a, None) for a in attrs}
    )
    for attr, text in original.items():
        if text:
            shown = _(inspect.cleandoc(text))
            setattr(obj, attr, escape(shown) if markup else shown)


def localize(obj: Any, ctx: Any, markup_mode: Any) -> None:
    """Translates, in place, what the help of `obj` shows: its text, its parameters' and its
    subcommands' (the originals are kept, so the next drawing may be in another language)."""
    markup = markup_mode == rich_utils.MARKUP_MODE_RICH
    for name, english in TYPER_WORDS.items():
        setattr(rich_utils, name, _(english))
    _localize(obj, ("help", "short_help", "epilog"), markup)
    for param in obj.get_params(ctx):
        _localize(param, ("help",), markup)
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # not `<bool>`: a flag takes no value
    for name in getattr(obj, "commands", {}):
        sub = obj.get_command(ctx, name)
        if sub is not None:
            _localize(sub, ("help", "short_help"), markup)


_typer_format_help = rich_utils.rich_format_help


def _format_help(*, obj: Any, ctx: Any, markup_mode: Any) -> None:
    localize(obj, ctx, markup_mode)
    _typer_format_help(obj=obj, ctx=ctx, markup_mode=markup_mode)


def install() -> None:
    """Routes Typer's help drawing through `localize` (Typer looks `rich_format_help` up in
    its module at each drawing)."""
    rich_utils.rich_format_help = _format_help  # type: ignore[assignment]
