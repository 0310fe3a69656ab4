"""Device keys: each device has its own Ed25519 key, certified by the user's GnuPG identity.

The certificate is a short canonical text, so anyone can check it with plain
``gpg --verify cert.sig cert.txt``::

    tits-device-certificate-v1
    identity: <40-hex fingerprint>
    device-key: <base64 of the raw 32-byte Ed25519 public key>
    device-name: <name>
    created: <unix seconds>
    expires: <unix seconds>

Proof of possession: the identity's signature says "this key is my device", but anyone can
copy a device's *public* key into a certificate of their own. So a certificate travels with a
proof, the device key's Ed25519 signature over ``PROOF_CONTEXT + certificate bytes``
(`DeviceKey.prove`, `Certificate.check_proof`): only the holder of the private key can ask to
be a device of that identity. keyd refuses a certificate without one. The proof is not in the
certificate, so certificates signed before it existed stay valid: a home re-makes the proof
from its device key whenever it publishes (the signature is deterministic, ~20 µs).

Per-message signatures use the device key (tens of µs in process); GnuPG is only needed once
per certificate, and `CertificateCache` remembers certificates already checked. Ed25519 comes
from PyNaCl (libsodium): its verify is about twice as fast as `cryptography`'s here (54 vs
108 µs), and verifying is the per-message cost every receiver pays.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import SigningKey, VerifyKey

from .errors import IdentityError, VerificationError
from .identity import Identity, normalise_fingerprint

CERT_MAGIC = "tits-device-certificate-v1"
REVOKE_MAGIC = "tits-device-revocation-v1"
PROOF_CONTEXT = b"tits-device-proof-v1\n"  # no message a device signs starts so (msgpack)
PROOF_BYTES = 64
REVOKE_BY_CONTEXT = b"tits-revoked-by-v1\n"  # a device's signature over a revocation it made
DEFAULT_LIFETIME = 2 * 365 * 24 * 3600
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}\Z")


def device_id(public_key: bytes) -> str:
    """16 hex digits naming a device: the start of SHA-256 of its public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class Certificate:
    identity: str
    public_key: bytes
    name: str
    created: int
    expires: int

    @property
    def device(self) -> str:
        return device_id(self.public_key)

    def to_bytes(self) -> bytes:
        """The exact bytes the identity signs."""
        return (
            f"{CERT_MAGIC}\n"
            f"identity: {self.identity}\n"
            f"device-key: {base64.b64encode(self.public_key).decode()}\n"
            f"device-name: {self.name}\n"
            f"created: {self.created}\n"
            f"expires: {self.expires}\n"
        ).encode()

    def check_proof(self, proof: bytes) -> None:
        """Raise VerificationError unless `proof` is the certified device key's signature over
        this certificate: whoever sent it holds that key's private half."""
        if not isinstance(proof, bytes) or len(proof) != PROOF_BYTES:
            raise VerificationError(f"device {self.device}: no proof of possession")
        try:
            VerifyKey(self.public_key).verify(PROOF_CONTEXT + self.to_bytes(), proof)
        except (BadSignatureError, NaclValueError, TypeError, ValueError):
            raise VerificationError(
                f"device {self.device}: the proof of possession is not by the device key"
            ) from None

    @classmethod
    def parse(cls, data: bytes) -> Certificate:
        try:
            lines = data.decode("utf-8").split("\n")
            if lines[0] != CERT_MAGIC or lines[-1] != "" or len(lines) != 7:
                raise ValueError("layout")
            fields = dict(line.split(": ", 1) for line in lines[1:-1])
            cert = cls(
                identity=normalise_fingerprint(fields["identity"]),
                public_key=base64.b64decode(fields["device-key"], validate=True),
                name=fields["device-name"],
                created=int(fields["created"]),
                expires=int(fields["expires"]),
            )
        except (ValueError, KeyError, UnicodeDecodeError, IdentityError) as exc:
            raise VerificationError(f"not a device certificate ({exc})") from None
        if len(cert.public_key) != 32 or not _NAME_RE.match(cert.name):
            raise VerificationError("not a device certificate (key or name)")
        if cert.to_bytes() != data:  # only the canonical form is accepted
            raise VerificationError("device certificate is not in canonical form")
        return cert


@dataclass(frozen=True)
class Revocation:
    identity: str
    device: str
    revoked: int

    def to_bytes(self) -> bytes:
        return (
            f"{REVOKE_MAGIC}\nidentity: {self.identity}\ndevice: {self.device}\n"
            f"revoked: {self.revoked}\n"
        ).encode()

    @classmethod
    def parse(cls, data: bytes) -> Revocation:
        try:
            lines = data.decode("utf-8").split("\n")
            if lines[0] != REVOKE_MAGIC or len(lines) != 5 or lines[-1] != "":
                raise ValueError("layout")
            fields = dict(line.split(": ", 1) for line in lines[1:-1])
            rev = cls(
                normalise_fingerprint(fields["identity"]),
                fields["device"],
                int(fields["revoked"]),
            )
        except (ValueError, KeyError, UnicodeDecodeError, IdentityError) as exc:
            raise VerificationError(f"not a device revocation ({exc})") from None
        if rev.to_bytes() != data or not re.fullmatch(r"[0-9a-f]{16}", rev.device):
            raise VerificationError("device revocation is not in canonical form")
        return rev


