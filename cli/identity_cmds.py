"""`tits init` and `tits whoami`: the user's GnuPG identity and this device."""

from __future__ import annotations

import base64
import socket
from typing import Annotated

import typer
from rich.markup import escape

from tits.i18n import _

from .context import State
from .output import console, emit_json, safe


def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Your display name (in your GnuPG key).")],
    email: Annotated[str, typer.Option("--email", help="Your email (in your GnuPG key).")],
    device_name: Annotated[
        str | None, typer.Option("--device-name", help="Name of this device [hostname].")
    ] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", help="Broker URL, as its status page shows it.")
    ] = None,
    keyserver: Annotated[
        str | None, typer.Option("--keyserver", help="ω IM key server, e.g. http://host:11371")
    ] = None,
    unlisted: Annotated[
        bool,
        typer.Option("--unlisted", help="Status pages show your fingerprint, never your name."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create your identity (an ed25519/cv25519 GnuPG key) and this device's key."""
    home = State.of(ctx).home
    dev = device_name or socket.gethostname()[:64] or "device"
    fp, device = home.create(
        name, email, dev, broker=broker, keyserver=keyserver, listed=not unlisted
    )
    if as_json:
        emit_json({"fingerprint": fp, "device": device.id})
    else:
        console.print(f"[bold green]✓[/] {_('identity created')}: [bold]{fp}[/]")
        console.print(f"  {_('device')}: {dev} ({device.id})  {_('home')}: {home.path}")


def whoami(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show your fingerprint, name and this device's certificate."""
    home = State.of(ctx).home
    cfg = home.config
    cert, cert_bytes, sig = home.certificate
    if as_json:
        emit_json(
            {
                "fingerprint": home.fingerprint,
                "name": cfg.get("name", ""),
                "email": cfg.get("email", ""),
                "broker": cfg.get("broker"),
                "keyserver": cfg.get("keyserver"),
                "device": {
                    "id": cert.device,
                    "name": cert.name,
                    "public_key": base64.b64encode(cert.public_key).decode(),
                    "certificate": base64.b64encode(cert_bytes).decode(),
                    "signature": sig,
                    "expires": cert.expires,
                },
            }
        )
        return
    name, email = (escape(safe(str(cfg.get(k, "")))) for k in ("name", "email"))
    console.print(f"[bold]{name}[/] <{email}>")
    console.print(f"  {_('fingerprint')}: {home.fingerprint}")
    console.print(f"  {_('device')}: {cert.name} ({cert.device})")
    for key, label in (
        ("broker", _("broker")),
        ("keyserver", _("keyserver")),
    ):
        if cfg.get(key):
            console.print(f"  {label}: {cfg[key]}")
