"""`tits send`, `recv`, `chat` and `outbox`: the commands over the client library.

What a person typed goes into the durable outbox first; a broker that does not answer within
a few seconds is reported at once and the other brokers of the cloud are tried; a text that no
broker took stays in the outbox (`tits outbox`) and goes with the next command that connects.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from tits.client.blocking import Messenger
from tits.client.controls import lifetime_seconds
from tits.client.model import (
    LIFETIME_MAX_S,
    LIFETIME_MIN_S,
    REACTIONS,
    Announced,
    Event,
    Expired,
    GroupChanged,
    Held,
    LinkEvent,
    Message,
    Missed,
    Reacted,
    Receipt,
    Refused,
    SettingsChanged,
    Shown,
    Skipped,
    Unsent,
)
from tits.client.store import LocalStore
from tits.errors import BrokerError, ConfigError
from tits.i18n import _, error_text
from tits.log import configure
from tits.media.stickers import Shelf
from tits.session import direct_conversation_id

from .context import State
from .media_cmds import bar, fetch_shown, render_media
from .output import console, emit_json, err_console, safe

BrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", help="Broker URL (default: the one in your config).", metavar="URL"),
]
KeyserverOpt = Annotated[
    str | None, typer.Option("--keyserver", help="Key server URL.", metavar="URL")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object a line).")]


def _text_arg(text: str) -> str:
    """A command-line text that is not valid UTF-8 (surrogate escapes) is refused clearly."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(_("the text is not valid UTF-8: check the terminal's encoding")) from None
    return text


def _target(m: Messenger, who: str) -> str:
    return m.client.resolve(who)


def _name(m: Messenger, fp: str) -> str:
    return m.name_of(fp)


