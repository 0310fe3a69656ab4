"""Checking a login (see `tits.login` for the protocol). Runs in worker threads: every step
here is a GnuPG subprocess (milliseconds), which must never stall the message loop."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass

from tits import wire
from tits.device import Certificate, CertificateCache
from tits.errors import IdentityError, KeyServerError, TitsError, VerificationError
from tits.identity import normalise_fingerprint
from tits.login import parse_plaintext

from .keys import ServerKeys


@dataclass(frozen=True)
class LoginOk:
    fingerprint: str
    device: str
    name: str
    certificate: Certificate


class LoginVerifier:
    def __init__(self, keys: ServerKeys, keyserver: str | None = None) -> None:
        self.keys = keys
        self.identity = keys.identity
        self.keyserver = keyserver
        self.certs = CertificateCache(keys.identity)
        self._lock = threading.Lock()
        self._known: dict[str, str] = {}  # fingerprint → name, for keys already in the ring

    def verify(self, login: wire.Login, nonce: bytes, curve_key: bytes) -> LoginOk:
        """Raise a `TitsError` unless `login` answers `nonce` on the connection `curve_key`."""
        fp = normalise_fingerprint(login.fingerprint)
        name = self._ensure_key(fp, login.pubkey)
        plain = self.identity.decrypt_from(login.blob, expected_signer=fp)
        got_nonce, broker, claims = parse_plaintext(plain)
        if not hmac.compare_digest(got_nonce, nonce):
            raise VerificationError("login answers a challenge this broker did not give")
        if broker != self.keys.fingerprint:
            raise VerificationError("login is meant for another broker")
        if claims.fingerprint != fp:
            raise VerificationError("login claims another fingerprint than it is signed by")
        if not hmac.compare_digest(claims.curve_key, curve_key):
            raise VerificationError("login was made for another connection")
        with self._lock:
            cert = self.certs.add(claims.cert, claims.cert_sig, expected_identity=fp)
        return LoginOk(fp, cert.device, name, cert)

    def _ensure_key(self, fp: str, pubkey: bytes) -> str:
        """Have `fp`'s public key in the broker's ring (key server first, then the key the
        client sent, only if it is exactly `fp`); return the key's name."""
        name = self._known.get(fp)
        if name is not None:
            return name
        info = self.identity.key_info(fp)
        if info is None and self.keyserver:
            try:
                from tits.keyclient import KeyClient

                self._import_exactly(fp, KeyClient(self.keyserver).get_key(fp))
            except (ImportError, KeyServerError, IdentityError):
                pass  # fall back on the key the client sent
            info = self.identity.key_info(fp)
        if info is None and pubkey:
            self._import_exactly(fp, pubkey)
            info = self.identity.key_info(fp)
        if info is None:
            raise VerificationError(f"no public key for {fp} (publish it to the key server)")
        self._known[fp] = info.name
        return info.name

    def _import_exactly(self, fp: str, armored: str | bytes) -> None:
        text = armored.decode("utf-8", "replace") if isinstance(armored, bytes) else armored
        if "PRIVATE KEY BLOCK" in text:
            raise VerificationError("refusing a secret key")
        scanned = self.identity.gpg.scan_keys_mem(text)
        fps = {str(k.get("fingerprint", "")).upper() for k in scanned}
        if fps != {fp}:
            raise VerificationError(f"the key sent is not {fp}")
        self.identity.import_public(text)


def describe(exc: BaseException) -> tuple[wire.ErrorCode, str]:
    """(error code, message) for a failed login, for the client's `Error`."""
    if isinstance(exc, TitsError):
        return "login-refused", exc.message[:200]
    return "login-refused", f"login failed ({type(exc).__name__})"
