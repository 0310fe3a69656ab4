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
from typer._click.formatting import HelpFormatter
from typer.core import TyperArgument, TyperOption

from tits.i18n import ERROR_CONTEXT, N_, NC_, _, error_text

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
# the type shown next to a parameter that takes a value
TYPE_LABELS = (N_("<str>"), N_("<path>"), N_("<float>"), N_("<int>"))
# Typer's (vendored Click's) usage errors, as templates for `error_text`
USAGE_ERRORS = [
    NC_("error", "Missing argument {name}."),
    NC_("error", "Missing option {name}."),
    NC_("error", "Missing parameter: {name}"),
    NC_("error", "Missing command."),
    NC_("error", "No such option: {name}"),
    NC_("error", "No such option: {name} (Possible options: {options})"),
    NC_("error", "No such command {name}."),
    NC_("error", "No such command {name}. Did you mean {suggestions}?"),
    NC_("error", "Input should be a valid number, unable to parse string as a number"),
    NC_("error", "Input should be a valid integer, unable to parse string as an integer"),
    NC_("error", "Input should be a valid boolean, unable to interpret input"),
    NC_("error", "Invalid value for {hint}: {message}"),
    NC_("error", "Invalid value: {message}"),
    NC_("error", "Got unexpected extra argument(s) ({args})"),
    NC_("error", "Got unexpected extra argument ({args})"),
    NC_("error", "{value} is not a valid {kind}."),
    NC_("error", "{value} is not one of {choices}."),
]
assert ERROR_CONTEXT == "error"
USAGE = N_("Usage: ")

_ORIGINAL = "_tits_help"  # the English texts of an object, kept for the next drawing


def _localize(obj: Any, attrs: tuple[str, ...], markup: bool) -> None:
    original: dict[str, str | None] = obj.__dict__.setdefault(
        _ORIGINAL, {a: getattr(obj, a, None) for a in attrs}
    )
    for attr, text in original.items():
        if text:
            shown = _(inspect.cleandoc(text))
            setattr(obj, attr, escape(shown) if markup else shown)


def _type_label(param: Any) -> Any:
    """`<str>` as `<文字>`: the class's own label, looked up in the catalog at each drawing."""
    label = type(param).display_type_rich

    def shown(ctx: Any) -> str | None:
        text = label(param, ctx)
        return _(text) if text else text

    return shown


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
        elif isinstance(param, (TyperOption, TyperArgument)):  # named by metavar too
            param.__dict__.setdefault("display_type_rich", _type_label(param))
    for name in getattr(obj, "commands", {}):
        sub = obj.get_command(ctx, name)
        if sub is not None:
            _localize(sub, ("help", "short_help"), markup)


_typer_format_help = rich_utils.rich_format_help


def _format_help(*, obj: Any, ctx: Any, markup_mode: Any) -> None:
    localize(obj, ctx, markup_mode)
    _typer_format_help(obj=obj, ctx=ctx, markup_mode=markup_mode)


_typer_format_error = rich_utils.rich_format_error


def _format_error(self: Any) -> None:
    for name, english in TYPER_WORDS.items():
        setattr(rich_utils, name, _(english))
    shown = self.format_message()
    self.format_message = lambda: error_text(shown)  # this one exception, drawn once
    _typer_format_error(self)


_write_usage = HelpFormatter.write_usage


def _usage(self: HelpFormatter, prog: str, args: str = "", prefix: str | None = None) -> None:
    _write_usage(self, prog, args, _(USAGE) if prefix is None else prefix)


def install() -> None:
    """Routes Typer's help drawing through `localize` (Typer looks `rich_format_help` up in
    its module at each drawing), and its usage line's "Usage: " through the catalog."""
    rich_utils.rich_format_help = _format_help  # type: ignore[assignment]
    rich_utils.rich_format_error = _format_error
    HelpFormatter.write_usage = _usage  # type: ignore[method-assign]
