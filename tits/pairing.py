"""Pairing a new device with an account: the code, the messages and both ends' state machines.

No sockets here (`tits/client/linking.py` carries the messages through a broker), so a test
can stand in the middle and play a hostile broker. The decision and its threat model are in
docs/devices.md; in short:

The linking device shows a **code** (text and QR) that never touches a broker: the user
fingerprint, the broker and key server to reach, the rendezvous fingerprint the linking device
waits at, a one-time id, a 128-bit secret and the moment it expires. The new device answers at
the rendezvous; every message before the channel is keyed carries an HMAC under the secret, so
a broker (which relays every byte but never sees the code) cannot answer in either end's place.
The new device commits to its X25519 key before it sees the linking device's and reveals it
after, and both ends show a **short code** (SAS, six digits) derived from the transcript: whoever
learnt the pairing code too (a photo of the QR) and sat in the middle would have to match six
random digits that neither of their keys could choose, and the person sees two different codes.

    new device (N)                                    linking device (A)
    Join(id, commit=H(n_x‖device key‖name), mac)  →
                                                  ←   Offer(id, a_x, mac)
    Reveal(id, n_x, device key, name, mac)        →   both: K = HKDF(X25519, salt=secret)
    [person compares the SAS on both screens]
    Sealed(confirm, history=none|30d|all,         →
           resume=an earlier pairing's archive
           and the chunks held of it)
                                                  ←   Sealed(bundle): identity, certificate,
                                                      the history's size and SHA-256 (and
                                                      each chunk's: tits/client/resume.py)
                                                  ←   Sealed(chunk) …  (tits/client/history.py)
    Sealed(want: chunks that did not come)        →   (resent)
    Sealed(done)                                  →

The bundle (identity key, the new device's certificate signed by the identity, settings) is
only sent after both people confirmed, under K (ChaCha20-Poly1305, a counter nonce per
direction), and the new device applies nothing from a message that does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from msgspec import Meta, Struct

from .errors import TitsError

CODE_PREFIX = "tits-link:"
CODE_TTL_S = 300  # a code works for five minutes, unless the link command says otherwise
MAX_CODE_TTL_S = 900
SECRET_BYTES = 16
SAS_DIGITS = 6
MAX_BUNDLE = 256 << 10
MAX_HAVE_RANGES = 4096
_INFO = b"tits-pairing-v1"

Bytes16 = Annotated[bytes, Meta(min_length=16, max_length=16)]
Bytes32 = Annotated[bytes, Meta(min_length=32, max_length=32)]
Fpr = Annotated[str, Meta(pattern=r"^[0-9A-F]{40}\Z")]


class PairingError(TitsError):
    """A pairing that cannot go on: a wrong, expired or used code, or a message that does
    not check. Nothing from it has been applied."""


# -- the code ------------------------------------------------------------------------------


class Code(Struct, array_like=True, forbid_unknown_fields=False):
    """What the linking device shows; everything the new device needs to start."""

    v: int
    id: Bytes16
    secret: Bytes16
    user: Fpr  # whose account the new device joins
    rendezvous: Fpr  # where the linking device waits (a throwaway key)
    broker: Annotated[str, Meta(max_length=256)]
    keyserver: Annotated[str, Meta(max_length=256)]
    expires: int

    def text(self) -> str:
        raw = msgspec.msgpack.encode(self)
        return CODE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str, now: float | None = None) -> Code:
        body = text.strip().removeprefix(CODE_PREFIX)
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            code = msgspec.msgpack.decode(raw, type=cls)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
            raise PairingError(
                "not a pairing code (copy the whole code that `tits device link` shows)"
            ) from None
        if code.v != 1:
            raise PairingError(f"pairing code version {code.v} is not supported")
        if (time.time() if now is None else now) >= code.expires:
            raise PairingError("the pairing code has expired; run `tits device link` again")
        return code


def new_code(
    user: str, rendezvous: str, broker: str, keyserver: str, ttl_s: float = CODE_TTL_S
) -> Code:
    ttl = min(max(ttl_s, 10), MAX_CODE_TTL_S)
    return Code(
        1, os.urandom(16), os.urandom(SECRET_BYTES), user, rendezvous, broker, keyserver,
        int(time.time() + ttl),
    )  # fmt: skip


# -- messages between the two devices (bodies the broker relays) -----------------------------


class _Pair(Struct, tag_field="p", forbid_unknown_fields=False, kw_only=True):
    id: Bytes16


class Join(_Pair, tag="join"):
    commit: Bytes32
    mac: Bytes32


class Offer(_Pair, tag="offer"):
    key: Bytes32
    mac: Bytes32


class Reveal(_Pair, tag="reveal"):
    key: Bytes32
    device_key: Bytes32
    device_name: Annotated[str, Meta(min_length=1, max_length=64)]
    mac: Bytes32


class Sealed(_Pair, tag="sealed"):
    n: Annotated[int, Meta(ge=0, lt=1 << 32)]
    box: Annotated[bytes, Meta(max_length=MAX_BUNDLE + 1024)]


class Refuse(_Pair, tag="refuse"):
    """Not authenticated (a broker can forge one, as it can drop everything): shown, never
    acted on beyond giving up."""

    reason: Annotated[str, Meta(max_length=200)]


PairMsg = Join | Offer | Reveal | Sealed | Refuse
_decoder = msgspec.msgpack.Decoder(PairMsg)


def encode(msg: PairMsg) -> bytes:
    return msgspec.msgpack.encode(msg)


def decode(data: bytes) -> PairMsg:
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PairingError(f"not a pairing message ({exc})") from None


# what travels inside `Sealed`
class Confirm(Struct, tag="confirm", tag_field="s", forbid_unknown_fields=False):
    history: Annotated[str, Meta(pattern=r"^(none|30d|all)\Z")] = "all"  # what the new one wants
    # a transfer that broke off in an earlier pairing (tits/client/resume.py): the archive's
    # SHA-256, and the chunks the new device holds whole, as [start, end) ranges
    resume: Annotated[bytes, Meta(max_length=32)] = b""
    have: Annotated[list[tuple[int, int]], Meta(max_length=MAX_HAVE_RANGES)] = []


class Bundle(Struct, tag="bundle", tag_field="s", forbid_unknown_fields=False, kw_only=True):
    fingerprint: Fpr
    secret_key: Annotated[str, Meta(max_length=64 << 10)]  # armored, see docs/devices.md
    cert: Annotated[bytes, Meta(max_length=4096)]
    cert_sig: Annotated[str, Meta(max_length=8192)]
    settings: dict[str, str | bool] = {}  # name, email, broker, keyserver, listed, lang
    history_chunks: int = 0  # chunks that follow (tits/client/history.py); 0: none
    history_bytes: int = 0
    history_sha256: bytes = b""
    # each chunk's SHA-256, concatenated (b"" past resume.MAX_HASHED chunks): checked as each
    # comes, and what chunks kept from an earlier pairing must match
    history_chunk_sha: Annotated[bytes, Meta(max_length=32 * 4096)] = b""


class Chunk(Struct, tag="chunk", tag_field="s"):
    index: Annotated[int, Meta(ge=0, lt=1 << 24)]
    data: Annotated[bytes, Meta(max_length=MAX_BUNDLE)]


class Want(Struct, tag="want", tag_field="s"):
    """The new device asks again for chunks that did not come (a transfer resumed)."""

    indexes: Annotated[list[int], Meta(max_length=1024)]


class Done(Struct, tag="done", tag_field="s"):
    pass


Inner = Confirm | Bundle | Done | Chunk | Want
_inner_decoder = msgspec.msgpack.Decoder(Inner)


def _mac(secret: bytes, *parts: bytes) -> bytes:
    h = hmac.new(secret, _INFO, hashlib.sha256)
    for p in parts:
        h.update(len(p).to_bytes(4, "big") + p)
    return h.digest()


def _commit(key: bytes, device_key: bytes, name: str) -> bytes:
    return hashlib.sha256(_INFO + b"commit" + key + device_key + name.encode()).digest()


def _raw(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


@dataclass
class Channel:
    """The keyed channel both ends derive once the keys are out; `sas` is what people compare."""

    key: bytes
    sas: str
    initiator: bool  # the new device: its nonces start with 0, the linking device's with 1
    _sent: int = 0
    _seen: set[int] = field(default_factory=set)

    @classmethod
    def derive(
        cls, mine: X25519PrivateKey, theirs: bytes, code: Code, transcript: bytes, initiator: bool
    ) -> Channel:
        shared = mine.exchange(X25519PublicKey.from_public_bytes(theirs))
        okm = HKDF(hashes.SHA256(), 64, code.secret, _INFO + transcript).derive(shared)
        number = int.from_bytes(okm[32:40], "big") % 10**SAS_DIGITS
        digits = f"{number:0{SAS_DIGITS}d}"
        return cls(okm[:32], f"{digits[:3]} {digits[3:]}", initiator)

    def _nonce(self, n: int, from_initiator: bool) -> bytes:
        return (b"\0" if from_initiator else b"\1") + n.to_bytes(11, "big")

    def seal(self, pid: bytes, inner: Inner) -> Sealed:
        n = self._sent
        self._sent += 1
        box = ChaCha20Poly1305(self.key).encrypt(
            self._nonce(n, self.initiator), msgspec.msgpack.encode(inner), pid
        )
        return Sealed(id=pid, n=n, box=box)

    def open(self, msg: Sealed) -> Inner:
        if msg.n in self._seen:
            raise PairingError("a pairing message came twice (replayed)")
        try:
            plain = ChaCha20Poly1305(self.key).decrypt(
                self._nonce(msg.n, not self.initiator), msg.box, msg.id
            )
            inner = _inner_decoder.decode(plain)
        except (InvalidTag, msgspec.DecodeError, msgspec.ValidationError):
            raise PairingError("a pairing message does not open: someone is in between") from None
        self._seen.add(msg.n)
        return inner


# -- the two ends --------------------------------------------------------------------------

State = Literal["waiting", "offered", "keyed", "confirmed", "sent", "done", "failed"]


class LinkSide:
    """The device that has the identity. Inputs: `on_message` (what arrived at the rendezvous,
    with the sender the broker vouches for) and `confirm` (the person said the SAS matches).
    Outputs: messages to send to `peer`."""

    def __init__(self, code: Code) -> None:
        self.code = code
        self.state: State = "waiting"
        self.peer: str | None = None  # the new device's rendezvous fingerprint
        self.device_key: bytes | None = None
        self.device_name = ""
        self.channel: Channel | None = None
        self._x = X25519PrivateKey.generate()
        self._commit = b""
        self._person_ok = False
        self._peer_ok = False
        self.history = "all"  # what the new device asked for (in its sealed confirmation)
        self.wanted: list[int] = []  # chunks it asked for again
        self.resume = b""  # the archive it holds part of (an earlier pairing's), and which
        self.have: list[tuple[int, int]] = []  # chunks: its sealed confirmation says so

    def on_message(self, sender: str, data: bytes) -> list[PairMsg]:
        """What to send back to `sender`; raises `PairingError` only for our own peer's
        messages that do not check (a stranger's are answered with `Refuse` or dropped)."""
        try:
            msg = decode(data)
        except PairingError:
            return []
        if msg.id != self.code.id:
            return []  # another pairing's (or garbage): not ours to answer
        if time.time() >= self.code.expires and self.state in ("waiting", "offered"):
            return [Refuse(id=msg.id, reason="expired")]
        if isinstance(msg, Join):
            if self.peer is not None:
                # used once: the first join that checks owns the code
                return [] if sender == self.peer else [Refuse(id=msg.id, reason="used")]
            if not hmac.compare_digest(
                msg.mac, _mac(self.code.secret, b"join", msg.id, msg.commit, sender.encode())
            ):
                return []  # no secret: a guess or a broker; silence teaches it nothing
            self.peer, self._commit, self.state = sender, msg.commit, "offered"
            key = _raw(self._x)
            mac = _mac(self.code.secret, b"offer", msg.id, key, msg.commit)
            return [Offer(id=msg.id, key=key, mac=mac)]
        if sender != self.peer:
            return []
        if isinstance(msg, Reveal) and self.state == "offered":
            good = hmac.compare_digest(
                msg.mac,
                _mac(self.code.secret, b"reveal", msg.id, msg.key, msg.device_key,
                     msg.device_name.encode()),
            ) and hmac.compare_digest(
                self._commit, _commit(msg.key, msg.device_key, msg.device_name)
            )  # fmt: skip
            if not good:
                self.state = "failed"
                raise PairingError("the new device's keys do not match what it committed to")
            self.device_key, self.device_name = msg.device_key, msg.device_name
            self.channel = Channel.derive(
                self._x, msg.key, self.code, self._transcript(msg), initiator=False
            )
            self.state = "keyed"
            return []
        if isinstance(msg, Sealed) and self.channel is not None:
            inner = self.channel.open(msg)
            if isinstance(inner, Confirm):
                self._peer_ok = True
                self.history = inner.history
                self.resume, self.have = inner.resume, inner.have
                if self._person_ok:
                    self.state = "confirmed"
            elif isinstance(inner, Done) and self.state == "sent":
                self.state = "done"
            elif isinstance(inner, Want) and self.state == "sent":
                self.wanted.extend(inner.indexes)
            return []
        return []

    def _transcript(self, reveal: Reveal) -> bytes:
        return (
            self.code.id + _raw(self._x) + reveal.key + reveal.device_key
            + reveal.device_name.encode()
        )  # fmt: skip

    @property
    def sas(self) -> str | None:
        return self.channel.sas if self.channel else None

    def confirm(self) -> None:
        """The person compared the short codes and they match."""
        if self.channel is None:
            raise PairingError("nothing to confirm yet")
        self._person_ok = True
        if self._peer_ok:
            self.state = "confirmed"

    def bundle(self, bundle: Bundle) -> Sealed:
        """The sealed bundle, once both people confirmed."""
        if self.state != "confirmed" or self.channel is None:
            raise PairingError("both devices must confirm the short code first")
        self.state = "sent"
        return self.channel.seal(self.code.id, bundle)

    def seal_more(self, inner: Inner) -> Sealed:
        if self.state not in ("sent", "done") or self.channel is None:
            raise PairingError("the bundle goes first")
        return self.channel.seal(self.code.id, inner)


class JoinSide:
    """The new device. `start` → Join; `on_message` takes the linking device's answers;
    `confirm` once the person accepted the SAS → Sealed(confirm); the bundle comes back as
    `self.bundle`."""

    def __init__(self, code: Code, me: str, device_key: bytes, device_name: str) -> None:
        self.code = code
        self.me = me  # our rendezvous fingerprint, as the broker names us to the other end
        self.device_key = device_key
        self.device_name = device_name
        self.state: State = "waiting"
        self.channel: Channel | None = None
        self.bundle: Bundle | None = None
        self.extra: list[Inner] = []
        self._x = X25519PrivateKey.generate()
        self._commit = _commit(_raw(self._x), device_key, device_name)

    def start(self) -> Join:
        mac = _mac(self.code.secret, b"join", self.code.id, self._commit, self.me.encode())
        return Join(id=self.code.id, commit=self._commit, mac=mac)

    def on_message(self, sender: str, data: bytes) -> list[PairMsg]:
        if sender != self.code.rendezvous:
            return []  # only the linking device named in the code speaks here
        try:
            msg = decode(data)
        except PairingError:
            return []  # garbage (a broker's doing): nothing to act on
        if msg.id != self.code.id:
            return []
        if isinstance(msg, Refuse):
            self.state = "failed"
            reasons = {
                "used": "this pairing code was already used by another device",
                "expired": "the pairing code has expired; run `tits device link` again",
            }
            raise PairingError(reasons.get(msg.reason, f"the linking device refused: {msg.reason}"))
        if isinstance(msg, Offer) and self.state == "waiting":
            if not hmac.compare_digest(
                msg.mac, _mac(self.code.secret, b"offer", msg.id, msg.key, self._commit)
            ):
                self.state = "failed"
                raise PairingError(
                    "the answer is not from the linking device: someone is in between"
                )
            mine = _raw(self._x)
            transcript = self.code.id + msg.key + mine + self.device_key + self.device_name.encode()
            self.channel = Channel.derive(self._x, msg.key, self.code, transcript, initiator=True)
            self.state = "keyed"
            mac = _mac(self.code.secret, b"reveal", msg.id, mine, self.device_key,
                       self.device_name.encode())  # fmt: skip
            return [Reveal(id=msg.id, key=mine, device_key=self.device_key,
                           device_name=self.device_name, mac=mac)]  # fmt: skip
        if isinstance(msg, Sealed) and self.channel is not None and self.state == "confirmed":
            inner = self.channel.open(msg)
            if isinstance(inner, Bundle):
                if self.bundle is not None:
                    raise PairingError("a second bundle came")
                if inner.fingerprint != self.code.user:
                    self.state = "failed"
                    raise PairingError("the bundle is for another account than the code named")
                self.bundle = inner
            else:
                self.extra.append(inner)
            return []
        return []

    @property
    def sas(self) -> str | None:
        return self.channel.sas if self.channel else None

    def confirm(
        self, history: str = "all", resume: bytes = b"", have: list[tuple[int, int]] | None = None
    ) -> Sealed:
        if self.channel is None:
            raise PairingError("nothing to confirm yet")
        self.state = "confirmed"
        confirm = Confirm(history=history, resume=resume, have=(have or [])[:MAX_HAVE_RANGES])
        return self.channel.seal(self.code.id, confirm)

    def seal(self, inner: Inner) -> Sealed:
        if self.channel is None or self.bundle is None:
            raise PairingError("no bundle yet")
        return self.channel.seal(self.code.id, inner)

    def done(self) -> Sealed:
        if self.channel is None or self.bundle is None:
            raise PairingError("no bundle yet")
        self.state = "done"
        return self.channel.seal(self.code.id, Done())
