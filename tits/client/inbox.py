"""A batch of deliveries → one typed event each, recorded before anything is acknowledged.

Key and group messages of a batch are handled before its texts (a text may come in the same
batch as its key). Whatever cannot be decided yet (`NotYet`: no key, no certificate, no group)
is *held*: kept in the local store and acknowledged (so the broker's window never fills with
it), tried again when what it needs arrives or has been looked up; one held longer than
`KEY_WAIT_S` is refused, and one sender may have at most `HELD_PER_SENDER` held.
Everything here may run gpg:
the client calls `process` off the event loop, one batch at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from tits import wire
from tits.errors import MediaError, TitsError, VerificationError
from tits.identity import Identity
from tits.media.manifest import decode as manifest_decode
from tits.session import SessionKey

from .connection import Incoming
from .controls import read_announcement, read_reaction, read_settings
from .devices import DeviceChecker
from .groups import Groups
from .keyring import Keyring
from .model import (
    ANNOUNCE_MIME,
    CONTROL_MIMES,
    LIFETIME_MAX_S,
    REACTION_MIME,
    RECEIPT_MIME,
    SETTINGS_MIME,
    Announced,
    Event,
    GroupChanged,
    Held,
    Message,
    Reacted,
    Receipt,
    Refused,
    SettingsChanged,
    Shown,
    Unsent,
    thumb_name,
)
from .opener import NotYet, Opened, conversation_of, open_body
from .store import LocalStore

_IDS = msgspec.msgpack.Decoder(list[wire.MsgId])
KEY_WAIT_S = 120.0  # how long a text may wait for its key, its group or its certificate
# What one sender may have waiting here for a key it has not sent: beyond it, their messages
# are refused (and acknowledged), so a sender who floods mutes themselves, not the inbox.
HELD_PER_SENDER = 200
HELD_BYTES_PER_SENDER = 16 << 20


@dataclass
class Batch:
    events: list[Event] = field(default_factory=list)
    ack: list[bytes] = field(default_factory=list)
    needs: list[NotYet] = field(default_factory=list)
    rekey: list[bytes] = field(default_factory=list)  # groups this device should rekey now


class Inbox:
    def __init__(
        self,
        store: LocalStore,
        identity: Identity,
        me: str,
        keyring: Keyring,
        groups: Groups,
        devices: DeviceChecker,
        ensure_key: Callable[[str], None],
        keep_media: Callable[[bytes], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.identity = identity
        self.me = me
        self.keyring = keyring
        self.groups = groups
        self.devices = devices
        self.ensure_key = ensure_key
        self.keep_media = keep_media
        self.clock = clock
        self.held: dict[bytes, Incoming] = {}
        for env, body in store.held():
            d = wire.SERVER_DECODER.decode(env)
            if isinstance(d, wire.Deliver):
                self.held[d.id] = Incoming(d, body)
        self.unfindable: set[str] = set()  # public keys no key server can give us
        self.media_folder: Path | None = None  # HOME/media: a file fetched before is shown

    def process(self, deliveries: list[Incoming]) -> Batch:
        out = Batch()
        fresh: list[tuple[Incoming, wire.Body | None]] = []
        ids = set()
        for inc in [*self.held.values(), *deliveries]:
            i = inc.envelope.id
            if i in ids:
                continue
            ids.add(i)
            if self.store.seen(i):
                if self.held.pop(i, None) is not None:
                    self.store.unhold([i])
                out.ack.append(i)
                continue
            try:
                fresh.append((inc, wire.BODY_DECODER.decode(inc.body)))
            except TitsError as exc:
                fresh.append((inc, None))
                out.events.append(Refused(id=i, sender=inc.envelope.sender, reason=exc.message))
        # keys and logs first: a text may come in the same batch as its key
        fresh.sort(key=lambda p: not isinstance(p[1], (wire.KeyBody, wire.GroupBody)))
        messages: list[Message] = []
        raw: dict[bytes, bytes] = {}
        seen_only: list[bytes] = []
        for inc, body in fresh:
            env = inc.envelope
            if body is None:
                seen_only.append(env.id)
                continue
            try:
                shown = self._one(env, body, out)
            except NotYet as exc:
                if self.clock() * 1000 - env.ts < KEY_WAIT_S * 1000:
                    out.needs.append(exc)
                    if env.id in self.held:
                        continue
                    n, size = self.store.held_by(env.sender)
                    if n < HELD_PER_SENDER and size + len(inc.body) <= HELD_BYTES_PER_SENDER:
                        self.store.hold(env.id, env.sender, wire.encode(env), inc.body)
                        self.held[env.id] = inc
                        out.ack.append(env.id)  # safe on our disk now
                        if exc.need != "devices":  # (a moment's look at keyd: not news)
                            out.events.append(Held(id=env.id, sender=env.sender,
                                                   reason=exc.message))  # fmt: skip
                        continue
                    exc = NotYet(exc.need, f"{env.sender[:16]} has {n} messages waiting for "
                                 "a key they never sent: refused")  # fmt: skip
                out.events.append(Refused(id=env.id, sender=env.sender, reason=exc.message))
                shown = None
            except (TitsError, ValueError) as exc:
                reason = exc.message if isinstance(exc, TitsError) else str(exc)
                out.events.append(Refused(id=env.id, sender=env.sender, reason=reason,
                                          group=env.group))  # fmt: skip
                shown = None
            if self.held.pop(env.id, None) is not None:
                self.store.unhold([env.id])
            if shown is None or (len(shown) == 1 and shown[0].unsent and shown[0].id != env.id):
                seen_only.append(env.id)  # (or an unsend that brought its placeholder)
            if shown is not None:
                messages.extend(shown)
                if env.group is not None and isinstance(body, wire.SealedBody):
                    raw[env.id] = inc.body
        messages.sort(key=lambda m: m.ts)
        # a message taken back in the same batch that brought it is never shown
        gone = {e.id: e.by for e in out.events if isinstance(e, Unsent)}
        for m in messages:
            if gone.get(m.id) == m.sender:
                m.text, m.file, m.unsent, m.read = None, None, True, True
                raw.pop(m.id, None)
        self.store.record(messages, seen_only, raw)
        out.events.extend(Shown(message=m) for m in messages if not m.unsent)
        out.ack.extend(seen_only)
        out.ack.extend(m.id for m in messages if m.id in ids)
        return out

    def _one(self, env: wire.Deliver, body: wire.Body, out: Batch) -> list[Message] | None:
        if isinstance(body, wire.KeyBody):
            self._direct_key(env, body)
            return None
        if isinstance(body, wire.GroupBody):
            self._need_key(env.sender)
            events, rekey = self.groups.receive(env, body, self._need_key)
            self._learn_cert(env.sender, body.cert, body.cert_sig, body.cert_proof)
            out.events.extend(events)
            if rekey:
                out.rekey.append(body.group)
            return None
        if isinstance(body, wire.HistoryBody):
            return self._history(env, body)
        if self.store.tombstoned(env.id, env.sender):
            return None  # taken back by its sender before it reached us
        msg, payload = self._open_with_payload(env, body, history=False)
        if msg.mime in CONTROL_MIMES:
            return self._control(msg, payload, out)
        return [msg]

    def _control(self, msg: Message, payload: bytes, out: Batch) -> list[Message] | None:
        """A receipt, an unsend, a reaction or a 公告: checked against what it names, then
        applied. An unsend of a message not here gives the placeholder to keep instead."""
        if msg.mime == REACTION_MIME:
            target, name = read_reaction(payload)
            if not self._in_conv(target, msg.conv):
                raise VerificationError("a reaction to a message not in this chat")
            if self.store.extras.react(target, msg.sender, name):
                out.events.append(Reacted(id=target, conv=msg.conv, by=msg.sender, name=name))
            return None
        if msg.mime == ANNOUNCE_MIME:
            ann = Announced(conv=msg.conv, by=msg.sender, text=read_announcement(payload),
                            ts=msg.ts, id=msg.id)  # fmt: skip
            if self.store.extras.announce(ann):
                out.events.append(ann)
            return None
        if msg.mime == SETTINGS_MIME:
            rules = read_settings(payload)
            state = self.groups.state(msg.group) if msg.group is not None else None
            if state is None or not state.is_admin(msg.sender):
                raise VerificationError("only a group's admins may change its rules")
            ev = SettingsChanged(conv=msg.conv, by=msg.sender, unsend_s=rules.unsend_s, ts=msg.ts)
            if self.store.extras.set_settings(ev):
                out.events.append(ev)
            return None
        if msg.mime == RECEIPT_MIME:
            try:
                ids = [bytes(i) for i in _IDS.decode(payload)]
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                raise VerificationError("a receipt that does not list message ids") from None
            ours = [i for i in ids if self._in_conv(i, msg.conv)]
            if len(ours) != len(ids):
                raise VerificationError("a receipt for messages not in this chat")
            if msg.sender == self.me:  # read on another of our devices
                self.store.mark_read(ours)
                return None
            new = self.store.add_receipts(msg.sender, ours)
            if new:
                out.events.append(Receipt(conv=msg.conv, reader=msg.sender, ids=new))
            return None
        target = payload
        if len(target) != 16:
            raise VerificationError("an unsend that names no message")
        original = self.store.message(target)
        window_ms = self.store.extras.unsend_window(msg.conv) * 1000
        placeholder = None
        if original is None:
            self.store.tombstone(target, msg.sender)  # it may still be on its way
            sent_ms = wire.msg_id_time_ms(target)
            if 0 <= msg.ts - sent_ms <= window_ms:
                # the brokers purged it before it reached this device: "○○ 已收回訊息" shows
                # where it would have been, as on the devices that had it
                placeholder = Message(
                    id=target, conv=msg.conv, sender=msg.sender, to=msg.to, group=msg.group,
                    kind="text", text=None, verified=True, ts=sent_ms, outgoing=msg.outgoing,
                    read=True, unsent=True,
                )  # fmt: skip
        else:
            if original.sender != msg.sender or original.conv != msg.conv:
                raise VerificationError("only its sender may take a message back")
            if msg.ts - original.ts > window_ms:
                raise VerificationError("too late to take that message back")
            self.store.unsend(target)
        out.events.append(Unsent(id=target, conv=msg.conv, by=msg.sender))
        return [placeholder] if placeholder is not None else None

    def media_path(self, sha: bytes) -> str | None:
        if self.media_folder is None:
            return None
        path = self.media_folder / sha.hex()
        return str(path) if path.exists() else None

    def _in_conv(self, msg_id: bytes, conv: bytes) -> bool:
        m = self.store.message(msg_id)
        return m is not None and m.conv == conv

    def _open(
        self, env: wire.Deliver, body: wire.SealedBody | wire.MediaBody, *, history: bool
    ) -> Message:
        return self._open_with_payload(env, body, history=history)[0]

    def _open_with_payload(
        self, env: wire.Deliver, body: wire.SealedBody | wire.MediaBody, *, history: bool
    ) -> tuple[Message, bytes]:
        group = self.groups.state(env.group) if env.group is not None else None
        opened = open_body(
            env, body, me=self.me, keys=self.keyring, group=group,
            check_device=self.devices, history=history,
        )  # fmt: skip
        h = opened.header
        if h.mime == wire.MANIFEST_MIME and isinstance(body, wire.MediaBody):
            return self._media(env, opened), opened.payload
        text_like = h.mime.startswith("text/")
        control = h.mime in CONTROL_MIMES
        file = None if text_like or control else self.keep_media(opened.payload)
        # mentions name members only (a name outside the group is no one's to highlight)
        mentions = [fp for fp in h.mentions if group is not None and group.is_member(fp)]
        msg = Message(
            id=env.id, conv=opened.conv, sender=env.sender, to=list(env.to), group=env.group,
            kind="text" if text_like or control else "media",
            text=opened.payload.decode("utf-8", "replace") if text_like else None,
            verified=opened.verified, ts=h.ts_ms, outgoing=env.sender == self.me,
            mime=h.mime, file=file, read=env.sender == self.me, reply_to=h.reply_to,
            mentions=mentions, mention_all=h.mention_all and group is not None,
            lifetime_s=min(h.lifetime_s, LIFETIME_MAX_S),
        )  # fmt: skip
        return msg, opened.payload

    def _media(self, env: wire.Deliver, opened: Opened) -> Message:
        """A signed manifest: the message shows at once (with its thumbnail); the chunks
        are fetched when asked (`Client.fetch`), each checked against this manifest."""
        try:
            m = manifest_decode(opened.payload)
        except MediaError as exc:
            raise VerificationError(f"media refused: {exc.message}") from None
        h = opened.header
        have = self.media_path(m.sha256)
        if have is None and m.sticker and self.media_folder is not None:
            from tits.media.stickers import Shelf

            own = Shelf(self.media_folder.parent).image(m.sha256)  # our copy of the pack
            have = str(own) if own is not None else None
        thumb = None
        if m.thumb and self.media_folder is not None:  # so a chat can show it at once
            path = self.media_folder / "thumbs" / thumb_name(m)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(m.thumb)
                tmp.replace(path)
            thumb = str(path)
        return Message(
            id=env.id, conv=opened.conv, sender=env.sender, to=list(env.to), group=env.group,
            kind="media", text=None, verified=opened.verified, ts=h.ts_ms,
            outgoing=env.sender == self.me, mime=m.mime, file=have,
            read=env.sender == self.me, reply_to=h.reply_to, manifest=opened.payload,
            thumb=thumb,
        )  # fmt: skip

    def _history(self, env: wire.Deliver, body: wire.HistoryBody) -> list[Message]:
        """Earlier messages of a group a member passed on: each still sealed and signed by its
        own sender, so the one passing them on cannot forge or alter any."""
        state = self.groups.state(body.group)
        if state is None:
            raise NotYet("group", "history for a group we have not joined (yet)")
        if env.group != body.group or not state.is_member(env.sender):
            raise VerificationError("history from someone who is not a member")
        out = []
        for item in body.items:
            if self.store.seen(item.id):
                continue
            old = wire.Deliver(
                id=item.id, sender=item.sender, to=item.to, group=body.group, ts=item.ts
            )
            try:
                inner = wire.BODY_DECODER.decode(item.body)
                if not isinstance(inner, wire.SealedBody | wire.MediaBody):
                    continue
                msg = self._open(old, inner, history=True)
            except NotYet as exc:
                if exc.need in ("cert", "pubkey", "devices"):
                    raise  # hold the whole batch while its sender's device is looked up
                continue  # an epoch not shared with us: that part of the past stays closed
            except (TitsError, ValueError):
                continue
            msg.read = True
            out.append(msg)
        return out

    def _direct_key(self, env: wire.Deliver, body: wire.KeyBody) -> None:
        conv = conversation_of(env, self.me)
        if env.group is not None or body.group != conv:
            raise VerificationError("a session key for another conversation")
        self._need_key(env.sender)
        key = SessionKey.from_json(self.keyring.unwrap(body.wrapped, env.sender))
        if key.conversation != conv or key.epoch != body.epoch:
            raise VerificationError("the wrapped key does not match its message")
        if key.members and (self.me not in key.members or env.sender not in key.members):
            raise VerificationError("a session key for a conversation we are not in")
        self._learn_cert(env.sender, body.cert, body.cert_sig, body.cert_proof)
        self.keyring.accept(key, env.sender, self.clock(), current=False)

    def _need_key(self, fp: str) -> None:
        """A public key we must have to check a signature: looked up off the receive path."""
        if not self.identity.has_key(fp):
            if fp in self.unfindable:
                raise VerificationError(f"no public key for {fp[:16]} to check it with")
            raise NotYet("pubkey", f"looking up the key of {fp[:16]}", identity=fp)

    def _learn_cert(self, identity: str, cert: bytes, sig: bytes, proof: bytes) -> None:
        if cert:
            self.devices.learn(identity, cert, sig.decode("ascii", "replace"), proof)


def events_for_json(ev: Event, name: Callable[[str], str]) -> dict[str, object] | None:
    """What `recv --json` prints for an event (None: nothing for a script)."""
    if isinstance(ev, Shown):
        return ev.message.to_json(name(ev.message.sender))
    if isinstance(ev, GroupChanged):
        return ev.to_json(name(ev.actor))
    if isinstance(ev, Reacted | Announced | SettingsChanged):
        return ev.to_json(name(ev.by))
    if isinstance(ev, Refused):
        return {
            "kind": "refused",
            "id": ev.id.hex(),
            "from": ev.sender,
            "reason": ev.reason,
            "group": ev.group.hex() if ev.group else None,
        }
    return None
