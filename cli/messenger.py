"""The client's messaging logic: session keys, sealing and opening, dedup, acknowledgements.

Session keys ("sender keys"): each user makes their own key for a conversation (a direct chat's
id is `direct_conversation_id(a, b)`, a group's is its group id) and sends it to each member
once, as a `KeyBody` message ahead of the first text: the key wrapped with GnuPG for that
member and signed by the sender, plus the sending device's certificate. A member files it under
(conversation, epoch, sender) and opens that sender's texts with it. Epochs are random 32-bit
numbers, so two devices of one user never collide.

Receiving: a delivery is checked, recorded in the local store (seen ids, what was shown) and
only then acknowledged. A body whose signature fails, or that names a device of somebody
else, is refused and never shown; a body whose device certificate cannot be found anywhere is
shown as *not verified* (refused in a secure chat).
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from tits import wire
from tits.client import Connection, Incoming
from tits.device import CertificateCache
from tits.errors import (
    ConfigError,
    DecryptionError,
    IdentityError,
    KeyServerError,
    TitsError,
    VerificationError,
)
from tits.home import Home
from tits.session import (
    Envelope,
    SessionKey,
    check_media,
    direct_conversation_id,
    open_sealed,
    seal,
    sign_media,
)

from .store import LocalStore, Shown

log = structlog.get_logger("tits.client")

KEY_WAIT_S = 120.0  # a text may arrive before its session key: hold it this long (by its ts)
PING_S = 5.0  # while following: how often to check the session is still logged in


@dataclass(frozen=True)
class Message:
    id: bytes
    sender: str
    sender_name: str
    to: list[str]
    group: bytes | None
    kind: str
    text: str | None
    verified: bool
    ts: int  # Unix milliseconds, from the signed header (or the broker, if unverifiable)
    mime: str = "text/plain"
    file: str | None = None  # media: where the content was kept (HOME/media/<sha256>)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id.hex(),
            "from": self.sender,
            "from_name": self.sender_name,
            "to": self.to,
            "group": self.group.hex() if self.group else None,
            "kind": self.kind,
            "text": self.text,
            "verified": self.verified,
            "ts": self.ts,
            "mime": self.mime,
            "file": self.file,
        }


@dataclass
class Refusal:
    id: bytes
    sender: str
    reason: str


class KeyNotYet(DecryptionError):
    """A text whose session key has not arrived (yet)."""


@dataclass
class Messenger:
    home: Home
    broker: str | None = None
    keyserver: str | None = None
    refused: list[Refusal] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.require()
        self.me = self.home.fingerprint
        self.identity = self.home.identity
        self.broker = self.broker or self.home.config.get("broker")
        self.keyserver = self.keyserver or self.home.config.get("keyserver")
        self.store = LocalStore(self.home.path)
        self.certs = CertificateCache(self.identity)
        self._conn: Connection | None = None
        self._names: dict[str, str] = {}
        self._serial = int(time.time() * 1000)
        self.ping_s = PING_S
        self.held: set[bytes] = set()  # ids of the last `process` waiting for their key

    # -- connection ---------------------------------------------------------------------------

    def connection(self, timeout: float = 15.0) -> Connection:
        if self._conn is None:
            if not self.broker:
                raise ConfigError(
                    "no broker: give --broker URL, or set one with `tits init --broker URL`"
                )
            _, cert_bytes, sig = self.home.certificate
            listed = bool(self.home.config.get("listed", True))
            conn = Connection(self.broker, self.identity, self.me, cert_bytes, sig, listed=listed)
            try:
                conn.login(timeout)
            except BaseException:
                conn.close(bye=False)
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.store.close()

    def __enter__(self) -> Messenger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys of other people ------------------------------------------------------------------

    def _keyclient(self) -> Any | None:
        if not self.keyserver:
            return None
        from tits.keyclient import KeyClient

        return KeyClient(str(self.keyserver))

    def ensure_public_key(self, fp: str) -> None:
        if self.identity.has_key(fp):
            return
        kc = self._keyclient()
        if kc is None:
            raise IdentityError(
                f"no public key for {fp}: fetch it (`tits key fetch {fp}`) or set a key server"
            )
        imported = self.identity.import_public(kc.get_key(fp))
        if fp not in imported:
            raise IdentityError(f"the key server did not return {fp}")

    def name_of(self, fp: str) -> str:
        if fp in self._names:
            return self._names[fp]
        name = ""
        try:
            from tits.contacts import Contacts

            names = Contacts(self.home.path).names_for(fp)
            name = names[0] if names else ""
        except (ImportError, TitsError):
            pass
        if not name:
            try:
                info = self.identity.key_info(fp)
                name = info.name if info else ""
            except TitsError:
                name = ""
        if fp == self.me and not name:
            name = str(self.home.config.get("name", ""))
        self._names[fp] = name or fp[:16]
        return self._names[fp]

    def _ensure_cert(self, identity: str, device: str) -> bool:
        """Is (identity, device) a checked, current device? False if no certificate for it can
        be found; raises if the device belongs to someone else or is revoked or expired."""
        if self.certs.get(identity, device) is not None:
            self.certs.check_current(self.certs.get(identity, device))  # type: ignore[arg-type]
            return True
        if identity == self.me:
            cert, cert_bytes, sig = self.home.certificate
            if cert.device == device:
                self.certs.add(cert_bytes, sig, expected_identity=identity)
                return True
        row = self.store.cert(identity, device)
        if row is not None:
            self.certs.add(row[0], row[1], expected_identity=identity)
            return True
        owner = self.store.device_owner(device)
        if owner is not None and owner != identity:
            raise VerificationError(f"device {device} belongs to {owner[:16]}, not {identity[:16]}")
        kc = self._keyclient()
        if kc is not None:
            try:
                for d in kc.devices(identity):
                    if d.get("device") != device:
                        continue
                    if d.get("revoked"):
                        raise VerificationError(f"device {device} of {identity[:16]} is revoked")
                    cert_bytes = base64.b64decode(d["certificate"])
                    cert = self.certs.add(cert_bytes, d["signature"], expected_identity=identity)
                    self.store.put_cert(identity, cert.device, cert_bytes, d["signature"])
                    return cert.device == device
            except (KeyServerError, KeyError, ValueError, TypeError) as exc:
                log.info("client.device_lookup_failed", why=str(exc)[:120])
        return False

    # -- sending ------------------------------------------------------------------------------

    def _conversation(self, to: list[str], group: bytes | None) -> bytes:
        if group is not None:
            return group
        if len(to) != 1:
            raise ConfigError("a direct message has exactly one recipient")
        return direct_conversation_id(self.me, to[0])

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def prepare_text(
        self, to: list[str], text: str, group: bytes | None = None
    ) -> tuple[list[tuple[wire.Send, bytes]], list[str], SessionKey, Envelope]:
        """The messages to send for one text: key messages for members our key has not yet
        reached, then the sealed text."""
        return self.prepare(to, text.encode(), "text/plain", group)

    def prepare(
        self, to: list[str], payload: bytes, mime: str, group: bytes | None = None
    ) -> tuple[list[tuple[wire.Send, bytes]], list[str], SessionKey, Envelope]:
        """Key messages for members our key (and this device's certificate) has not yet
        reached, then the body: a text sealed with the session key, or media, only signed."""
        conv = self._conversation(to, group)
        key = self.store.sending_key(conv, self.me)
        if key is None:
            key = SessionKey.generate(
                conv, epoch=random.randrange(1, 1 << 32), members=sorted({self.me, *to})
            )
            self.store.put_key(key, self.me)
        items: list[tuple[wire.Send, bytes]] = []
        missing = [m for m in dict.fromkeys(to) if m not in self.store.announced(conv, key.epoch)]
        if missing:
            _, cert_bytes, sig = self.home.certificate
            for member in missing:
                self.ensure_public_key(member)
                kb = wire.KeyBody(
                    group=conv,
                    epoch=key.epoch,
                    wrapped=key.wrap(self.identity, self.me, member),
                    secure=key.secure,
                    cert=cert_bytes,
                    cert_sig=sig.encode(),
                )
                send = wire.Send(id=wire.new_msg_id(), sender=self.me, to=[member], group=group)
                items.append((send, wire.encode(kb)))
        env = Envelope(wire.new_msg_id(), self.me, list(to), group)
        if mime.startswith("text/"):
            body = seal(key, self.home.device, env, payload, serial=self._next_serial(), mime=mime)
        else:
            body = sign_media(self.home.device, env, payload, mime, serial=self._next_serial())
        items.append((wire.Send(id=env.id, sender=self.me, to=list(to), group=group), body))
        return items, missing, key, env

    def send_media(
        self,
        to: list[str],
        payload: bytes,
        mime: str,
        group: bytes | None = None,
        timeout: float = 30.0,
    ) -> bytes:
        """Send media (signed, never encrypted); returns its id once the broker stored it."""
        if len(payload) > wire.MAX_BODY - 4096:
            raise ConfigError(f"{len(payload)} bytes is too big to send inline (max ~1 MiB)")
        items, missing, key, env = self.prepare(to, payload, mime, group)
        self.connection(timeout).send_and_wait(items, timeout=timeout)
        if missing:
            self.store.mark_announced(key.conversation, key.epoch, missing)
        path = self._keep_media(payload)
        shown = Shown(env.id, self.me, list(to), group, "media", f"[{mime}] {path}", True,
                      time.time_ns() // 1_000_000, outgoing=True)  # fmt: skip
        self.store.record([shown])
        return env.id

    def _keep_media(self, payload: bytes) -> Path:
        """Media lives in HOME/media/<sha256>, so the same picture is kept once."""
        folder = self.home.path / "media"
        folder.mkdir(exist_ok=True)
        path = folder / wire.sha256(payload).hex()
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(payload)
            tmp.replace(path)
        return path

    def send_text(
        self, to: list[str], text: str, group: bytes | None = None, timeout: float = 30.0
    ) -> bytes:
        """Send one text; returns its id once the broker has stored it."""
        items, missing, key, env = self.prepare_text(to, text, group)
        self.connection(timeout).send_and_wait(items, timeout=timeout)
        if missing:
            self.store.mark_announced(key.conversation, key.epoch, missing)
        self.store.record(
            [
                Shown(
                    env.id,
                    self.me,
                    list(to),
                    group,
                    "text",
                    text,
                    True,
                    time.time_ns() // 1_000_000,
                    outgoing=True,
                )
            ]
        )
        return env.id

    # -- receiving ----------------------------------------------------------------------------

    def receive(
        self,
        on_message: Callable[[Message], None],
        *,
        follow: bool = False,
        timeout: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> int:
        """Drain what waits (or, with `follow`, keep listening); returns how many were shown."""
        conn = self.connection(timeout or 15.0)
        pending = conn.welcome.pending if conn.welcome is not None else 0
        settle = conn.welcome.settle_ms / 1000 if conn.welcome is not None else 0.0
        start = time.monotonic()
        deadline = start + timeout if timeout is not None else None
        received = shown = 0
        last_ping = last_seen = start
        while True:
            now = time.monotonic()
            if not follow and received >= pending and now - last_seen >= settle:
                break  # drained, and nothing more from elsewhere in the cloud for a while
            if until is not None and until():
                break
            if deadline is not None and now >= deadline:
                break
            wait = 0.25 if deadline is None else max(0.0, min(0.25, deadline - now))
            batch = conn.poll(wait)
            deliveries = [i for i in batch if isinstance(i, Incoming)]
            if deliveries:
                messages = self.process(deliveries)
                conn.ack(self.ackable(deliveries))
                received += len(deliveries)
                last_seen = time.monotonic()
                for m in messages:
                    on_message(m)
                shown += len(messages)
            if follow and time.monotonic() - last_ping >= self.ping_s:
                conn.ping()
                last_ping = time.monotonic()
        return shown

    def ackable(self, deliveries: list[Incoming]) -> list[bytes]:
        """The ids to acknowledge after `process`: all but texts held for their key."""
        return [d.envelope.id for d in deliveries if d.envelope.id not in self.held]

    def process(self, deliveries: list[Incoming]) -> list[Message]:
        """Check deliveries and record them as seen; the caller acknowledges `ackable` after.

        Across a cloud, a text can overtake the message carrying its session key (a relay
        died and the key's copy waits for its retry). Such a text is *held*: not shown, not
        refused, not acknowledged, so the broker delivers it again; only one older than
        KEY_WAIT_S is refused. Key messages in a batch are opened before the texts."""
        out: list[Message] = []
        seen_only: list[bytes] = []
        batch_ids: set[bytes] = set()
        held: list[Incoming] = []
        self.held = set()
        for inc in deliveries:
            env = inc.envelope
            if env.id in batch_ids or self.store.seen(env.id):
                continue
            batch_ids.add(env.id)
            try:
                msg = self._open(env, inc.body)
            except KeyNotYet as exc:
                if time.time() * 1000 - env.ts < KEY_WAIT_S * 1000:
                    held.append(inc)
                    continue
                self.refused.append(Refusal(env.id, env.sender, exc.message))
                msg = None
            except (TitsError, ValueError) as exc:
                reason = exc.message if isinstance(exc, TitsError) else str(exc)
                self.refused.append(Refusal(env.id, env.sender, reason))
                log.warning("client.refused", sender=env.sender[:16], why=reason[:200])
                msg = None
            if msg is None:
                seen_only.append(env.id)
            else:
                out.append(msg)
        for inc in held:  # its key may have come later in this same batch
            try:
                msg = self._open(inc.envelope, inc.body)
            except KeyNotYet:
                self.held.add(inc.envelope.id)
                log.info("client.held_for_key", sender=inc.envelope.sender[:16])
                continue
            except (TitsError, ValueError) as exc:
                reason = exc.message if isinstance(exc, TitsError) else str(exc)
                self.refused.append(Refusal(inc.envelope.id, inc.envelope.sender, reason))
                msg = None
            if msg is None:
                seen_only.append(inc.envelope.id)
            else:
                out.append(msg)
        out.sort(key=lambda m: m.ts)
        self.store.record(
            [
                Shown(
                    m.id,
                    m.sender,
                    m.to,
                    m.group,
                    m.kind,
                    m.text if m.text is not None else f"[{m.mime}] {m.file}",
                    m.verified,
                    m.ts,
                )
                for m in out
            ],  # fmt: skip
            seen_only,
        )
        return out

    def _open(self, env: wire.Deliver, raw: bytes) -> Message | None:
        if len(env.to) > 1 and env.group is None:
            raise VerificationError("a direct message with several recipients")
        if self.me not in env.to:
            raise VerificationError("delivered to me but not addressed to me")
        body = wire.BODY_DECODER.decode(raw)
        if isinstance(body, wire.KeyBody):
            self._accept_key(env, body)
            return None
        envelope = Envelope(env.id, env.sender, list(env.to), env.group)
        conv = env.group if env.group is not None else direct_conversation_id(env.sender, self.me)
        if isinstance(body, wire.SealedBody):
            key = self.store.key(conv, body.epoch, env.sender)
            if key is None:
                raise KeyNotYet(f"no session key from {env.sender[:16]} for this text")
            plain = key.decrypt(body.nonce, body.ciphertext, envelope.ad(key.epoch))
            signed = wire.SIGNED_DECODER.decode(plain)
            if self._ensure_cert(env.sender, signed.device):
                opened = open_sealed(body, key, envelope, self.certs)
                header, payload, verified = opened.header, opened.payload, True
            else:
                if key.secure:
                    raise VerificationError("unverifiable text in a secure chat")
                header, payload = wire.HEADER_PAYLOAD_DECODER.decode(signed.header_payload)
                if wire.sha256(payload) != header.checksum:
                    raise VerificationError("payload checksum does not match its header")
                verified = False
            text = payload.decode("utf-8", "replace") if header.mime.startswith("text/") else None
            kind = "text" if header.mime.startswith("text/") else "media"
            file = None
        else:  # MediaBody: signed, never encrypted
            if self._ensure_cert(env.sender, body.signed.device):
                opened = check_media(body, envelope, self.certs)
                header, payload, verified = opened.header, opened.payload, True
            else:  # nobody vouches for that device: shown, as not verified
                header, payload = wire.HEADER_PAYLOAD_DECODER.decode(body.signed.header_payload)
                if wire.sha256(payload) != header.checksum or header.checksum != body.sha256:
                    raise VerificationError("media does not match its name")
                verified = False
            file = str(self._keep_media(payload))
            text, kind = None, "media"
        return Message(
            env.id,
            env.sender,
            self.name_of(env.sender),
            list(env.to),
            env.group,
            kind,
            text,
            verified,
            header.ts_ms,
            header.mime,
            file,
        )

    def _accept_key(self, env: wire.Deliver, body: wire.KeyBody) -> None:
        conv = env.group if env.group is not None else direct_conversation_id(env.sender, self.me)
        if body.group != conv:
            raise VerificationError("a session key for another conversation")
        self.ensure_public_key(env.sender)
        key = SessionKey.unwrap(self.identity, body.wrapped, env.sender)
        if key.conversation != conv or key.epoch != body.epoch:
            raise VerificationError("the wrapped key does not match its message")
        if key.members and (self.me not in key.members or env.sender not in key.members):
            raise VerificationError("a session key for a conversation we are not in")
        if body.cert:
            cert = self.certs.add(body.cert, body.cert_sig, expected_identity=env.sender)
            self.store.put_cert(env.sender, cert.device, body.cert, body.cert_sig.decode())
        self.store.put_key(key, env.sender)
