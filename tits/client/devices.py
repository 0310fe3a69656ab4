"""Whose device signed this: device certificates checked once with GnuPG, then in process.

The certificate of a device comes with the key message of a conversation, from the local
store, or from the key server — never fetched here: a missing one raises `NotYet("cert")` and
the client looks it up off the receive path (`tits/client/client.py`), then feeds the answer
back with `learn` / `not_found`.

Revocations (docs/devices.md) come from the key server, with the identity's signature, which
is checked here with gpg once and then kept in HOME/revoked-devices.json: a device revoked
once stays revoked for this home. A key message (a conversation's key, a group's log) is the
moment a sender's devices may have changed — the user's groups rekey when a device is revoked —
so each one asks for the sender's device list again (`take_rechecks`), off the receive path.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tits.device import CertificateCache, Revocation
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
        revocations: Path | None = None,
        recheck: bool = False,
    ) -> None:
        self.store = store
        self.certs = CertificateCache(identity)
        self.me = me
        self.identity = identity
        self._own = own
        self._missing: set[tuple[str, str]] = set()  # looked up: no certificate anywhere
        self._path = revocations
        self.recheck = recheck  # there is a key server to ask
        self._kept: dict[str, dict[str, object]] = {}  # "identity/device" → what keyd served
        self._rechecks: set[str] = set()  # identities whose device list is asked for again
        self._started: set[str] = set()  # ... and whose asking has started
        self._load_revocations()

    def __call__(self, identity: str, device: str, data: bytes, signature: bytes) -> bool:
        if identity in self._rechecks:
            raise NotYet("devices", f"checking the devices of {identity[:16]} again",
                         identity=identity, device=device)  # fmt: skip
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
        if proof is not None and self.recheck:
            self._rechecks.add(identity)  # a key message: the sender's devices may have changed
        cert = self.certs.add(cert_bytes, signature, expected_identity=identity, proof=proof)
        self.store.put_cert(identity, cert.device, cert_bytes, signature)
        self._missing.discard((identity, cert.device))
        return cert.device

    def revoked(self, data: bytes, signature: str) -> Revocation | None:
        """Take a revocation (checked with gpg unless already kept); the new one, or None."""
        rev = Revocation.parse(data)
        key = f"{rev.identity}/{rev.device}"
        if key in self._kept:
            return None
        rev = self.certs.add_revocation(data, signature)
        self._kept[key] = {
            "identity": rev.identity, "device": rev.device, "revoked": rev.revoked,
            "revocation": base64.b64encode(data).decode(), "signature": signature,
        }  # fmt: skip
        self._save_revocations()
        return rev

    def is_revoked(self, identity: str, device: str) -> bool:
        return f"{identity}/{device}" in self._kept

    def revocations(self) -> list[dict[str, object]]:
        return list(self._kept.values())

    def take_rechecks(self) -> list[str]:
        """Identities to ask about that nobody asks about yet. Until `recheck_done`, their
        messages wait (`NotYet("devices")`): one signed by a device revoked a moment ago must
        not slip through while the answer is on its way."""
        out = sorted(self._rechecks - self._started)
        self._started.update(out)
        return out

    def recheck_done(self, identity: str) -> None:
        self._rechecks.discard(identity)
        self._started.discard(identity)

    def _load_revocations(self) -> None:
        """Our own file: trusted as written (each entry was checked before it was kept)."""
        if self._path is None or not self._path.exists():
            return
        try:
            entries = json.loads(self._path.read_text())
            for e in entries:
                data = base64.b64decode(e["revocation"], validate=True)
                rev = Revocation.parse(data)
                self.certs.remember_revocation(rev.identity, rev.device, rev.revoked)
                self._kept[f"{rev.identity}/{rev.device}"] = e
        except (OSError, ValueError, KeyError, TypeError, VerificationError):
            return  # a damaged file: the key server is asked again

    def _save_revocations(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(list(self._kept.values()), fh)
        tmp.replace(self._path)

    def not_found(self, identity: str, device: str) -> None:
        self._missing.add((identity, device))


class Sightings:
    """When this home last saw each of the user's other devices send (`device list`):
    HOME/devices-seen.json, device id → Unix ms as the broker stamped it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: dict[str, int] | None = None

    def all(self) -> dict[str, int]:
        if self._seen is None:
            try:
                raw = json.loads(self.path.read_text())
                self._seen = {str(k): int(v) for k, v in raw.items()}
            except (OSError, ValueError, TypeError, AttributeError):
                self._seen = {}
        return self._seen

    def note(self, seen: dict[str, int]) -> None:
        known = self.all()
        changed = {d: ts for d, ts in seen.items() if ts > known.get(d, 0)}
        if not changed:
            return
        known.update(changed)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(self.path)
