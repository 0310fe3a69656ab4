"""`tits friend`: 加好友 the LINE way — show your QR code and ID, add someone from theirs.

Adding fetches their key from the key server the code names (or yours), shows the name in the
key (marked: a key can claim any name), the fingerprint grouped for reading aloud, and whether
you have met this key before, then asks."""

from __future__ import annotations

import io
from typing import Annotated

import typer
from rich.text import Text

from tits import friendcode
from tits.client.store import LocalStore
from tits.contacts import ContactError, Contacts, check_name
from tits.i18n import _
from tits.keyclient import KeyClient

from .context import State
from .key_cmds import KeyserverOpt, _client, _default_petname, _grouped
from .output import console, emit_json, safe

friend_app = typer.Typer(
    help="Add friends the LINE way: your QR code and ID, and theirs.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@friend_app.command("me")
def me(
    ctx: typer.Context,
    qr: Annotated[bool, typer.Option("--qr/--no-qr", help="Draw the QR code.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Show your QR code and ID for a friend to add you."""
    home = State.of(ctx).home
    home.require()
    ks = home.config.get("keyserver")
    code = friendcode.make(home.fingerprint, str(ks) if ks else None)
    if as_json:
        emit_json({"fingerprint": home.fingerprint, "code": code, "keyserver": ks})
        return
    if qr:
        import segno

        out = io.StringIO()
        segno.make(code, error="m").terminal(out=out, compact=True, border=2)
        console.print(Text(out.getvalue()), end="")
    console.print(Text.assemble(_("My ID: "), (_grouped(home.fingerprint), "bold")))
    console.print(
        Text(_("A friend can type: tits friend add {code}").format(code=code), style="dim")
    )


@friend_app.command("add")
def add(
    ctx: typer.Context,
    who: Annotated[
        str, typer.Argument(help="Their friend code (from the QR) or their ID.", metavar="CODE")
    ],
    name: Annotated[
        str | None, typer.Option("--as", help="The name to keep them under.", metavar="NAME")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Add without asking.")] = False,
    keyserver: KeyserverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a friend from their code or ID: fetch their key, show who it claims to be, ask."""
    home = State.of(ctx).home
    home.require()
    fp, code_ks = friendcode.read(who)
    if fp == home.fingerprint:
        raise ContactError(_("that is your own ID"))
    kc = KeyClient(code_ks) if code_ks and not keyserver else _client(home, keyserver)
    home.identity.import_public(kc.get_key(fp))  # checked to hold exactly this key
    info = home.identity.key_info(fp)
    key_name, email = (info.name, info.email) if info else ("", "")
    contacts = Contacts(home.path)
    known = contacts.names_for(fp)
    store = LocalStore(home.path)
    try:
        confirmed = store.confirmation(fp) is not None
    finally:
        store.close()
    if not as_json:
        claimed = Text.assemble(
            _("Name in the key: "),
            (f"~{safe(key_name)}", "bold"),
            f" <{safe(email)}>",
        )
        console.print(claimed)
        console.print(Text.assemble(_("ID: "), (_grouped(fp), "bold")))
        if known:
            seen = _("met before: @{known}").format(known=known[0])
            if confirmed:
                seen += _(" (fingerprint confirmed)")
            console.print(Text(seen, style="green"))
        else:
            console.print(Text(_("a key you have not met before"), style="yellow"))
    if known:
        petname = known[0]
    else:
        wanted = check_name(name) if name else _default_petname(key_name.split(" ")[0], email)
        if not wanted:
            raise ContactError(_("give a name with --as NAME"))
        if not yes and not as_json:
            if not typer.confirm(_("Add @{wanted} as a friend?").format(wanted=wanted)):
                raise typer.Exit(1)
        petname = contacts.add(wanted, fp)
    if as_json:
        emit_json({"fingerprint": fp, "name": key_name, "email": email, "contact": petname,
                   "met_before": bool(known), "confirmed": confirmed})  # fmt: skip
    else:
        console.print(
            Text.assemble(("✓ ", "green"), _("friend added: @{petname}").format(petname=petname))
        )