def send(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="@name, fingerprint or #group.")],
    text: Annotated[str, typer.Argument(help="The text to send (a caption with --file).")] = "",
    file: Annotated[
        list[Path] | None,
        typer.Option(
            "--file", help="Send a file (signed, never encrypted); give it again for an album."
        ),
    ] = None,
    sticker: Annotated[
        str | None,
        typer.Option(
            "--sticker", help="Send a sticker: PACK/(code) or (code) (tits sticker list)."
        ),
    ] = None,
    reply_to: Annotated[
        str | None, typer.Option("--reply-to", help="Answer this message (its id).", metavar="ID")
    ] = None,
    lifetime: Annotated[
        str | None,
        typer.Option(
            "--lifetime",
            help="Remove the text from every device this long after it is shown (30s, 10m, 2h).",
            metavar="TIME",
        ),
    ] = None,
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Give up waiting after this many seconds.")
    ] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Send a text (or a file, a sticker); exits 0 once a broker has stored it."""
    answering = _msg_id(reply_to) if reply_to else None
    life = parse_lifetime(lifetime) if lifetime is not None else 0
    configure("warning")
    state = State.of(ctx)
    text = _text_arg(text)
    files = list(file or [])
    if not text and not files and sticker is None:
        raise ConfigError(_("nothing to send: give a text, --file or --sticker"))
    for f in files:
        if not f.is_file():
            raise ConfigError(_("{f}: not a file").format(f=f))
    stuck = Shelf(state.home.path).find(sticker) if sticker is not None else None
    if stuck is not None and stuck.image is None:
        raise ConfigError(_("that sticker's image is not here"))
    with Messenger(state.home, broker=broker, keyserver=keyserver) as m:
        target = _target(m, who)
        items = []
        if text:
            options = m.options_for(target, text, life)
            items.append(m.enqueue(target, text.encode(), "text", "text/plain", answering, options))
        try:
            m.connect(min(timeout, 60.0))
            m.flush_and_wait(items, timeout)
            for f in files:  # an album: each file its own message, in the order given
                with bar(_("hashing {name}").format(name=f.name), as_json) as cb:
                    manifest = m.scan(f, progress=cb)
                with bar(_("sending {name}").format(name=f.name), as_json) as cb:
                    items.append(
                        m.send_file(target, f, manifest=manifest, progress=cb,
                                    timeout=max(timeout, 3600.0))
                    )  # fmt: skip
            if stuck is not None and stuck.image is not None:  # a sticker: media like any
                sm = m.scan(stuck.image)
                sm.name, sm.sticker = (
                    f"{stuck.sticker.code}.png",
                    f"{stuck.pack.id}/{stuck.sticker.code}",
                )
                items.append(m.send_file(target, stuck.image, manifest=sm, timeout=timeout))
        except BrokerError as exc:
            _report_links(m)
            waiting = len(m.store.outbox("pending"))
            if waiting and exc.code in ("timeout", "unreachable"):
                raise BrokerError(
                    exc.message
                    + _(
                        "; {waiting} message(s) kept in the outbox, sent on the next connection "
                        "(tits outbox)"
                    ).format(waiting=waiting),
                    code=exc.code,
                ) from None
            raise
        _report_links(m)
        if as_json:
            emit_json(
                {
                    "id": items[0].hex(),
                    "ids": [i.hex() for i in items],
                    "to": target,
                    "broker": m.client.link.broker if m.client.link else None,
                }
            )
        else:
            shown = _who(m, target)
            for i in items:
                console.print(
                    Text.assemble(("✓ ", "green"), _("sent"), f" → {shown}  ", (i.hex(), "dim"))
                )


def _msg_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise ConfigError(_("a message id is 32 hex digits (recv --json shows it)"))
    return raw


def unsend(
    ctx: typer.Context,
    msg_id: Annotated[str, typer.Argument(help="The id of your message (32 hex digits).")],
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Give up after this many seconds.")
    ] = 30.0,
) -> None:
    """Take back a message you sent, within 24 hours: it disappears from every member's
    device, replaced by a notice."""
    configure("warning")
    state = State.of(ctx)
    raw = _msg_id(msg_id)
    with Messenger(state.home, broker=broker, keyserver=keyserver) as m:
        m.unsend(raw, timeout)
        console.print(Text.assemble(("✓ ", "green"), _("message taken back")))


def _who(m: Messenger, target: str) -> str:
    if target.startswith("#"):
        state = m.client.groups.state(bytes.fromhex(target[1:]))
        return "#" + safe(state.name if state else target[1:13])
    return safe(_name(m, target))


def _report_links(m: Messenger) -> None:
    m.take_events()
    for ev in m.events:
        if isinstance(ev, Skipped):
            names = ", ".join(safe(_name(m, fp)) for fp in ev.members)
            err_console.print(
                Text.assemble(
                    ("! ", "yellow"),
                    _(
                        "not sent to {names}: not confirmed, or their key changed since (compare "
                        "fingerprints again, then `tits contact confirm`)"
                    ).format(names=names),
                )
            )
        if isinstance(ev, LinkEvent) and ev.state == "unreachable":
            err_console.print(
                Text.assemble(
                    ("! ", "yellow"),
                    _("the broker did not answer"),
                    f": {ev.broker_url.split('#')[0]} ({safe(ev.detail)})",
                )
            )
    m.events = [e for e in m.events if not isinstance(e, LinkEvent)]


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def render(m: Messenger, msg: Message, *, label: bool = True) -> Text:
    """One line for a person: every text from the wire goes through `safe` (no terminal
    control or bidi character is ever interpreted)."""
    line = Text()
    line.append(f"{_clock(msg.ts)} ", style="dim")
    if label and msg.group is not None:
        state = m.client.groups.state(msg.group)
        line.append(f"#{safe(state.name if state else msg.group.hex()[:8])} ", style="magenta")
    if msg.outgoing:
        line.append(_("me"), style="bold green")
        if msg.to and msg.group is None:
            line.append(f" → {safe(_name(m, msg.to[0]))}", style="green")
    else:
        line.append(safe(_name(m, msg.sender)), style="bold cyan")
    if msg.verified:
        line.append(" ✓", style="bold green")
    else:
        line.append(f" ? {_('not verified')}", style="bold yellow")
    line.append(": ")
    if msg.unsent:
        who = _("you") if msg.outgoing else safe(_name(m, msg.sender))
        line.append(_("{who} took this message back").format(who=who), style="dim italic")
        return line
    if msg.expired:
        line.append(_("this message has expired"), style="dim italic")
        return line
    if msg.mentions_of(m.client.me):
        line.append("@ ", style="bold reverse yellow")
    if msg.reply_to is not None:
        quoted = m.store.message(msg.reply_to)
        quote = safe((quoted.text or "")[:30]) if quoted and not quoted.unsent else "…"
        line.append(f"↩ {quote} | ", style="dim")
    if msg.text is not None:
        line.append(safe(msg.text))
    else:
        line.append(render_media(msg, m.home.path))
    if msg.outgoing and msg.read_by:
        seen = (
            _("read") if msg.group is None else _("read by {read_by}").format(read_by=msg.read_by)
        )
        line.append(f"  {seen}", style="dim green")
    if msg.lifetime_s:
        line.append(f"  ⏱ {_span(msg.lifetime_s)}", style="dim")
    if msg.reactions:
        line.append(
            "  " + " ".join(f"{REACTIONS.get(k, '?')}{len(v)}" for k, v in msg.reactions.items()),
            style="dim",
        )
    return line


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_lifetime(text: str) -> int:
    """`30s`, `10m`, `2h`, `1d` (or plain seconds) → seconds, within the allowed range."""
    seconds = lifetime_seconds(text)
    if seconds is None:
        raise ConfigError(
            _(
                "a lifetime is written like 30s, 10m, 2h or 1d, from {LIFETIME_MIN_S} s "
                "to {LIFETIME_MAX_S} days"
            ).format(LIFETIME_MIN_S=LIFETIME_MIN_S, LIFETIME_MAX_S=LIFETIME_MAX_S // 86400)
        )
    return seconds


def render_event(m: Messenger, ev: Event) -> Text | None:
    if isinstance(ev, GroupChanged):
        words = {
            "create": _("created the group"),
            "invite": _("invited"),
            "remove": _("removed"),
            "leave": _("left the group"),
            "admin": _("made admin:"),
            "rename": _("renamed the group to"),
            "rekey": _("renewed the group key"),
        }
        who = ", ".join(safe(_name(m, fp)) for fp in ev.targets)
        extra = safe(ev.name) if ev.event == "rename" else who
        return Text.assemble(
            (f"{_clock(ev.ts)} ", "dim"),
            (f"#{safe(ev.name)} ", "magenta"),
            (safe(_name(m, ev.actor)), "bold cyan"),
            f" {words[ev.event]} {extra}".rstrip(),
        )
    if isinstance(ev, Reacted):
        target = m.store.message(ev.id)
        about = safe((target.text or "")[:20]) if target and target.text else ev.id.hex()[:8]
        mark = REACTIONS.get(ev.name, "")
        who = safe(_name(m, ev.by))
        if not mark:
            return Text(
                _('{who} took back a reaction to "{about}"').format(who=who, about=about),
                style="dim",
            )
        return Text(
            _('{who} reacted {mark} to "{about}"').format(who=who, mark=mark, about=about),
            style="dim",
        )
    if isinstance(ev, SettingsChanged):
        who = safe(_name(m, ev.by))
        if ev.unsend_s == 0:
            return Text(_("{who} turned unsend off in this group").format(who=who), style="dim")
        from tits.app.text import lifetime_label

        return Text(
            _("{who} set this group's unsend window to {span}").format(
                who=who, span=lifetime_label(ev.unsend_s)
            ),
            style="dim",
        )
    if isinstance(ev, Announced):
        who = safe(_name(m, ev.by))
        if not ev.text:
            return Text(_("{who} took the announcement down").format(who=who), style="dim")
        return Text.assemble(
            ("📢 ", "bold"), (_("Announcement"), "bold yellow"), f" {who}: ", safe(ev.text)
        )
    return None


def recv(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep listening for new messages.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop after this many seconds.")
    ] = None,
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    no_media: Annotated[
        bool, typer.Option("--no-media", help="Do not fetch files (tits media get later).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print your unread messages (oldest first), then what waits at the broker; --follow
    keeps listening. Files are fetched into HOME/media (each chunk checked) unless
    --no-media."""
    configure("warning")
    state = State.of(ctx)
    if timeout is None and not follow:
        timeout = 30.0
    with Messenger(state.home, broker=broker, keyserver=keyserver) as m:
        shown_ids: list[bytes] = []

        def show(msg: Message) -> None:
            if msg.id in shown_ids:
                return
            shown_ids.append(msg.id)
            why = None
            if msg.kind == "media" and not no_media:
                why = fetch_shown(m, msg, as_json)
            if as_json:
                row = msg.to_json(_name(m, msg.sender))
                if why is not None:
                    row["media_error"] = why
                emit_json(row)
                return
            console.print(render(m, msg))
            if why is not None:
                err_console.print(
                    Text.assemble(("! ", "yellow"), _("file not fetched"), f": {safe(why)}")
                )

        def on_event(ev: Event) -> None:
            if isinstance(ev, GroupChanged | Reacted | Announced | SettingsChanged):
                if as_json:
                    who = ev.actor if isinstance(ev, GroupChanged) else ev.by
                    emit_json(ev.to_json(_name(m, who)))
                else:
                    line = render_event(m, ev)
                    if line is not None:
                        console.print(line)
            elif isinstance(ev, Receipt):
                if as_json:
                    emit_json(
                        {
                            "kind": "receipt",
                            "conversation": ev.conv.hex(),
                            "from": ev.reader,
                            "ids": [i.hex() for i in ev.ids],
                        }
                    )
                else:
                    console.print(
                        Text.assemble(
                            ("✓✓ ", "green"),
                            safe(_name(m, ev.reader)),
                            " ",
                            _("read {n_ids}").format(n_ids=len(ev.ids)),
                        )
                    )
            elif isinstance(ev, Unsent):
                if as_json:
                    emit_json(
                        {
                            "kind": "unsend",
                            "id": ev.id.hex(),
                            "from": ev.by,
                            "conversation": ev.conv.hex(),
                        }
                    )
                else:
                    who = safe(_name(m, ev.by))
                    console.print(
                        Text(_("{who} took a message back").format(who=who), style="dim italic")
                    )
            elif isinstance(ev, Missed):  # the broker's retention took some: said once
                if as_json:
                    emit_json(ev.to_json())
                else:
                    console.print(Text.assemble(("! ", "yellow"), (ev.text(), "yellow")))
            elif isinstance(ev, Expired):
                if as_json:
                    emit_json({"kind": "expired", "ids": [i.hex() for i in ev.ids]})
            elif isinstance(ev, Refused):
                if as_json:
                    emit_json(
                        {
                            "kind": "refused",
                            "id": ev.id.hex(),
                            "from": ev.sender,
                            "reason": ev.reason,
                            "group": ev.group.hex() if ev.group else None,
                        }
                    )
                else:
                    err_console.print(
                        Text.assemble(
                            ("✗ ", "red"),
                            _("refused"),
                            f" {ev.id.hex()[:12]} ({ev.sender[:16]}): {safe(ev.reason)}",
                        )
                    )

        for msg in m.store.unread():  # left unread by a `chat` with someone else
            show(msg)
        try:
            m.connect(min(timeout or 30.0, 60.0))
            m.flush_and_wait([i.id for i in m.store.outbox("pending")], 10.0)
        except BrokerError:
            _report_links(m)
            raise
        try:
            m.receive(show, follow=follow, timeout=timeout, on_event=on_event)
        except KeyboardInterrupt:
            pass
        shown_msgs = [x for x in (m.store.message(i) for i in shown_ids) if x is not None]
        try:
            m.read(shown_msgs)  # 已讀: one receipt per chat, unless receipts are off
        except BrokerError as exc:
            why = safe(error_text(exc.message))
            err_console.print(f"[dim]{_('read receipts not sent')}: {why}[/]")
        held = [e for e in m.events if isinstance(e, Held)]
        if held and not as_json:
            n = len(held)
            err_console.print(f"[dim]{_('{n} message(s) wait for their key').format(n=n)}[/]")
        if not shown_ids and not as_json:
            err_console.print(f"[dim]{_('no new messages')}[/]")


