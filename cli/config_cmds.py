"""`tits config get|set|list`: the home's settings a person may change, each checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.text import Text

from tits.errors import ConfigError
from tits.i18n import N_, _

from .context import State
from .output import console, emit_json, safe

config_app = typer.Typer(help="Your settings: receipts, listed, lang, theme, roc_year, …")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "on", "yes", "1"):
        return True
    if low in ("false", "off", "no", "0"):
        return False
    raise ValueError(_("true or false"))


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in allowed:
            raise ValueError(" | ".join(allowed))
        return text

    return check


def _broker(text: str) -> str:
    from tits.client.connection import BrokerURL

    return str(BrokerURL.parse(text))


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError("http://HOST:PORT")
    return text


def _period(text: str) -> int:
    from tits.client.keyring import ROTATE_S_RANGE

    raw = text.strip().lower()
    size = {"m": 60, "h": 3600, "d": 86400}.get(raw[-1:], 0)
    number = raw[:-1]
    lo, hi = ROTATE_S_RANGE
    if not size or not number.isdigit() or len(number) > 6 or not lo <= int(number) * size <= hi:
        raise ValueError(_("a period such as 30m, 12h or 7d, from 10m to 30d"))
    return int(number) * size


def _count(text: str) -> int:
    from tits.client.keyring import ROTATE_MESSAGES_RANGE

    lo, hi = ROTATE_MESSAGES_RANGE
    raw = text.strip()
    if not raw.isdigit() or len(raw) > 6 or not lo <= int(raw) <= hi:
        raise ValueError(_("a whole number from {lo} to {hi}").format(lo=lo, hi=hi))
    return int(raw)


# key → (parse, what it means: English, translated where it is shown)
SETTINGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "receipts": (_bool, N_("send read receipts (when off, you see no one's either)")),
    "listed": (_bool, N_("show your name on status pages")),
    "lang": (_choice("zh-TW", "en"), N_("language of the interface")),
    "theme": (_choice("light", "dark", "contrast"), N_("theme of the app")),
    "roc_year": (_bool, N_("dates in ROC (Minguo) years")),
    "broker": (_broker, N_("the broker to use")),
    "keyserver": (_url, N_("the key server")),
    "rotate_after": (_period, N_("secure chats: a new key after this long (default 1d)")),
    "rotate_messages": (
        _count,
        N_("secure chats: a new key after sending this many (default 100)"),
    ),
}


def _key(key: str) -> str:
    if key not in SETTINGS:
        raise ConfigError(_("no such setting: ") + f"{key!r} ({', '.join(SETTINGS)})")
    return key


@config_app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The setting.")],
    value: Annotated[str, typer.Argument(help="Its new value.")],
) -> None:
    """Change a setting."""
    home = State.of(ctx).home
    home.require()
    parse = SETTINGS[_key(key)][0]
    try:
        parsed = parse(value)
    except (ValueError, ConfigError) as exc:
        why = exc.message if isinstance(exc, ConfigError) else str(exc)
        raise ConfigError(_("bad value for {key}: {why}").format(key=key, why=why)) from None
    home.save_config(**{key: parsed})
    console.print(Text.assemble(("✓ ", "green"), f"{key} = ", safe(str(parsed))))


@config_app.command("get")
def get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The setting.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one setting."""
    value = State.of(ctx).home.config.get(_key(key))
    if as_json:
        emit_json({key: value})
    else:
        console.print(safe(str(value)) if value is not None else "")


@config_app.command("list")
def list_(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Every setting, with what it means."""
    cfg = State.of(ctx).home.config
    rows = {k: cfg.get(k) for k in SETTINGS}
    if as_json:
        emit_json(rows)
        return
    for k, (_unused, what) in SETTINGS.items():
        shown = "" if rows[k] is None else safe(str(rows[k]))
        console.print(Text.assemble((f"{k:<10}", "bold"), f" {shown:<12} ", (_(what), "dim")))
