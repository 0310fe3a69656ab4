"""The user's devices as the key server lists them, and revoking one (docs/devices.md).

Blocking (HTTP and gpg): the CLI calls these directly, the app from a worker thread.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from ..device import REVOKE_BY_CONTEXT, Certificate, revoke
from ..errors import ConfigError, TitsError, VerificationError
from ..home import Home
from ..keyclient import KeyClient
from .devices import DeviceChecker, Sightings
from .store import LocalStore

# brokers look for revocations every 5 s (broker/revocations.py) and end the sessions of the
# devices revoked: a rekey sent after this no longer reaches a session the device held
SESSION_END_S = 7.0


@dataclass(frozen=True)
class DeviceRow:
    device: str
    name: str
    created: int
    expires: int
    last_seen_ms: int | None
    this: bool
    revoked: bool
    revoked_at: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device, "name": self.name, "created": self.created,
            "expires": self.expires, "last_seen": self.last_seen_ms, "this": self.this,
            "revoked": self.revoked, "revoked_at": self.revoked_at,
        }  # fmt: skip


def keyclient(home: Home, keyserver: str | None) -> KeyClient:
    url = keyserver or home.config.get("keyserver")
    if not url:
        raise ConfigError("no key server configured: pass --keyserver URL")
    return KeyClient(str(url))


def list_devices(home: Home, keyserver: str | None = None) -> list[DeviceRow]:
    """Every device of ours the key server holds, each certificate checked with our own
    GnuPG (the key server is not trusted to vouch for them), newest first."""
    fp = home.fingerprint
    me = home.device.id
    seen = Sightings(home.path / "devices-seen.json").all()
    rows = []
    now_ms = int(time.time() * 1000)
    for d in keyclient(home, keyserver).devices(fp):
        try:
            data = base64.b64decode(d["certificate"], validate=True)
            cert = Certificate.parse(data)
            if cert.identity != fp or cert.device != d.get("device"):
                continue
            home.identity.verify_detached(data, str(d["signature"]), fp)
        except (TitsError, KeyError, TypeError, ValueError):
            continue
        revoked_at = d.get("revoked_at")
        rows.append(
            DeviceRow(
                device=cert.device,
                name=cert.name,
                created=cert.created,
                expires=cert.expires,
                last_seen_ms=now_ms if cert.device == me else seen.get(cert.device),
                this=cert.device == me,
                revoked=bool(d.get("revoked")),
                revoked_at=int(revoked_at) if isinstance(revoked_at, int) else None,
            )
        )
    rows.sort(key=lambda r: (r.revoked, -r.created))
    return rows


def find(rows: list[DeviceRow], which: str) -> DeviceRow:
    """The one live device named `which` (its name or its 16-hex id)."""
    live = [r for r in rows if not r.revoked]
    hits = [r for r in live if r.device == which.lower()] or [r for r in live if r.name == which]
    if not hits:
        if any(r.name == which or r.device == which.lower() for r in rows):
            raise ConfigError(f"device {which!r} is already revoked")
        names = ", ".join(f"{r.name} ({r.device})" for r in live) or "none"
        raise ConfigError(f"no device {which!r} (your devices: {names})")
    if len(hits) > 1:
        ids = ", ".join(r.device for r in hits)
        raise ConfigError(f"several devices are called {which!r}: give its id ({ids})")
    return hits[0]


def revoke_device(home: Home, which: str, keyserver: str | None = None) -> DeviceRow:
    """Sign a revocation of another of our devices, publish it, and keep it here (this home
    refuses that device's signatures at once). A device revokes another, never itself, and
    a device already revoked revokes nothing: of two devices revoking each other, even at the
    same instant, keyd takes the first and refuses the other (it names the device that made
    each revocation, proven by that device's key)."""
    rows = list_devices(home, keyserver)
    if any(r.this and r.revoked for r in rows):
        raise ConfigError("this device was revoked: it cannot revoke others")
    row = find(rows, which)
    if row.this:
        raise ConfigError("this is the device you are on: revoke it from another of your devices")
    rev, sig = revoke(home.identity, home.fingerprint, row.device)
    data = rev.to_bytes()
    by_proof = home.device.sign(REVOKE_BY_CONTEXT + data)
    answer = keyclient(home, keyserver).revoke_device(data, sig, home.device.id, by_proof)
    if not answer.get("revoked"):
        raise VerificationError("the key server did not take the revocation")
    checker = DeviceChecker(
        LocalStore(home.path), home.identity, home.fingerprint,
        revocations=home.path / "revoked-devices.json",
    )  # fmt: skip
    checker.revoked(rev.to_bytes(), sig)
    checker.store.close()
    return row
