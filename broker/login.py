"""Checking a login (see `tits.login` for the protocol). Runs in worker threads: every step
here is a GnuPG subprocess (milliseconds), which must never stall the message loop.

Logins need no free disk: they run in a GnuPG home in RAM (`login_home`), holding a copy of
the broker's key and the users' public keys, so a full data disk (or one a crash left full)
does not refuse them. And a login the broker could not check through its own trouble is
`BrokerFault` ("login-unavailable"), never counted against the client as garbage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from tits import wire
from tits.device import Certificate, CertificateCache
from tits.errors import IdentityError, KeyServerError, TitsError, VerificationError
from tits.identity import Identity, normalise_fingerprint
from tits.login import parse_plaintext

from .keys import ServerKeys

log = structlog.get_logger("titsd.login")

RAM_DIRS = ("/dev/shm", "/run/shm")
HEALTH_S = 10.0  # how long a self-check of the broker's own decryption is believed
REVOCATION_TIMEOUT_S = 3.0
KEYD_REST_S = 30.0  # after keyd failed to answer, logins skip the revocation check this long


class BrokerFault(TitsError):
    """The broker could not check a login through no fault of the client's."""


def login_home_path(data: Path) -> Path:
    """Where the login home of the broker with data directory `data` lives: in RAM where there
    is a tmpfs (else under `data`), named for `data`, so a restart after a crash finds (and
    replaces) what the crash left, and a test can stop its gpg-agent."""
    base = next((d for d in RAM_DIRS if os.path.isdir(d) and os.access(d, os.W_OK)), None)
    if base is None:
        return data / "gnupg-login"
    tag = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:16]
    return Path(base) / f"titsd-login-{tag}"


def sweep_login_homes(base: Path) -> list[Path]:
    """Remove the login homes (and stop the gpg-agents) of brokers that are gone: a kill -9
    leaves its home in RAM, and nothing else would ever remove it."""
    swept = []
    for home in base.glob("titsd-login-*"):
        try:
            pid = int((home / "broker.pid").read_text())
        except (OSError, ValueError):
            continue  # no pid (being made, or an older broker's): not ours to judge
        try:
            os.kill(pid, 0)
            continue  # its broker is running
        except ProcessLookupError:
            pass
        except OSError:
            continue  # (someone else's process: it exists)
        close_login_home(home)
        swept.append(home)
    return swept


def login_home(keys: ServerKeys, data: Path) -> Identity:
    """A GnuPG home for logins holding a copy of the broker's key (see `login_home_path`).
    Made fresh at each start (the homes of brokers that died are swept then);
    `close_login_home` removes it."""
    home = login_home_path(data)
    close_login_home(home)
    if home.parent != data:
        sweep_login_homes(home.parent)
    home.mkdir(mode=0o700)
    (home / "broker.pid").write_text(str(os.getpid()))
    identity = Identity(home)
    secret = keys.identity.gpg.export_keys(keys.fingerprint, secret=True, expect_passphrase=False)
    result = identity.gpg.import_keys(secret)
    if keys.fingerprint not in {str(f).upper() for f in result.fingerprints}:
        close_login_home(home)
        return keys.identity  # no copy: logins use the data disk's home, as before
    return identity


def close_login_home(home: Path) -> None:
    """Stop the login home's gpg-agent and remove it (the broker's own key stays in data)."""
    if home.exists():
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            check=False, capture_output=True, timeout=10,
        )  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class LoginOk:
    fingerprint: str
    device: str
    name: str
    certificate: Certificate