class DeviceKey:
    """This device's private Ed25519 key."""

    def __init__(self, private: SigningKey) -> None:
        self._private = private
        self.public_key = bytes(private.verify_key)
        self.id = device_id(self.public_key)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(SigningKey.generate())

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        try:
            return cls(SigningKey(path.read_bytes()))  # the 32-byte seed
        except (OSError, ValueError, NaclValueError, TypeError) as exc:
            raise IdentityError(f"cannot read device key {path}: {exc}") from None

    def save(self, path: Path) -> None:
        _write_secret(path, bytes(self._private))

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data).signature

    def prove(self, cert_bytes: bytes) -> bytes:
        """The proof of possession that goes with a certificate of this key (64 bytes)."""
        return self.sign(PROOF_CONTEXT + cert_bytes)

    def certify(
        self, identity: Identity, fingerprint: str, name: str, lifetime: int = DEFAULT_LIFETIME
    ) -> tuple[Certificate, str]:
        """Have the GnuPG identity sign a certificate for this device; (certificate, signature)."""
        now = int(time.time())
        cert = Certificate(
            normalise_fingerprint(fingerprint), self.public_key, name, now, now + lifetime
        )
        Certificate.parse(cert.to_bytes())  # refuse names that would not round-trip
        return cert, identity.sign_detached(cert.to_bytes(), fingerprint)


def certify_key(
    identity: Identity,
    fingerprint: str,
    public_key: bytes,
    name: str,
    lifetime: int = DEFAULT_LIFETIME,
) -> tuple[Certificate, str]:
    """Have the identity certify another device's public key (pairing: the new device sent
    it); the certificate still needs that device's proof of possession to be published."""
    now = int(time.time())
    cert = Certificate(normalise_fingerprint(fingerprint), public_key, name, now, now + lifetime)
    Certificate.parse(cert.to_bytes())  # refuse keys and names that would not round-trip
    return cert, identity.sign_detached(cert.to_bytes(), fingerprint)


def revoke(identity: Identity, fingerprint: str, device: str) -> tuple[Revocation, str]:
    rev = Revocation(normalise_fingerprint(fingerprint), device, int(time.time()))
    return rev, identity.sign_detached(rev.to_bytes(), fingerprint)


class CertificateCache:
    """Device certificates already checked with GnuPG, so each costs one gpg call, not one per
    message. The identity's public key must be in `identity`'s ring before `add`."""

    def __init__(self, identity: Identity, clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.clock = clock  # wall-clock time; tests move it instead of sleeping
        self._certs: dict[tuple[str, str], Certificate] = {}
        self._revoked: dict[tuple[str, str], int] = {}
        self._keys: dict[tuple[str, str], VerifyKey] = {}

    def add(
        self,
        cert_bytes: bytes,
        signature: str | bytes,
        expected_identity: str | None = None,
        proof: bytes | None = None,
    ) -> Certificate:
        """Check and remember a certificate; with `proof`, also its proof of possession
        (checked first: it costs no gpg call)."""
        cert = Certificate.parse(cert_bytes)
        if expected_identity is not None and cert.identity != normalise_fingerprint(
            expected_identity
        ):
            raise VerificationError(
                f"certificate names {cert.identity}, expected {expected_identity}"
            )
        if proof is not None:
            cert.check_proof(proof)
        key = (cert.identity, cert.device)
        known = self._certs.get(key)
        if known is None or known.to_bytes() != cert_bytes:
            self.identity.verify_detached(cert_bytes, signature, cert.identity)
            self._certs[key] = cert
            self._keys[key] = VerifyKey(cert.public_key)
        self.check_current(cert)
        return cert

    def add_revocation(self, data: bytes, signature: str | bytes) -> Revocation:
        rev = Revocation.parse(data)
        self.identity.verify_detached(data, signature, rev.identity)
        self._revoked[(rev.identity, rev.device)] = rev.revoked
        return rev

    def remember_revocation(self, identity: str, device: str, revoked: int) -> None:
        """A revocation checked before (kept by the caller): no gpg call."""
        self._revoked[(identity, device)] = revoked

    def check_current(self, cert: Certificate, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if (cert.identity, cert.device) in self._revoked:
            raise VerificationError(f"device {cert.device} of {cert.identity[:16]} is revoked")
        if now >= cert.expires:
            raise VerificationError(f"device {cert.device} certificate expired")
        if now + 300 < cert.created:
            raise VerificationError(f"device {cert.device} certificate is from the future")

    def get(self, identity: str, device: str) -> Certificate | None:
        return self._certs.get((identity, device))

    def verify(self, identity: str, device: str, data: bytes, signature: bytes) -> Certificate:
        """Check a per-message signature by a known, current device of `identity`."""
        cert = self._certs.get((identity, device))
        if cert is None:
            raise VerificationError(f"unknown device {device} for {identity[:16]}")
        self.check_current(cert)
        try:
            self._keys[(identity, device)].verify(data, signature)
        except (BadSignatureError, NaclValueError, TypeError):
            raise VerificationError("device signature does not verify") from None
        return cert
