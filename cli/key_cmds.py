"""`tits key publish|fetch` and `tits contact add|list|remove`: keys from our key server only.

The key server is the home's `keyserver` (set by `init --keyserver URL`), or `--keyserver URL`
per command. Nothing here ever uploads a key anywhere but that server.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tits.contacts import ContactError, Contacts, check_name
from tits.errors import ConfigError, IdentityError, KeyServerError
from tits.home import Home
from tits.i18n import _, pgettext
from tits.identity import normalise_fingerprint
from tits.keyclient import KeyClient

from .context import State
from .output import console, emit_json, err_console, safe

key_app = typer.Typer(help="Publish your key, fetch others' keys (ω IM key server).")
contact_app = typer.Typer(help="Your contacts: petnames for fingerprints.")

KeyserverOpt = Annotated[
    str | None,
    typer.Option("--keyserver", help="Key server URL for this command [the home's keyserver]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _client(home: Home, keyserver: str | None) -> KeyClient:
    url = keyserver or home.config.get("keyserver")
    if not url:
        raise ConfigError(
            _("no key server configured: pass --keyserver URL (or set it at `tits init`)")
        )
    return KeyClient(str(url))


@key_app.command("publish")
def publish(ctx: typer.Context, keyserver: KeyserverOpt = None, as_json: JsonOpt = False) -> None:
    """Publish your identity key and this device's certificate to the key server."""
    home = State.of(ctx).home
    fp = home.fingerprint
    kc = _client(home, keyserver)
    key = kc.publish_key(home.identity.export_public(fp))
    cert, cert_bytes, sig = home.certificate
    dev = kc.publish_device(cert_bytes, sig, home.device.prove(cert_bytes))  # see tits.device
    if as_json:
        emit_json(
            {
                "fingerprint": fp,
                "key": key.get("status"),
                "device": cert.device,
                "device_revoked": bool(dev.get("revoked")),
                "keyserver": kc.base_url,
            }
        )
        return
    status = str(key.get("status", ""))
    console.print(
        f"[bold green]✓[/] {_('key published')}: [bold]{fp}[/] ({escape(status)})"
        f" → {escape(kc.base_url)}",
        soft_wrap=True,
    )
    console.print(
        f"[bold green]✓[/] {_('device certificate published')}: {cert.name} ({cert.device})"
    )
    if dev.get("revoked"):
        console.print(f"[bold yellow]![/] {_('this device is revoked')}")


def _candidate_line(c: dict[str, Any]) -> str:
    uids = ", ".join(c.get("uids") or []) or "?"
    flags = " [revoked]" if c.get("revoked") else ""
    return safe(f"{c['fingerprint']}  {uids}{flags}")


def _choose(kc: KeyClient, who: str, as_json: bool) -> str:
    """The one fingerprint `who` (email or part of a name) names on the key server."""
    found = [c for c in kc.search(who) if not c.get("revoked")]
    if "@" in who:  # an email must match a user id's address exactly
        want = who.strip("<>").lower()
        found = [c for c in found if any(f"<{want}>" in u.lower() or u.lower() == want
                                         for u in c.get("uids", []))]  # fmt: skip
    if not found:
        raise KeyServerError(
            _("no key for {who!r} on {base_url}").format(who=who, base_url=kc.base_url),
            code="not-found",
        )
    if len(found) > 1:
        if as_json:
            emit_json({"error": "ambiguous", "query": who, "candidates": found})
        else:
            err_console.print(_("{who!r} matches several keys:").format(who=who))
            for c in found:
                err_console.print("  " + _candidate_line(c), markup=False, highlight=False)
        raise ContactError(
            _("{who!r} is ambiguous ({n_found} keys); fetch by fingerprint instead").format(
                who=who, n_found=len(found)
            ),
            code="ambiguous",
        )
    return str(found[0]["fingerprint"])


def _default_petname(who: str, email: str) -> str | None:
    candidates = []
    if "@" not in who and not re.fullmatch(r"(0[xX])?[0-9A-Fa-f\s]{16,}", who.strip()):
        candidates.append(who.strip().lstrip("@"))
    if email:
        candidates.append(email.split("@", 1)[0])
    for c in candidates:
        try:
            return check_name(c)
        except ContactError:
            continue
    return None


