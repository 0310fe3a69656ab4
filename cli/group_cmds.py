"""`tits group …`: groups with a client-made id and a signed membership log.

Rights (tits/client/memberlog.py has the whole rule set): the creator is an admin; in a
normal group any member may invite, in a secure one only admins, and only confirmed people
(`tits contact confirm`); admins may remove anyone but the creator; anyone may leave; when
the last admin leaves, the longest-standing member becomes admin.
"""

from __future__ import annotations

import base64
import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tits.client.blocking import Messenger
from tits.client.controls import unsend_window_seconds
from tits.client.memberlog import GroupError, decode_entry, entry_hash
from tits.client.model import GroupChanged, SettingsChanged
from tits.errors import ConfigError
from tits.i18n import _, year
from tits.log import configure

from .chat_cmds import BrokerOpt, JsonOpt, KeyserverOpt, render_event
from .context import State
from .output import console, emit_json, safe

group_app = typer.Typer(help="Groups: create, invite, remove, leave, list, members, log.")

GroupArg = Annotated[str, typer.Argument(help="#name or group id.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")]


def _messenger(ctx: typer.Context, broker: str | None, keyserver: str | None) -> Messenger:
    configure("warning")
    return Messenger(State.of(ctx).home, broker=broker, keyserver=keyserver)


def _people(m: Messenger, who: list[str]) -> list[str]:
    out = []
    for w in who:
        fp = m.client.resolve(w)
        if fp.startswith("#"):
            raise ConfigError(_("{w} is a group, not a person").format(w=w))
        out.append(fp)
    return out


@group_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The group's name (1–64 characters).")],
    secure: Annotated[
        bool,
        typer.Option("--secure", help="A secure chat: confirmed members only, keys rotated."),
    ] = False,
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a group (only you in it, until you invite someone)."""
    with _messenger(ctx, broker, keyserver) as m:
        gid = m.group_create(name, secure)
        if as_json:
            emit_json({"group": gid.hex(), "name": name, "secure": secure})
        else:
            console.print(
                Text.assemble(
                    ("✓ ", "green"),
                    _("created group"),
                    f" #{safe(name)}  ",
                    (gid.hex(), "dim"),
                )
            )


def _show(m: Messenger, ev: GroupChanged | SettingsChanged, who: str, as_json: bool) -> None:
    """What a group command did: one JSON line, or the line `recv` would print for it."""
    if as_json:
        emit_json(ev.to_json(m.name_of(who)))
        return
    line = render_event(m, ev)
    if line is not None:
        console.print(line)


def _change(
    ctx: typer.Context,
    group: str,
    op: str,
    who: list[str],
    broker: str | None,
    keyserver: str | None,
    as_json: bool,
    timeout: float,
    share_history: bool = False,
    name: str = "",
) -> None:
    with _messenger(ctx, broker, keyserver) as m:
        gid = m.client.groups.find(group)
        targets = _people(m, who)
        ev = m.group_change(
            gid, op, targets, share_history=share_history, timeout=timeout, name=name
        )
        if ev is not None:
            _show(m, ev, ev.actor, as_json)


@group_app.command("invite")
def invite(
    ctx: typer.Context,
    group: GroupArg,
    who: Annotated[list[str], typer.Argument(help="@name or fingerprint, one or more.")],
    share_history: Annotated[
        bool,
        typer.Option("--share-history", help="Let them read what was said before they joined."),
    ] = False,
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Timeout = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Invite people; the group gets a new key that they can read from now on."""
    _change(ctx, group, "invite", who, broker, keyserver, as_json, timeout, share_history)


