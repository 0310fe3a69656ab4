"""The interface's language: gettext catalogs, zh-TW first, English the other choice.

Every string a person reads is written in English in the code, inside `_()`, and translated
through `tits/locale/<lang>/LC_MESSAGES/tits.po` (the sources, kept in git; `scripts/i18n`
extracts and updates them). A built package carries the compiled `.mo` (setup.py's build hook);
an editable install has none and compiles the `.po` in memory on first use, so an edited
translation shows at once.

The language is looked up on every call, not at import: `tits config set lang` is read after
the modules are imported, and a test may switch `TITS_LANG` between two calls.
"""

from __future__ import annotations

import argparse
import gettext
import io
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import pofile

DOMAIN = "tits"
LOCALE_DIR = Path(__file__).with_name("locale")
ZH_TW = "zh-TW"
EN = "en"
LANGS = (ZH_TW, EN)

_chosen: str | None = None  # `tits config set lang`, read from the home by the CLI
_roc_year = False  # `tits config set roc_year true`: 民國 years in zh-TW dates
ROC_OFFSET = 1911  # 民國 1 is 1912


def choose_lang(lang: str | None) -> None:
    global _chosen
    _chosen = lang


def choose_roc_year(on: bool) -> None:
    global _roc_year
    _roc_year = on


def year(y: int) -> str:
    """A year as the reader counts it: 民國 115 for 2026 when zh-TW and `roc_year` is on
    (years before 民國 1 stay Western), else 2026."""
    if _roc_year and zh() and y > ROC_OFFSET:
        return f"民國{y - ROC_OFFSET}"
    return str(y)


def normalize(lang: str | None) -> str:
    """A locale or language tag as gettext names them (`zh_TW.UTF-8`, `zh-Hant`, `en_US`, `C`)
    → "zh-TW" or "en": zh_* is zh-TW, C/POSIX or none is zh-TW (our first language), any
    other is English."""
    low = (lang or "").strip().lower()
    if not low or low in ("c", "posix") or low.startswith(("c.", "posix.")):
        return ZH_TW
    return ZH_TW if low.startswith("zh") else EN


def current() -> str:
    """`TITS_LANG`, then the home's `lang` setting, then the locale as gettext reads it
    (LANGUAGE, LC_ALL, LC_MESSAGES, LANG)."""
    lang = os.environ.get("TITS_LANG") or _chosen
    if not lang:
        for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
            if os.environ.get(var):
                lang = os.environ[var].split(":")[0]
                break
    return normalize(lang)


def zh() -> bool:
    return current() == ZH_TW


def _folder(lang: str) -> str:
    return lang.replace("-", "_")


@lru_cache(maxsize=None)
def _load(lang: str, stamp: tuple[float, float]) -> gettext.NullTranslations:
    base = LOCALE_DIR / _folder(lang) / "LC_MESSAGES"
    po, mo = base / f"{DOMAIN}.po", base / f"{DOMAIN}.mo"
    po_time, mo_time = stamp
    if mo_time and mo_time >= po_time:
        data = mo.read_bytes()
    elif po_time:
        data = pofile.compile_po(po.read_text(encoding="utf-8"))
    else:
        return gettext.NullTranslations()
    return gettext.GNUTranslations(io.BytesIO(data))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=None)
def _stamp(lang: str) -> tuple[float, float]:
    """When the catalog files were changed, read once a process (a `.po` edited while a
    process runs shows in the next one)."""
    base = LOCALE_DIR / _folder(lang) / "LC_MESSAGES"
    return _mtime(base / f"{DOMAIN}.po"), _mtime(base / f"{DOMAIN}.mo")


def catalog(lang: str) -> gettext.NullTranslations:
    """The translations into `lang`; English is the msgids themselves."""
    if lang == EN:
        return _ENGLISH
    return _load(lang, _stamp(lang))


_ENGLISH = gettext.NullTranslations()


def _(message: str) -> str:
    """`message` (English) in the interface's language."""
    return catalog(current()).gettext(message)