@key_app.command("fetch")
def fetch(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="Fingerprint, email, @name or part of a name.")],
    name: Annotated[
        str | None, typer.Option("--as", help="Petname to save it under [from the email].")
    ] = None,
    keyserver: KeyserverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a key from the key server, import it and add it to your contacts."""
    home = State.of(ctx).home
    kc = _client(home, keyserver)
    contacts = Contacts(home.path)
    try:
        fp = normalise_fingerprint(who)
    except IdentityError:
        fp = None
    if fp is None and who.startswith("@"):
        try:
            fp = contacts.resolve(who)  # a contact we already have: refresh its key
        except ContactError:
            fp = None
    if fp is None:
        fp = _choose(kc, who.removeprefix("@"), as_json)
    armored = kc.get_key(fp)  # checked to hold exactly this key
    home.identity.import_public(armored)
    info = home.identity.key_info(fp)
    key_name, email = (info.name, info.email) if info else ("", "")
    petname = None
    known = contacts.names_for(fp)
    note = ""
    if known:
        petname = known[0]
    else:
        wanted = check_name(name) if name else _default_petname(who, email)
        if wanted:
            try:
                petname = contacts.add(wanted, fp)
            except ContactError as exc:
                note = exc.message
    if as_json:
        emit_json(
            {"fingerprint": fp, "name": key_name, "email": email, "contact": petname,
             "note": note or None}
        )  # fmt: skip
        return
    console.print(
        f"[bold green]✓[/] {_('imported')} [bold]{escape(safe(key_name))}[/] "
        f"<{escape(safe(email))}>  {fp}",
        soft_wrap=True,
    )
    if petname:
        console.print(f"  {_('contact')}: @{petname}")
    if note:
        console.print(f"[bold yellow]![/] {escape(safe(note))}", soft_wrap=True)


@contact_app.command("add")
def contact_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Petname, e.g. alice (use it as @alice).")],
    fingerprint: Annotated[str, typer.Argument(help="The 40-hex fingerprint it names.")],
) -> None:
    """Name a fingerprint."""
    home = State.of(ctx).home
    stored = Contacts(home.path).add(name, fingerprint)
    fp = normalise_fingerprint(fingerprint)
    console.print(f"[bold green]✓[/] @{escape(stored)} → {fp}")
    if not home.identity.has_key(fp):
        console.print(
            _("  [yellow]that key is not in your keyring yet; run `tits key fetch {fp}`[/]").format(
                fp=fp
            )
        )


@contact_app.command("remove")
def contact_remove(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Petname to forget.")]
) -> None:
    """Forget a petname (the key stays in your keyring)."""
    fp = Contacts(State.of(ctx).home.path).remove(name)
    console.print(
        f"[bold green]✓[/] {pgettext('cli.key_cmds', 'removed')} @{escape(name.lstrip('@'))} ({fp})"
    )


@contact_app.command("list")
def contact_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List your contacts."""
    from tits.client.store import LocalStore

    home = State.of(ctx).home
    rows: list[dict[str, Any]] = []
    store = LocalStore(home.path) if home.initialised else None
    for pet, fp in Contacts(home.path).list():
        info = home.identity.key_info(fp) if (home.path / "gnupg").exists() else None
        seen = store.confirmation(fp) if store is not None else None
        changed = seen is not None and info is not None and seen != home.identity.subkeys(fp)
        rows.append(
            {
                "name": pet,
                "fingerprint": fp,
                "uid_name": info.name if info else None,
                "email": info.email if info else None,
                "have_key": info is not None,
                "confirmed": seen is not None and not changed,
                "key_changed": changed,
            }
        )
    if store is not None:
        store.close()
    if as_json:
        emit_json({"contacts": rows})
        return
    if not rows:
        console.print(_("no contacts yet."))
        return
    table = Table(box=None, pad_edge=False)
    table.add_column(_("name"))
    table.add_column(_("fingerprint"))
    table.add_column(_("key"))
    for r in rows:
        uid = f"{r['uid_name']} <{r['email']}>" if r["have_key"] else _("(not imported)")
        if r["key_changed"]:
            uid += _("  ⚠ key changed")
        elif r["confirmed"]:
            uid += _("  ✓ confirmed")
        table.add_row(Text("@" + r["name"]), r["fingerprint"], Text(safe(uid)))
    console.print(table)


def _grouped(fp: str) -> str:
    """A fingerprint in groups of four, for reading aloud and comparing."""
    return " ".join(fp[i : i + 4] for i in range(0, len(fp), 4))


@contact_app.command("confirm")
def contact_confirm(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="@name or fingerprint you compared in person.")],
    yes: Annotated[bool, typer.Option("--yes", help="You already compared it; don't ask.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mark a fingerprint as confirmed, after comparing it with its owner (in person or on a
    call). Secure groups take confirmed people only; if their key changes later, secure groups
    stop sending to them until you confirm again."""
    from tits.client.store import LocalStore

    home = State.of(ctx).home
    home.require()
    fp = Contacts(home.path).resolve(who)
    if not home.identity.has_key(fp):
        raise ConfigError(_("no key for {fp} yet: `tits key fetch {fp}`").format(fp=fp))
    if not yes and not as_json:
        console.print(f"{_('fingerprint')}: [bold]{_grouped(fp)}[/]")
        if not typer.confirm(_("Is it the same as theirs?"), default=False):
            raise typer.Exit(1)
    store = LocalStore(home.path)
    try:
        store.confirm(fp, home.identity.subkeys(fp))
    finally:
        store.close()
    if as_json:
        emit_json({"confirmed": fp})
    else:
        console.print(f"[bold green]✓[/] {_('confirmed')} {_grouped(fp)}")
