"""The login blob, shared by the client that builds it and the broker that checks it.

Protocol (DESIGN "Login"), over a CURVE link the client opened with the broker's CURVE server
key from the broker URL:

1. client → `Hello`; broker → `Challenge(nonce, broker fingerprint, expires, broker key)`.
   The client imports the broker's OpenPGP key from the challenge only if its fingerprint is
   the `broker` field; the CURVE handshake already proved the server holds the URL's key.
2. client → `Login(blob, fingerprint, pubkey?)` where `blob` is an OpenPGP message signed by the
   user's key and encrypted to the broker's key, whose plaintext is::

       MAGIC (20 bytes) ‖ nonce (32) ‖ broker fingerprint (20, raw) ‖ msgpack(Claims)

   `Claims` names the user, the client's CURVE public key for this connection, and this
   device's certificate with the identity's signature over it.
3. The broker decrypts, requires a good signature by exactly `fingerprint`, a nonce it issued
   *to this CURVE key* and has not used or let expire, its own fingerprint, the CURVE key of
   the connection the blob arrived on, and a current device certificate of that user. It then
   binds the CURVE key (the frame's ``User-Id``) to (fingerprint, device) → `Welcome`.
"""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from .errors import VerificationError
from .identity import Identity, normalise_fingerprint

MAGIC = bytes.fromhex("e2014b07b02c3359a370343edc03b0808b129892")
NONCE_BYTES = 32
CHALLENGE_TTL_S = 60.0
CLOCK_SKEW_S = 300.0


class Claims(Struct, array_like=True, forbid_unknown_fields=False):
    fingerprint: Annotated[str, Meta(pattern=r"^[0-9A-F]{40}\Z")]
    curve_key: Annotated[bytes, Meta(min_length=32, max_length=32)]
    cert: Annotated[bytes, Meta(max_length=4096)]
    cert_sig: Annotated[bytes, Meta(max_length=8192)]
    ts_ms: int


_claims_decoder = msgspec.msgpack.Decoder(Claims)


def login_plaintext(nonce: bytes, broker_fp: str, claims: Claims) -> bytes:
    return (
        MAGIC
        + nonce
        + bytes.fromhex(normalise_fingerprint(broker_fp))
        + msgspec.msgpack.encode(claims)
    )


def build_blob(
    identity: Identity,
    fingerprint: str,
    nonce: bytes,
    broker_fp: str,
    curve_public: bytes,
    cert: bytes,
    cert_sig: str | bytes,
) -> bytes:
    """Sign with the user's key and encrypt to the broker (one gpg call)."""
    claims = Claims(
        fingerprint=normalise_fingerprint(fingerprint),
        curve_key=curve_public,
        cert=cert,
        cert_sig=cert_sig.encode() if isinstance(cert_sig, str) else cert_sig,
        ts_ms=time.time_ns() // 1_000_000,
    )
    plain = login_plaintext(nonce, broker_fp, claims)
    return identity.encrypt_to(plain, broker_fp, signer=fingerprint).encode()


def parse_plaintext(plain: bytes) -> tuple[bytes, str, Claims]:
    """(nonce, broker fingerprint, claims) from a decrypted blob; raise on anything else."""
    head = len(MAGIC) + NONCE_BYTES + 20
    if len(plain) < head or plain[: len(MAGIC)] != MAGIC:
        raise VerificationError("not an ω IM login (magic)")
    nonce = plain[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    broker = plain[len(MAGIC) + NONCE_BYTES : head].hex().upper()
    try:
        claims = _claims_decoder.decode(plain[head:])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise VerificationError(f"login claims do not decode ({exc})") from None
    if abs(claims.ts_ms / 1000 - time.time()) > CLOCK_SKEW_S:
        raise VerificationError("login is too old or from the future (check the clock)")
    return nonce, broker, claims
