"""Turning an outbox item into frames: the session key (made and wrapped if the conversation
has none for its members), then the sealed text or the signed media, split into Sends of at
most 256 recipients. May run gpg and the key server: the client calls it off the loop."""

from __future__ import annotations

import time
from collections.abc import Callable

from tits import wire
from tits.device import DeviceKey
from tits.errors import ConfigError
from tits.session import Envelope, SessionKey, direct_conversation_id, seal, sign_media

from .groups import MAX_GROUP_RECIPIENTS, Groups, chunks
from .keyring import Keyring
from .model import Message, Prepared, SendOptions
from .store import LocalStore, OutboxItem

FANOUT_BYTES = 16 << 20  # body × recipients a broker takes in one Send (its MAX_FANOUT_BYTES)


def recipients_per_send(payload_len: int) -> int:
    """Recipients in one Send: the most a group message may name, fewer for a body so big
    (a 2 GiB file's manifest is ~120 KB) that body × recipients would pass FANOUT_BYTES."""
    return max(1, min(MAX_GROUP_RECIPIENTS, FANOUT_BYTES // (payload_len + 2048)))


class Composer:
    def __init__(
        self,
        store: LocalStore,
        me: str,
        device: DeviceKey,
        certificate: tuple[bytes, str, bytes],
        keyring: Keyring,
        groups: Groups,
        ensure_key: Callable[[str], None],
        sendable: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.me = me
        self.device = device
        self.cert = certificate
        self.keyring = keyring
        self.groups = groups
        self.ensure_key = ensure_key
        self.sendable = sendable  # may a secure group send to this member now?
        self._serial = int(time.time() * 1000)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def prepare(self, item: OutboxItem) -> Prepared:
        if item.target.startswith("#"):
            return self._group(item, bytes.fromhex(item.target[1:]))
        return self._direct(item, item.target)

    def _direct(self, item: OutboxItem, peer: str) -> Prepared:
        conv = direct_conversation_id(self.me, peer)
        members = sorted({self.me, peer})
        now = time.time()
        key = self.keyring.for_sending(conv, members, now)
        if key is None:
            key = self.keyring.make(conv, members, secure=False, basis="", now=now)
        frames: list[tuple[bytes, bytes]] = []
        if peer not in self.store.announced(conv, key.epoch):
            self.ensure_key(peer)
            kb = wire.KeyBody(
                group=conv,
                epoch=key.epoch,
                wrapped=self.keyring.wrap(key.to_json(), [peer]),
                secure=False,
                cert=self.cert[0],
                cert_sig=self.cert[1].encode(),
                cert_proof=self.cert[2],
            )
            send = wire.Send(id=wire.new_msg_id(), sender=self.me, to=[peer])
            frames.append((wire.encode(send), wire.encode(kb)))
            self.store.mark_announced(conv, key.epoch, [peer])
        frames += self._bodies(item, key, [peer], None)
        return Prepared(frames=frames, message=self._message(item, conv, [peer], None))

    def _group(self, item: OutboxItem, group: bytes) -> Prepared:
        state = self.groups.state(group)
        if state is None or not state.is_member(self.me):
            raise ConfigError("you are not a member of this group")
        others = sorted(set(state.members) - {self.me})
        if not others:
            raise ConfigError("nobody else is in this group yet: invite someone first")
        skipped: list[str] = []
        if state.secure:
            skipped = [fp for fp in others if not self.sendable(fp)]
            others = [fp for fp in others if fp not in skipped]
            if not others:
                raise ConfigError(
                    "no member of this secure group is confirmed with an unchanged key: "
                    "compare fingerprints, then `tits contact confirm`"
                )
        key = self.keyring.for_sending(group, list(state.members), time.time())
        frames: list[tuple[bytes, bytes]] = []
        if key is None:  # after a leave, a fork or a rotation: a key for the members now
            change = self.groups.rekey(group)
            frames += change.frames
            key = self.keyring.for_sending(group, list(state.members), time.time())
            assert key is not None
        frames += self._bodies(item, key, others, group)
        if key.secure:
            self.keyring.sent_with(key)
        message = self._message(item, group, others, group)
        return Prepared(frames=frames, message=message, skipped=skipped)

    def _bodies(
        self, item: OutboxItem, key: SessionKey, to: list[str], group: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        out = []
        for i, part in enumerate(chunks(to, recipients_per_send(len(item.payload)))):
            # the first part carries the item's id: the message the user sees
            msg_id = item.id if i == 0 else wire.new_msg_id()
            env = Envelope(msg_id, self.me, part, group)
            if item.kind != "media":  # texts, and receipts, unsends, reactions (sealed alike)
                opts = item.options or SendOptions()
                body = seal(
                    key, self.device, env, item.payload, serial=self._next_serial(),
                    mime=item.mime, reply_to=item.reply_to, lifetime_s=opts.lifetime_s,
                    mentions=opts.mentions if group is not None else None,
                    mention_all=opts.mention_all and group is not None,
                )  # fmt: skip
            else:
                body = sign_media(
                    self.device, env, item.payload, item.mime, serial=self._next_serial()
                )
            # an unsend names its message to the brokers too: they drop its waiting copies
            purge = item.payload if item.kind == "unsend" and len(item.payload) == 16 else None
            send = wire.Send(id=msg_id, sender=self.me, to=part, group=group, purge=purge)
            out.append((wire.encode(send), body))
        return out

    def _message(
        self, item: OutboxItem, conv: bytes, to: list[str], group: bytes | None
    ) -> Message | None:
        if item.kind not in ("text", "media"):
            return None  # a receipt or an unsend: nothing to show
        text = item.payload.decode("utf-8", "replace") if item.kind == "text" else None
        opts = item.options or SendOptions()
        mime, manifest = item.mime, None
        if item.mime == wire.MANIFEST_MIME:
            manifest = item.payload
            mime = wire.MANIFEST_DECODER.decode(manifest).mime
        return Message(
            id=item.id, conv=conv, sender=self.me, to=to, group=group,
            kind="text" if item.kind == "text" else "media", text=text, verified=True,
            ts=int(item.created * 1000), outgoing=True, mime=mime, read=True,
            reply_to=item.reply_to, lifetime_s=opts.lifetime_s,
            mentions=opts.mentions if group is not None else [],
            mention_all=opts.mention_all and group is not None, manifest=manifest,
        )  # fmt: skip