def outbox(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """What waits to be sent (or failed), oldest first."""
    state = State.of(ctx)
    state.home.require()
    store = LocalStore(state.home.path)
    try:
        items = store.outbox()
    finally:
        store.close()
    for item in items:
        if item.kind == "control":
            continue
        row = {
            "id": item.id.hex(),
            "to": item.target,
            "kind": item.kind,
            "text": item.payload.decode("utf-8", "replace") if item.kind == "text" else None,
            "mime": item.mime,
            "created": item.created,
            "state": item.state,
            "reason": item.reason,
        }
        if as_json:
            emit_json(row)
        else:
            mark = ("…", "yellow") if item.state == "pending" else ("✗", "red")
            console.print(
                Text.assemble(
                    mark,
                    f" {_clock(int(item.created * 1000))} → {item.target[:16]}: ",
                    safe(str(row["text"] or f"[{item.mime}]")),
                    (f"  {safe(item.reason)}" if item.reason else "", "dim"),
                )
            )
    if not items and not as_json:
        err_console.print(f"[dim]{_('the outbox is empty')}[/]")


def chat(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="@name, fingerprint or #group.")],
    broker: BrokerOpt = None,
    keyserver: KeyserverOpt = None,
    history: Annotated[int, typer.Option("--history", help="Earlier messages to show.")] = 20,
) -> None:
    """Chat: type a line and press Enter to send; /quit or Ctrl-D to leave. Only this chat's
    messages show here; others are counted and stay unread for `tits recv`."""
    configure("warning")
    state = State.of(ctx)
    with Messenger(state.home, broker=broker, keyserver=keyserver) as m:
        target = _target(m, who)
        if target.startswith("#"):
            conv = bytes.fromhex(target[1:])
        else:
            conv = direct_conversation_id(m.me, target)
        console.rule(Text.assemble(_who(m, target), "  ", (target.lstrip("#"), "dim")))
        for msg in m.store.history(conv, history):
            console.print(render(m, msg, label=False))
        m.store.mark_read(msg.id for msg in m.store.unread(conv))
        m.connect(30.0)
        asyncio.run_coroutine_threadsafe(_chat_loop(m, target, conv), m._loop).result()


