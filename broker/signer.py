"""The broker signs what it gossips with its own device key, certified by its GnuPG identity,
exactly as a user's device signs texts: GnuPG once per broker, Ed25519 per advert."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from tits import wire
from tits.device import Certificate, CertificateCache, DeviceKey
from tits.errors import IdentityError, VerificationError
from tits.identity import Identity

log = structlog.get_logger("tits.broker.signer")

MAX_REFUSED = 10_000
MAX_PENDING = 256  # certificates waiting for the worker, from every source together
MAX_SOURCES = 1024
LEARN_BURST = 64.0  # certificate checks a source may start at once (a 30-broker snapshot) ...
LEARN_RATE = 4.0  # ... and per second after that
RENEW_BEFORE_S = 30 * 24 * 3600  # a broker restarted in its certificate's last month renews it


def _expiring(cert: bytes) -> bool:
    try:
        return Certificate.parse(cert).expires - time.time() < RENEW_BEFORE_S
    except VerificationError:
        return True


class BrokerSigner:
    """This broker's gossip signing key: `<data>/gossip.key`, `.cert`, `.sig`."""

    def __init__(self, identity: Identity, fingerprint: str, data: Path) -> None:
        self.fingerprint = fingerprint
        key_path, cert_path, sig_path = (data / f"gossip.{x}" for x in ("key", "cert", "sig"))
        if (
            key_path.exists()
            and cert_path.exists()
            and sig_path.exists()
            and not _expiring(cert_path.read_bytes())
        ):
            self.device = DeviceKey.load(key_path)
            self.cert, self.cert_sig = cert_path.read_bytes(), sig_path.read_bytes()
        else:  # first start, or the certificate runs out soon: a new key, certified afresh
            self.device = DeviceKey.generate()
            cert, sig = self.device.certify(identity, fingerprint, "titsd-gossip")
            self.cert, self.cert_sig = cert.to_bytes(), sig.encode()
            self.device.save(key_path)
            cert_path.write_bytes(self.cert)
            sig_path.write_bytes(self.cert_sig)
        self.armored_key = identity.export_public(fingerprint).encode()

    def sign_advert(self, advert: wire.Advert) -> wire.SignedAdvert:
        data = wire.encode(advert)
        return wire.SignedAdvert(
            advert=data,
            signature=self.device.sign(data),
            device=self.device.id,
            cert=self.cert,
            cert_sig=self.cert_sig,
            key=self.armored_key,
        )

    def sign_presence(self, presence: wire.Presence) -> wire.PresenceUpdate:
        data = wire.encode(presence)
        return wire.PresenceUpdate(
            presence=data, signature=self.device.sign(data), device=self.device.id
        )


class CertPending(VerificationError):
    """The item names a gossip certificate that GnuPG has not checked yet (it is being, off the
    loop): hold it (`BrokerVerifier.hold`) and replay it when `ready` returns it."""


@dataclass
class _Budget:
    """A token bucket of certificate checks for one source of gossip (a peer, or the SUB)."""

    tokens: float
    at: float


@dataclass
class _Job:
    """One certificate to check, and the gossip that waits for it (the newest advert, and the
    newest presence of each shard)."""

    broker: str
    device: str
    attempt: tuple[str, str, bytes]
    signed: wire.SignedAdvert
    advert: wire.SignedAdvert
    seq: int
    presence: dict[int, tuple[int, wire.PresenceUpdate]] = field(default_factory=dict)
    error: str | None = None