@group_app.command("remove")
def remove(
    ctx: typer.Context,
    group: GroupArg,
    who: Annotated[list[str], typer.Argument(help="@name or fingerprint.")],
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Timeout = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Remove members (admins only); the rest get a key the removed cannot read."""
    _change(ctx, group, "remove", who, broker, keyserver, as_json, timeout)


@group_app.command("leave")
def leave(
    ctx: typer.Context,
    group: GroupArg,
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Timeout = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Leave a group; the others renew its key without you."""
    _change(ctx, group, "leave", [], broker, keyserver, as_json, timeout)


@group_app.command("admin")
def admin(
    ctx: typer.Context,
    group: GroupArg,
    who: Annotated[list[str], typer.Argument(help="@name or fingerprint of members.")],
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Timeout = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Make members admins (admins only)."""
    _change(ctx, group, "admin", who, broker, keyserver, as_json, timeout)


@group_app.command("rename")
def rename(
    ctx: typer.Context,
    group: GroupArg,
    name: Annotated[str, typer.Argument(help="The new name (1–64 characters).")],
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Timeout = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Rename a group (any member in a normal group, admins in a secure one)."""
    _change(ctx, group, "rename", [], broker, keyserver, as_json, timeout, name=name)


@group_app.command("set")
def set_rules(
    ctx: typer.Context,
    group: GroupArg,
    unsend_window: Annotated[
        str,
        typer.Option(
            "--unsend-window",
            help="How long after sending a message may be taken back: 10m, 2h, 7d, or off.",
            metavar="TIME",
        ),
    ],
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Timeout = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Set a group's rules for every member (admins only): how long a message may be unsent."""
    seconds = unsend_window_seconds(unsend_window)
    if seconds is None:
        raise ConfigError(
            _("{value}: give 10m, 2h, 7d (1 minute to 7 days) or off").format(
                value=safe(unsend_window)
            )
        )
    with _messenger(ctx, broker, keyserver) as m:
        gid = m.client.groups.find(group)
        m.set_unsend_window("#" + gid.hex(), seconds, timeout=timeout)
        ev = SettingsChanged(conv=gid, by=m.me, unsend_s=seconds, ts=int(time.time() * 1000))
        _show(m, ev, m.me, as_json)


@group_app.command("list")
def list_groups(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Your groups."""
    with _messenger(ctx, None, None) as m:
        rows = []
        for gid, name, secure in m.store.groups():
            state = m.client.groups.state(gid)
            members = len(state.members) if state else 0
            me_in = bool(state and state.is_member(m.me))
            rows.append(
                {
                    "group": gid.hex(),
                    "name": name,
                    "secure": secure,
                    "members": members,
                    "member": me_in,
                }
            )
        if as_json:
            for r in rows:
                emit_json(r)
            return
        table = Table(show_header=True, header_style="bold")
        for col in (_("group"), _("members"), "id"):
            table.add_column(col)
        for r in rows:
            lock = " 🔒" if r["secure"] else ""
            table.add_row(
                Text(f"#{safe(str(r['name']))}{lock}"),
                str(r["members"]),
                Text(str(r["group"]), style="dim"),
            )
        console.print(table)


@group_app.command("members")
def members(ctx: typer.Context, group: GroupArg, as_json: JsonOpt = False) -> None:
    """Who is in a group, and who are its admins."""
    with _messenger(ctx, None, None) as m:
        gid = m.client.groups.find(group)
        state = m.client.groups.state(gid)
        if state is None:
            raise ConfigError(_("no such group"))
        for fp, mem in sorted(state.members.items(), key=lambda kv: kv[1].since):
            row = {"fingerprint": fp, "name": m.name_of(fp), "role": mem.role, "me": fp == m.me}
            if as_json:
                emit_json(row)
            else:
                badge = _(" admin") if mem.role == "admin" else ""
                console.print(
                    Text.assemble(safe(str(row["name"])), (badge, "magenta"), "  ", (fp, "dim"))
                )


@group_app.command("log")
def group_log(ctx: typer.Context, group: GroupArg, as_json: JsonOpt = False) -> None:
    """The membership log, in the order every member applies it. With --json each entry
    carries its bytes and signature: check one with plain `gpg --verify`."""
    with _messenger(ctx, None, None) as m:
        gid = m.client.groups.find(group)
        log = m.client.groups.log(gid)
        if log is None:
            raise ConfigError(_("no such group"))
        refused = {r.hash: r.reason for r in log.rejected()}
        for signed in log.entries():
            try:
                entry = decode_entry(signed.raw)
            except GroupError:
                continue
            h = entry_hash(signed.raw)
            row = {
                "hash": h,
                "prev": entry.prev,
                "op": entry.op,
                "actor": entry.actor,
                "targets": entry.targets,
                "name": entry.name,
                "ts": entry.ts,
                "applied": h not in refused,
                "refused": refused.get(h),
                "entry": base64.b64encode(signed.raw).decode(),
                "signature": signed.signature,
            }
            if as_json:
                emit_json(row)
            else:
                lt = time.localtime(entry.ts / 1000)
                when = f"{year(lt.tm_year)}-" + time.strftime("%m-%d %H:%M", lt)
                who = ", ".join(m.name_of(fp) for fp in entry.targets)
                mark = ("✓", "green") if h not in refused else ("✗", "red")
                console.print(
                    Text.assemble(
                        mark,
                        f" {when} ",
                        (h[:12], "dim"),
                        " ",
                        safe(m.name_of(entry.actor)),
                        f" {entry.op} ",
                        safe(who or entry.name),
                        (f"  {refused[h]}" if h in refused else "", "red"),
                    )
                )
