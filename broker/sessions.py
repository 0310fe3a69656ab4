"""Client sessions: the login handshake (challenge, GnuPG-checked login in worker threads)
and the binding of a connection's CURVE key to one user's device.

A mixin of `Broker`, kept apart so the message loop in server.py stays readable; it uses the
broker's connections, delivery and writer. The login blob itself is checked in login.py.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from zmq.utils import z85

from tits import wire
from tits.log import sanitise
from tits.login import CHALLENGE_TTL_S

from .delivery import Device
from .login import LoginOk, describe
from .store import Job

if TYPE_CHECKING:
    from .cloud import Cloud
    from .server import Broker

log = structlog.get_logger("titsd")

MAX_PRESENCE_USERS = 100_000  # as in wire.PresenceUpdate
MAX_PRESENCE_DEVICES = 64  # as in wire.PresenceEntry
SETTLE_MS = 1500  # presence debounce + gossip + a forward or two, with room to spare


@dataclass(eq=False)
class Conn:
    """One CURVE key's connection (it may reconnect with a new routing id)."""

    curve: str  # z85 CURVE public key (the User-Id ZAP set)
    route: bytes
    last_seen: float
    tokens: float
    refill_at: float
    garbage: int = 0
    banned: bool = False
    nonce: bytes | None = None
    nonce_expires: float = 0.0
    logins: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    login_busy: bool = False
    device: Device | None = None
    user: LoginOk | None = None
    attached: bool = False
    listed: bool = True  # may status pages show the user's name


def cloud_client_urls(cloud: Cloud, limit: int = wire.MAX_WELCOME_BROKERS) -> list[str]:
    """The client URLs of the brokers `cloud` knows from its topology, this one first, then
    those it can reach, then the others still advertised alive (a goodbye advert is left out),
    at most `limit`."""
    topology = cloud.topology
    reachable = topology.planning_graph()
    others = []
    for bid in topology.db:
        advert = topology.advert(bid)
        if bid == cloud.me or advert is None or not advert.alive:
            continue
        url = advert.client
        if url and len(url) <= 256 and url != cloud.client_url:
            others.append((not reachable.get(bid), bid, url))
    others.sort()
    urls = [cloud.client_url]
    for *_, url in others:
        if len(urls) >= limit:
            break
        if url not in urls:
            urls.append(url)
    return urls


class ZapPolicy:
    """ZAP policy: any CURVE client key, except keys dropped for sending garbage."""

    def __init__(self: Broker, banned: set[str]) -> None:
        self.banned = banned

    def callback(self: Broker, domain: str, key: bytes) -> bool:
        return key.decode("ascii", "replace") not in self.banned


