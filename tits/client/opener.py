"""The one place a text or media body is opened and its verification decided.

`open_body` applies every check, whatever the outcome: addressing, group membership, the
epoch (known, for these members, still open in a secure chat), the AEAD, the device
signature, the header against the envelope. It says `verified=True` only when the signature
is by a current, certified device of the envelope's sender; `False` only when no certificate
for that device can be found anywhere (shown as *not verified* in a normal chat, refused in a
secure one). What it cannot decide yet — no key for the epoch, no certificate looked up yet,
a group not joined yet — raises `NotYet`, so the caller holds the delivery and asks off the
receive path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from tits import wire
from tits.errors import DecryptionError, TitsError, VerificationError
from tits.session import Envelope, direct_conversation_id

from .keyring import Keyring


class NotYet(TitsError):
    """Cannot be decided until something arrives: `need` says what."""

    def __init__(
        self,
        need: Literal["key", "cert", "group", "pubkey", "devices"],
        message: str,
        **what: str,
    ) -> None:
        super().__init__(message, code="not-yet")
        self.need = need
        self.what = what


class Refuse(VerificationError):
    """Checked and refused."""


class GroupView(Protocol):
    @property
    def secure(self) -> bool: ...

    def is_member(self, fp: str) -> bool: ...


DeviceCheck = Callable[[str, str, bytes, bytes], bool]
"""(identity, device, data, signature) → True verified, False no certificate exists anywhere;
raises VerificationError for a bad signature or a revoked/expired device, `NotYet("cert")`
when the certificate still has to be looked up."""


@dataclass(frozen=True)
class Opened:
    conv: bytes
    header: wire.Header
    payload: bytes
    verified: bool
    device: str
    secure: bool


def conversation_of(env: wire.Deliver, me: str) -> bytes:
    if env.group is not None:
        return env.group
    other = env.to[0] if env.sender == me and env.to else env.sender
    return direct_conversation_id(me, other)


def check_addressing(env: wire.Deliver, me: str) -> None:
    if env.group is None and len(env.to) != 1:
        raise Refuse("a direct message has exactly one recipient")
    if me not in env.to and env.sender != me:
        raise Refuse("delivered to me but not addressed to me")


def open_body(
    env: wire.Deliver,
    body: wire.SealedBody | wire.MediaBody,
    *,
    me: str,
    keys: Keyring,
    group: GroupView | None,
    check_device: DeviceCheck,
    history: bool = False,
) -> Opened:
    """`history`: an earlier message of a group passed on to a newcomer, who was not among
    its recipients then; its epoch may long be superseded."""
    if not history:
        check_addressing(env, me)
    conv = conversation_of(env, me)
    secure = False
    if env.group is not None:
        if group is None:
            raise NotYet("group", "a message for a group we have not joined (yet)")
        secure = group.secure
        if not group.is_member(env.sender) and not isinstance(body, wire.SealedBody):
            raise Refuse(f"{env.sender[:16]} is not a member of this group")
    envelope = Envelope(env.id, env.sender, list(env.to), env.group)
    if isinstance(body, wire.SealedBody):
        row = keys.opening(conv, body.epoch)
        if row is None:
            raise NotYet("key", f"no session key from {env.sender[:16]} for this text")
        key = row.key
        if key.members and env.sender not in key.members:
            raise Refuse(f"{env.sender[:16]} is not a member of epoch {body.epoch}")
        secure = secure or key.secure
        if secure and not history and not keys.still_open(row, env.ts):
            raise Refuse(f"session key epoch {body.epoch} has expired or was replaced")
        # in any group: someone no longer a member may still hold an old epoch's key; what
        # the broker took from them after that epoch's grace is refused (history is exempt:
        # its senders may have left since)
        if env.group is not None and group is not None and not history:
            if not group.is_member(env.sender) and (
                row.superseded is None or not keys.still_open(row, env.ts)
            ):
                raise Refuse(f"{env.sender[:16]} is not a member of this group")
        if body.alg != key.alg:
            raise DecryptionError(f"epoch {body.epoch} is not a {body.alg} key")
        ad = envelope.ad(key.epoch)
        signed = wire.SIGNED_DECODER.decode(key.decrypt(body.nonce, body.ciphertext, ad))
    else:
        ad = envelope.ad(0)
        signed = body.signed
    verified = check_device(env.sender, signed.device, ad + signed.header_payload, signed.signature)
    if secure and not verified:
        raise Refuse("unverifiable data in a secure chat")
    header, payload = wire.HEADER_PAYLOAD_DECODER.decode(signed.header_payload)
    if wire.sha256(payload) != header.checksum:
        raise Refuse("payload checksum does not match its header")
    if header.group != env.group:
        raise Refuse("header does not match its envelope")
    if isinstance(body, wire.SealedBody):
        if header.epoch != body.epoch:
            raise Refuse("header does not match its envelope")
    elif body.sha256 != header.checksum:
        raise Refuse("media does not match its name")
    return Opened(conv, header, payload, verified, signed.device, secure)