async def _chat_loop(m: Messenger, target: str, conv: bytes) -> None:
    """Runs on the client's loop: stdin and the broker, neither blocking the other."""
    c = m.client
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(sys.stdin.readline() or None))
    others: dict[bytes, int] = {}
    reads: list[asyncio.Future[list[bytes]]] = []
    closed_at = 0.0

    def busy() -> bool:
        """After Ctrl-D: what was typed is stored, what waited has come, receipts have gone
        (at most 20 s more)."""
        now = time.monotonic()
        if now - closed_at > 20:
            return False
        welcome = c.welcome
        settle = (welcome.settle_ms / 1000 if welcome else 0.0) + 1.0
        return bool(
            c.outbox.waiting(set(c.outbox._items))
            or any(not r.done() for r in reads)
            or (welcome is not None and c.received < welcome.pending)
            or c.processing
            or bool(c._incoming)
            or now - max(closed_at, c.last_delivery) < settle  # what is still on its way
        )

    try:
        stdin_open = True
        while stdin_open or busy():
            get_line = asyncio.ensure_future(lines.get()) if stdin_open else None
            get_event = asyncio.ensure_future(c._events.get())
            waiting = {f for f in (get_line, get_event) if f is not None}
            done, pending = await asyncio.wait(
                waiting, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
            )
            for f in pending:
                f.cancel()
            if get_event in done:
                read = _chat_event(m, get_event.result(), conv, others)
                if read is not None:
                    reads.append(read)
            if get_line is not None and get_line in done:
                line = get_line.result()
                if line is None or line.strip() in ("/quit", "/exit", "/q"):
                    stdin_open = False
                    closed_at = time.monotonic()
                    loop.remove_reader(sys.stdin.fileno())
                    continue
                text = line.rstrip("\n")
                if text.strip():
                    item = await c.send(target, text.encode())
                    console.print(
                        Text.assemble(
                            (f"{_clock(int(time.time() * 1000))} ", "dim"),
                            (_("me"), "bold green"),
                            ": ",
                            safe(text),
                            ("  …", "dim"),
                        )
                    )
                    del item
            if not stdin_open and not busy():
                break
    finally:
        try:
            loop.remove_reader(sys.stdin.fileno())
        except (ValueError, OSError):
            pass


