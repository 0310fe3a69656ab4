"""Session keys and the per-message crypto: seal/open texts, sign/check media, wrap keys.

A text is signed by the sender's device key, then encrypted with the conversation's session
key (AEAD); the envelope fields are the associated data *and* are covered by the signature, so
neither a broker nor another member can move a body to another conversation, sender or id.
Media is signed the same way but never encrypted. Session keys travel wrapped per member with
GnuPG (plain ``gpg --decrypt`` opens one) and signed by the inviter.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from . import wire
from .device import Certificate, CertificateCache, DeviceKey
from .errors import DecryptionError, VerificationError
from .identity import Identity

ALGORITHMS = {"aes256gcm": AESGCM, "chacha20poly1305": ChaCha20Poly1305}


def direct_conversation_id(a: str, b: str) -> bytes:
    """The conversation id of a one-to-one chat: the same for both sides, no group needed."""
    return wire.sha256(("direct:" + ":".join(sorted((a, b)))).encode())[:16]


class KeyFile(msgspec.Struct):
    """What a wrapped session key holds (JSON, so `gpg --decrypt` shows something legible)."""

    conversation: str  # hex
    epoch: int
    key: bytes
    alg: str
    created: float
    expires: float
    secure: bool
    members: list[str] = []
    creator: str = ""  # the member who made it
    basis: str = ""  # for a group: the membership-log entry (hash hex) it was made for


@dataclass
class SessionKey:
    conversation: bytes
    epoch: int
    key: bytes
    alg: str = "aes256gcm"
    created: float = field(default_factory=time.time)
    expires: float = 0.0  # 0: until membership changes (normal chats)
    secure: bool = False
    members: list[str] = field(default_factory=list)
    creator: str = ""
    basis: str = ""

    def __post_init__(self) -> None:
        if len(self.key) != 32 or self.alg not in ALGORITHMS:
            raise DecryptionError("unusable session key")
        self._aead: AESGCM | ChaCha20Poly1305 = (
            AESGCM(self.key) if self.alg == "aes256gcm" else ChaCha20Poly1305(self.key)
        )

    @classmethod
    def generate(
        cls,
        conversation: bytes,
        epoch: int = 0,
        *,
        secure: bool = False,
        lifetime: float = 0.0,
        members: list[str] | None = None,
        alg: str = "aes256gcm",
        creator: str = "",
        basis: str = "",
    ) -> SessionKey:
        now = time.time()
        return cls(
            conversation,
            epoch,
            os.urandom(32),
            alg,
            now,
            now + lifetime if lifetime else 0.0,
            secure,
            sorted(members or []),
            creator,
            basis,
        )

    def expired(self, now: float | None = None) -> bool:
        return bool(self.expires) and (time.time() if now is None else now) >= self.expires

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            KeyFile(
                self.conversation.hex(),
                self.epoch,
                self.key,
                self.alg,
                self.created,
                self.expires,
                self.secure,
                self.members,
                self.creator,
                self.basis,
            )
        )

    def to_file(self) -> KeyFile:
        return msgspec.json.decode(self.to_json(), type=KeyFile)

    @classmethod
    def from_file(cls, kf: KeyFile) -> SessionKey:
        return cls.from_json(msgspec.json.encode(kf))

    @classmethod
    def from_json(cls, data: bytes) -> SessionKey:
        try:
            kf = msgspec.json.decode(data, type=KeyFile)
            return cls(
                bytes.fromhex(kf.conversation),
                kf.epoch,
                kf.key,
                kf.alg,
                kf.created,
                kf.expires,
                kf.secure,
                kf.members,
                kf.creator,
                kf.basis,
            )
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise DecryptionError(f"not a session key ({exc})") from None

    # -- wrapping with GnuPG ----------------------------------------------------------------

    def wrap(self, identity: Identity, inviter: str, member: str) -> bytes:
        """An OpenPGP message for `member`, signed by `inviter` (a subprocess: milliseconds)."""
        return identity.encrypt_to(self.to_json(), member, signer=inviter).encode()

    def wrap_for(self, identity: Identity, creator: str, members: list[str]) -> bytes:
        """One OpenPGP message for every member at once (one gpg process, however many)."""
        return identity.encrypt_to_many(self.to_json(), members, creator).encode()

    @classmethod
    def unwrap(cls, identity: Identity, wrapped: bytes, inviter: str) -> SessionKey:
        return cls.from_json(identity.decrypt_from(wrapped, expected_signer=inviter))

    # -- per-message AEAD --------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, ad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, plaintext, ad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, ad)
        except InvalidTag:
            raise DecryptionError("message does not decrypt (tampered or wrong key)") from None


@dataclass(frozen=True)
class Envelope:
    """The envelope fields a body is bound to."""

    id: bytes
    sender: str
    to: list[str]
    group: bytes | None

    def ad(self, epoch: int) -> bytes:
        return wire.associated_data(self.id, self.sender, self.to, self.group, epoch)


@dataclass(frozen=True)
class Opened:
    header: wire.Header
    payload: bytes
    certificate: Certificate


def _sign(device: DeviceKey, ad: bytes, header: wire.Header, payload: bytes) -> wire.Signed:
    hp = wire.encode((header, payload))
    return wire.Signed(header_payload=hp, device=device.id, signature=device.sign(ad + hp))


def _check(
    signed: wire.Signed, ad: bytes, env: Envelope, certs: CertificateCache
) -> tuple[wire.Header, bytes, Certificate]:
    cert = certs.verify(env.sender, signed.device, ad + signed.header_payload, signed.signature)
    header, payload = wire.HEADER_PAYLOAD_DECODER.decode(signed.header_payload)
    if wire.sha256(payload) != header.checksum:
        raise VerificationError("payload checksum does not match its header")
    return header, payload, cert


def seal(
    key: SessionKey,
    device: DeviceKey,
    env: Envelope,
    payload: bytes,
    *,
    serial: int = 0,
    mime: str = "text/plain",
    lifetime_s: int = 0,
    reply_to: bytes | None = None,
    mentions: list[str] | None = None,
    mention_all: bool = False,
) -> bytes:
    """Sign with the device key, then encrypt with the session key: an encoded SealedBody."""
    ad = env.ad(key.epoch)
    header = wire.Header(
        ts_ms=time.time_ns() // 1_000_000,
        serial=serial,
        checksum=wire.sha256(payload),
        mime=mime,
        lifetime_s=lifetime_s,
        group=env.group,
        epoch=key.epoch,
        reply_to=reply_to,
        mentions=mentions or [],
        mention_all=mention_all,
    )
    plain = wire.encode(_sign(device, ad, header, payload))
    nonce, ct = key.encrypt(plain, ad)
    return wire.encode(wire.SealedBody(key.epoch, key.alg, nonce, ct))


def open_sealed(
    body: wire.SealedBody, key: SessionKey, env: Envelope, certs: CertificateCache
) -> Opened:
    """Decrypt, then check the signature is by a current device of the envelope's sender."""
    if body.epoch != key.epoch or body.alg != key.alg:
        raise DecryptionError(f"no session key for epoch {body.epoch}")
    if key.secure and key.expired():
        raise DecryptionError(f"session key epoch {key.epoch} has expired")
    ad = env.ad(key.epoch)
    plain = key.decrypt(body.nonce, body.ciphertext, ad)
    signed = wire.SIGNED_DECODER.decode(plain)
    header, payload, cert = _check(signed, ad, env, certs)
    if header.epoch != key.epoch or header.group != env.group:
        raise VerificationError("header does not match its envelope")
    return Opened(header, payload, cert)


def sign_media(
    device: DeviceKey, env: Envelope, payload: bytes, mime: str, *, serial: int = 0
) -> bytes:
    """Media is signed, never encrypted; the SHA-256 names it for storage and forwarding."""
    digest = wire.sha256(payload)
    header = wire.Header(
        ts_ms=time.time_ns() // 1_000_000,
        serial=serial,
        checksum=digest,
        mime=mime,
        group=env.group,
    )
    signed = _sign(device, env.ad(0), header, payload)
    return wire.encode(wire.MediaBody(signed=signed, sha256=digest))


def check_media(body: wire.MediaBody, env: Envelope, certs: CertificateCache) -> Opened:
    header, payload, cert = _check(body.signed, env.ad(0), env, certs)
    if body.sha256 != header.checksum:
        raise VerificationError("media name does not match its content")
    return Opened(header, payload, cert)