class LoginVerifier:
    def __init__(
        self, keys: ServerKeys, keyserver: str | None = None, home: Identity | None = None
    ) -> None:
        self.keys = keys
        self.identity = home or keys.identity
        self.keyserver = keyserver
        self.certs = CertificateCache(self.identity)
        self._lock = threading.Lock()
        self._known: dict[str, str] = {}  # fingerprint → name, for keys already in the ring
        self._revoked: set[tuple[str, str]] = set()  # (identity, device) revocations checked
        self._keyd_down_until = 0.0
        self._healthy_until = 0.0

    def verify(self, login: wire.Login, nonce: bytes, curve_key: bytes) -> LoginOk:
        """Raise a `TitsError` unless `login` answers `nonce` on the connection `curve_key`."""
        fp = normalise_fingerprint(login.fingerprint)
        name = self._ensure_key(fp, login.pubkey)
        try:
            plain = self.identity.decrypt_from(login.blob, expected_signer=fp)
        except VerificationError:
            if not self._healthy():
                raise BrokerFault("the broker cannot decrypt right now; try again") from None
            raise
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
        self._check_revoked(cert)
        return LoginOk(fp, cert.device, name, cert)

    def _check_revoked(self, cert: Certificate) -> None:
        """Refuse a device its owner revoked (docs/devices.md). Asked of the key server at
        every login (a few ms beside the login's gpg calls; a revocation must hold from the
        moment it is published); a revocation, once checked with gpg, is kept for good. A key
        server that cannot be reached lets the login through (logged), and is not asked again
        for KEYD_REST_S: brokers stay usable while keyd is down, at the price of that window
        (a session taken in it still ends when broker/revocations.py finds the revocation)."""
        key = (cert.identity, cert.device)
        if key in self._revoked:
            raise VerificationError(f"device {cert.device} was revoked by its owner")
        if not self.keyserver or time.monotonic() < self._keyd_down_until:
            return
        from tits.keyclient import KeyClient

        try:
            found = KeyClient(self.keyserver, timeout=REVOCATION_TIMEOUT_S).devices(cert.identity)
        except KeyServerError as exc:
            # a key server that hangs must not add its timeout to every login: rest a while
            self._keyd_down_until = time.monotonic() + KEYD_REST_S
            log.warning("login.revocation_unchecked", device=cert.device, why=exc.message[:120])
            return
        for d in found:
            if d.get("device") != cert.device or not d.get("revocation"):
                continue
            try:
                data = base64.b64decode(d["revocation"], validate=True)
                with self._lock:
                    rev = self.certs.add_revocation(data, str(d["revocation_signature"]))
            except (TitsError, KeyError, TypeError, ValueError):
                continue  # a revocation that does not check is not one
            if (rev.identity, rev.device) == key:
                self._revoked.add(key)
                raise VerificationError(f"device {cert.device} was revoked by its owner")

    def take_revocation(self, data: bytes, signature: str) -> tuple[str, str]:
        """Check a revocation with gpg (the owner's key is in the ring: they logged in) and
        keep it; its (identity, device)."""
        with self._lock:
            rev = self.certs.add_revocation(data, signature)
        self._revoked.add((rev.identity, rev.device))
        return rev.identity, rev.device

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
            if info is None:  # the key was exactly fp, and still is not in the ring
                raise BrokerFault("the broker could not take the key in; try again")
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
        try:
            self.identity.import_public(text)
        except IdentityError as exc:
            raise BrokerFault(f"the broker could not take the key in ({exc.message})") from None

    def _healthy(self) -> bool:
        """Can the broker decrypt what is meant for it? (After a failed decryption: was it
        the client's blob, or the broker's GnuPG?) Believed for HEALTH_S."""
        now = time.monotonic()
        if now < self._healthy_until:
            return True
        probe = os.urandom(16)
        try:
            blob = self.identity.encrypt_to(probe, self.keys.fingerprint)
            ok = self.identity.decrypt_from(blob, expected_signer=None) == probe
        except (TitsError, OSError, ValueError):
            ok = False
        if ok:
            self._healthy_until = now + HEALTH_S
        return ok


def describe(exc: BaseException) -> tuple[wire.ErrorCode, str, bool]:
    """(error code, message, the client's fault?) for a failed login, for the client's
    `Error`. Only a login the client got wrong counts as garbage: an OSError (a full disk)
    or a GnuPG that cannot run is the broker's own failure."""
    if isinstance(exc, BrokerFault):
        return "login-unavailable", exc.message[:200], False
    if isinstance(exc, TitsError):
        return "login-refused", exc.message[:200], True
    return (
        "login-unavailable",
        f"the broker could not check the login ({type(exc).__name__})",
        False,
    )