def _chat_event(
    m: Messenger, ev: Event, conv: bytes, others: dict[bytes, int]
) -> asyncio.Future[list[bytes]] | None:
    """Show what belongs to this chat; count what does not. Returns the receipt being sent."""
    if isinstance(ev, Shown):
        msg = ev.message
        if msg.conv == conv:
            console.print(render(m, msg, label=False))
            return asyncio.ensure_future(m.client.read([msg]))  # 已讀, off this loop's way
        else:
            others[msg.conv] = others.get(msg.conv, 0) + 1
            gstate = m.client.groups.state(msg.group) if msg.group else None
            where = "#" + gstate.name if gstate else ("#?" if msg.group else _name(m, msg.sender))
            err_console.print(
                Text.assemble(
                    ("● ", "yellow"),
                    safe(where),
                    " ",
                    _("{others} unread").format(others=others[msg.conv]),
                    (" (tits recv)", "dim"),
                )
            )
    elif isinstance(ev, Refused):
        err_console.print(
            Text.assemble(("✗ ", "red"), _("refused"), f" ({ev.sender[:16]}): {safe(ev.reason)}")
        )
    elif isinstance(ev, GroupChanged) and ev.group == conv:
        line = render_event(m, ev)
        if line is not None:
            console.print(line)
    elif isinstance(ev, Missed):
        err_console.print(Text.assemble(("! ", "yellow"), (ev.text(), "yellow")))
    elif isinstance(ev, LinkEvent) and ev.state == "unreachable":
        err_console.print(
            Text.assemble(
                ("! ", "yellow"),
                _("link lost, reconnecting"),
                f" ({safe(ev.detail)})",
            )
        )
    return None