def pgettext(context: str, message: str) -> str:
    """`_()` for an English text that two places translate differently."""
    return catalog(current()).pgettext(context, message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return catalog(current()).ngettext(singular, plural, n)


def N_(message: str) -> str:  # noqa: N802 — gettext's name for "extract, translate later"
    """Marks a text for the catalog where it is defined; `_()` translates it where it is shown."""
    return message


def NC_(context: str, message: str) -> str:  # noqa: N802 — as N_, with a context
    """Marks a text for the catalog under `context` (e.g. "error", for `error_text`)."""
    return message


def translator(lang: str) -> gettext.NullTranslations:
    """A fixed language's catalog, for output whose reader is not this process's user (the
    broker's status page answers each browser in its own language)."""
    return catalog(normalize(lang) if lang not in LANGS else lang)


ERROR_CONTEXT = "error"  # the catalog's context for the texts of raised errors
_FIELD = re.compile(r"\{\{|\}\}|\{(\w+)(![rsa])?(:[^{}]*)?\}")


@lru_cache(maxsize=None)
def _error_patterns(lang: str, stamp: tuple[float, float]) -> list[tuple[re.Pattern[str], str]]:
    """The error texts with fields, as patterns that match a shown message, longest literal
    text first (the most specific template wins)."""
    cat = catalog(lang)
    entries = getattr(cat, "_catalog", {})
    out: list[tuple[int, re.Pattern[str], str]] = []
    prefix = ERROR_CONTEXT + "\x04"
    for key, msgstr in entries.items():
        if not isinstance(key, str) or not key.startswith(prefix) or not msgstr:
            continue
        msgid = key[len(prefix) :]
        parts, literal, seen, pos = [], 0, set(), 0
        for m in _FIELD.finditer(msgid):
            text = msgid[pos : m.start()]
            parts.append(re.escape(text))
            literal += len(text)
            if m.group(1) is None:  # an escaped brace
                parts.append(re.escape(m.group(0)[0]))
                literal += 1
            elif m.group(1) in seen:
                parts.append(f"(?P={m.group(1)})")
            else:
                seen.add(m.group(1))
                parts.append(f"(?P<{m.group(1)}>.+?)")
            pos = m.end()
        if not seen:
            continue  # a fixed text: found by pgettext itself
        parts.append(re.escape(msgid[pos:]))
        out.append((literal + len(msgid[pos:]), re.compile("".join(parts), re.S), msgstr))
    return [(p, s) for _n, p, s in sorted(out, key=lambda x: -x[0])]


def error_text(message: str) -> str:
    """An error's English text (as raised, fields already filled in) in the interface's
    language: the catalog holds each `raise …Error(f"…")` as a template (context "error"),
    matched here against the message, its fields carried over as they were shown. Errors are
    raised in English everywhere (brokers log them, some travel as reasons); they are
    translated only here, where a person reads them."""
    lang = current()
    if lang == EN:
        return message
    cat = catalog(lang)
    exact = cat.pgettext(ERROR_CONTEXT, message)
    if exact != message:
        return exact
    for pattern, msgstr in _error_patterns(lang, _stamp(lang)):
        m = pattern.fullmatch(message)
        if m is not None:
            found = m.groupdict()

            def fill(f: re.Match[str], found: dict[str, str] = found) -> str:
                if f.group(1) is None:
                    return f.group(0)[0]
                if f.group(1) == "message":  # an error quoting another: "Invalid value …: …"
                    return error_text(found["message"])
                return found.get(f.group(1), f.group(0))

            return _FIELD.sub(fill, msgstr)
    return message


ARGPARSE_WORDS = (
    N_("usage: "),
    N_("options"),
    N_("positional arguments"),
    N_("show this help message and exit"),
)


def translate_argparse(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The daemons' `--help` (titsd, tits-keyd) in the interface's language: their help
    texts are English in the code and in the catalog, like the client's."""
    for action in parser._actions:
        if action.help and action.help != argparse.SUPPRESS:
            action.help = _(action.help)
    if parser.description:
        parser.description = _(parser.description)
    parser._positionals.title = _("positional arguments")
    parser._optionals.title = _("options")
    base = parser.formatter_class

    def formatter(prog: str) -> argparse.HelpFormatter:
        class Translated(base):  # type: ignore[valid-type, misc]
            def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: Any = None) -> None:
                super().add_usage(
                    usage, actions, groups, _("usage: ") if prefix is None else prefix
                )

        return Translated(prog)

    parser.formatter_class = formatter  # type: ignore[assignment]
    return parser