class Sessions:
    # -- login --------------------------------------------------------------------------------

    def _hello(self: Broker, conn: Conn, now: float) -> None:
        nonce = os.urandom(32)
        conn.nonce = nonce
        conn.nonce_expires = now + CHALLENGE_TTL_S
        self._reply(
            conn.route,
            wire.Challenge(
                nonce=nonce,
                broker=self.fingerprint,
                expires=int((time.time() + CHALLENGE_TTL_S) * 1000),
                key=self.armored,
            ),
        )

    def _login(self: Broker, conn: Conn, msg: wire.Login, now: float) -> None:
        nonce, conn.nonce = conn.nonce, None  # a challenge answers one login attempt, at most
        if nonce is None or now > conn.nonce_expires:
            self._garbage(conn, "no-challenge", "ask for a challenge (hello) first")
            return
        while conn.logins and conn.logins[0] < now - 60.0:
            conn.logins.popleft()
        if len(conn.logins) >= self.limits.logins_per_minute or conn.login_busy:
            self._error(conn, "rate-limited", "too many login attempts")
            return
        if self._logins_inflight >= self.limits.login_queue:
            self._error(conn, "busy", "the broker is busy; try again shortly")
            return
        conn.logins.append(now)
        conn.login_busy = True
        conn.listed = msg.listed
        self._logins_inflight += 1
        curve_raw = z85.decode(conn.curve.encode())
        self.pool.submit(self._verify_login, conn.curve, msg, nonce, curve_raw)

    def _verify_login(
        self: Broker, curve: str, msg: wire.Login, nonce: bytes, curve_raw: bytes
    ) -> None:
        """In a worker thread: GnuPG does the checking; the loop learns the result."""
        try:
            result: LoginOk | BaseException = self.verifier.verify(msg, nonce, curve_raw)
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the client
            result = exc
        self.results.put((curve, nonce, result))
        try:
            os.write(self._wake_w, b"l")
        except OSError:
            pass

    def _login_done(self: Broker, curve: str, result: LoginOk | BaseException) -> None:
        conn = self.conns.get(curve)
        if conn is None or conn.banned:
            return
        conn.login_busy = False
        if not isinstance(result, LoginOk):
            code, message, client_fault = describe(result)
            log.warning("login.refused", curve=curve[:12], code=code, why=sanitise(message))
            if client_fault:
                self._garbage(conn, code, message)
            else:  # the broker's own trouble: the client may try again, unpunished
                self._error(conn, code, message)
            return
        self._logout(conn)
        key = (result.fingerprint, result.device)
        other = self.by_device.get(key)
        if other is not None and other is not conn:
            self._logout(other)  # the same device on a new connection replaces the old one
        conn.user = result
        conn.device = Device(result.fingerprint, result.device, conn.route, result.name)
        self.by_device[key] = conn
        self._presence_due = True
        pending = self._attach(conn, welcome=True)
        self.counters["logins"] += 1
        log.info(
            "login.ok",
            user=result.fingerprint[:16],
            device=result.device,
            pending=pending,
        )

    def _attach(self: Broker, conn: Conn, welcome: bool = False) -> int:
        dev = conn.device
        if dev is None:
            return 0
        dev.route = conn.route
        pending = self.delivery.attach(dev)
        self.writer.submit(Job(devices=[(dev.user, dev.device)]))
        conn.attached = True
        if welcome:
            self._reply(
                conn.route,
                wire.Welcome(
                    fingerprint=dev.user,
                    device=dev.device,
                    broker=self.fingerprint,
                    pending=pending,
                    settle_ms=SETTLE_MS if self.cloud.peers.up_peers() else 0,
                    brokers=cloud_client_urls(self.cloud),
                ),
            )
        self.delivery.pump()
        return pending

    def _logout(self: Broker, conn: Conn) -> None:
        dev = conn.device
        if dev is None:
            return
        self.delivery.detach(dev)
        if self.by_device.get((dev.user, dev.device)) is conn:
            del self.by_device[(dev.user, dev.device)]
            self._presence_due = True
        conn.device = None
        conn.user = None
        conn.attached = False

    def _device_gone(self: Broker, dev: Device) -> None:
        conn = self.by_device.get((dev.user, dev.device))
        if conn is not None and conn.device is dev:
            conn.attached = False  # re-attached when that CURVE key is heard from again

    def _local_presence(self: Broker) -> list[wire.PresenceEntry]:
        """Who is online here, within the wire's limits: receivers refuse a whole list if one
        entry breaks them, so one user with too many devices must not hide everyone."""
        users: dict[str, wire.PresenceEntry] = {}
        for (user, device), conn in self.by_device.items():
            entry = users.get(user)
            if entry is None:
                if len(users) >= MAX_PRESENCE_USERS:
                    continue
                name = conn.user.name if conn.user is not None and conn.listed else ""
                entry = users[user] = wire.PresenceEntry(user, [], name[:200])
            if len(entry.devices) < MAX_PRESENCE_DEVICES:
                entry.devices.append(device)
        return sorted(users.values(), key=lambda e: e.fingerprint)