class BrokerVerifier:
    """Checks adverts and presence from other brokers; learns their keys from their adverts.

    Learning a broker's gossip certificate takes GnuPG 2–4 calls (5–9 ms each, far more on a
    loaded machine), which must not run in the broker's loop: `advert` raises `CertPending` for
    an unknown certificate, the loop `hold`s the item, a worker thread does the GnuPG part, and
    the loop replays what `ready` returns. Each source of gossip has a budget of checks (a
    token bucket), so an insider's frame of fake adverts costs the worker a bounded amount and
    the loop nothing; what a budget refuses is dropped (`dropped` counts it) for the caller to
    ask again later (a snapshot)."""

    def __init__(
        self,
        identity: Identity,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.certs = CertificateCache(identity)
        self.wake = wake  # called from the worker when a check is done (may be None)
        self.clock = clock
        self._refused: set[tuple[str, str, bytes]] = set()
        self._pending: dict[tuple[str, str], _Job] = {}
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._budgets: dict[str, _Budget] = {}
        self._worker: threading.Thread | None = None
        self.dropped = 0  # adverts a budget or a bound refused to hold (the caller resets it)
        self.over_budget = 0  # ... all of them, ever (status page)
        self.submitted = 0  # certificates handed to the worker ...
        self.checked = 0  # ... and checked by it

    # -- the loop's side ------------------------------------------------------------------

    def advert(self, signed: wire.SignedAdvert) -> wire.Advert:
        advert = wire.ADVERT_DECODER.decode(signed.advert)
        if self.certs.get(advert.broker, signed.device) is None:
            raise CertPending(f"advert of {advert.broker[:16]}: certificate not checked yet")
        self.certs.verify(advert.broker, signed.device, signed.advert, signed.signature)
        return advert

    def presence(self, update: wire.PresenceUpdate) -> wire.Presence:
        presence = wire.PRESENCE_DECODER.decode(update.presence)
        key = (presence.broker, update.device)
        if key in self._pending and self.certs.get(*key) is None:
            raise CertPending(f"presence of {presence.broker[:16]}: certificate being checked")
        self.certs.verify(presence.broker, update.device, update.presence, update.signature)
        return presence

    @property
    def pending(self) -> int:
        return len(self._pending)

    def is_pending(self, broker: str) -> bool:
        """A certificate of `broker` is being checked."""
        return any(b == broker for b, _ in self._pending)

    def hold(self, item: wire.SignedAdvert | wire.PresenceUpdate, source: str) -> None:
        """Keep `item` until its certificate is checked. An advert starts the check (within
        `source`'s budget: all that can be checked without GnuPG is checked here, and refusals
        are remembered); a presence update waits only for a check already under way."""
        if isinstance(item, wire.PresenceUpdate):
            presence = wire.PRESENCE_DECODER.decode(item.presence)
            job = self._pending.get((presence.broker, item.device))
            if job is None:
                raise VerificationError(f"unknown device {item.device} for {presence.broker[:16]}")
            held = job.presence.get(presence.shard)
            if held is None or held[0] < presence.seq:
                job.presence[presence.shard] = (presence.seq, item)
            return
        advert = wire.ADVERT_DECODER.decode(item.advert)
        broker = advert.broker
        job = self._pending.get((broker, item.device))
        if job is not None:  # already being checked: keep the newer advert
            if advert.seq > job.seq:
                job.advert, job.seq = item, advert.seq
            return
        attempt = (broker, item.device, wire.sha256(item.cert + item.cert_sig + item.key))
        if attempt in self._refused:
            raise VerificationError(f"advert of {broker[:16]}: certificate refused before")
        cert = Certificate.parse(item.cert)
        if cert.identity != broker or cert.device != item.device:
            raise VerificationError(f"advert of {broker[:16]}: certificate of another device")
        if len(self._pending) >= MAX_PENDING or not self._spend(source):
            self.dropped += 1
            self.over_budget += 1
            return
        job = _Job(broker, item.device, attempt, item, item, advert.seq)
        self._pending[(broker, item.device)] = job
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name="titsd-certs", daemon=True
            )  # fmt: skip
            self._worker.start()
        self.submitted += 1
        self._jobs.put(job)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the worker has checked everything handed to it (tests; shutdown)."""
        deadline = time.monotonic() + timeout
        while self.checked < self.submitted and time.monotonic() < deadline:
            time.sleep(0.005)

    def ready(self) -> list[wire.SignedAdvert | wire.PresenceUpdate]:
        """What the worker has finished: the held items of each certificate it accepted (the
        advert first), to be handled again; refusals are logged and remembered."""
        out: list[wire.SignedAdvert | wire.PresenceUpdate] = []
        while True:
            try:
                job = self._done.get_nowait()
            except queue.Empty:
                return out
            self._pending.pop((job.broker, job.device), None)
            if job.error is not None:
                if len(self._refused) >= MAX_REFUSED:
                    self._refused.clear()
                self._refused.add(job.attempt)
                log.warning("gossip.certificate_refused", broker=job.broker[:16], error=job.error)
                continue
            out.append(job.advert)
            out.extend(update for _, update in job.presence.values())

    def _spend(self, source: str) -> bool:
        now = self.clock()
        budget = self._budgets.get(source)
        if budget is None:
            if len(self._budgets) >= MAX_SOURCES:
                self._budgets.clear()
            budget = self._budgets[source] = _Budget(LEARN_BURST, now)
        budget.tokens = min(LEARN_BURST, budget.tokens + (now - budget.at) * LEARN_RATE)
        budget.at = now
        if budget.tokens < 1:
            return False
        budget.tokens -= 1
        return True

    def close(self) -> None:
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=10)
            self._worker = None

    # -- the worker's side ----------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._learn(job.broker, job.signed)
            except (IdentityError, VerificationError) as exc:
                job.error = exc.message
            except Exception as exc:  # noqa: BLE001 - a broken check refuses, never kills
                job.error = f"{type(exc).__name__}: {exc}"[:200]
            self.checked += 1
            self._done.put(job)
            if self.wake is not None:
                self.wake()

    def _learn(self, broker: str, signed: wire.SignedAdvert) -> None:
        """A broker's gossip certificate seen for the first time: GnuPG checks it, once (in the
        worker thread; `CertificateCache` only ever gains entries, which the loop reads)."""
        if not self.identity.has_key(broker):
            scanned = {k["fingerprint"] for k in self.identity.gpg.scan_keys_mem(signed.key)}
            if scanned != {broker}:
                raise VerificationError(f"advert of {broker[:16]} carries another key")
            self.identity.import_public(signed.key)
        self.certs.add(signed.cert, signed.cert_sig, expected_identity=broker)
