"""Whose device signed this: device certificates checked once with GnuPG, then in process.

The certificate of a device comes with the key message of a conversation, from the local
store, or from the key server — never fetched here: a missing one raises `NotYet("cert")` and
the client looks it up off the receive path (`tits/client/client.py`), then feeds the answer
back with `learn` / `not_found`.
"""

from __future__ import annotations

from tits.device import CertificateCache
from tits.errors import VerificationError
from tits.identity import Identity

from .opener import NotYet
from .store import LocalStore


class DeviceChecker:
    def __init__(
        self,
        store: LocalStore,
        identity: Identity,
        me: str,
        own: tuple[bytes, str] | None = None,
    ) -> None:
        self.store = store
        self.certs = CertificateCache(identity)
        self.me = me
        self.identity = identity
        self._own = own
        self._missing: set[tuple[str, str]] = set()  # looked up: no certificate anywhere

    def __call__(self, identity: str, device: str, data: bytes, signature: bytes) -> bool:
        if self.certs.get(identity, device) is None and not self._load(identity, device):
            if (identity, device) in self._missing:
                return False
            raise NotYet("cert", f"looking up device {device} of {identity[:16]}",
                         identity=identity, device=device)  # fmt: skip
        self.certs.verify(identity, device, data, signature)
        return True

    def _load(self, identity: str, device: str) -> bool:
        row = self.store.cert(identity, device)
        if row is None and identity == self.me and self._own is not None:
            row = self._own
        if row is None:
            owner = self.store.device_owner(device)
            if owner is not None and owner != identity:
                raise VerificationError(
                    f"device {device} belongs to {owner[:16]}, not {identity[:16]}"
                )
            return False
        cert = self.certs.add(row[0], row[1], expected_identity=identity)
        if cert.device != device:
            return False
        self.store.put_cert(identity, device, row[0], row[1])
        return True

    def learn(self, identity: str, cert_bytes: bytes, signature: str, proof: bytes | None) -> str:
        """A certificate from a key message (with its proof of possession, required) or the
        key server (which checked the proof): checked with gpg, then kept."""
        if proof is not None and not proof:
            raise VerificationError("a device certificate without its proof of possession")
        cert = self.certs.add(cert_bytes, signature, expected_identity=identity, proof=proof)
        self.store.put_cert(identity, cert.device, cert_bytes, signature)
        self._missing.discard((identity, cert.device))
        return cert.device

    def revoked(self, data: bytes, signature: str) -> None:
        self.certs.add_revocation(data, signature)

    def not_found(self, identity: str, device: str) -> None:
        self._missing.add((identity, device))
