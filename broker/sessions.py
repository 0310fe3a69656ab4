"""Client sessions: which CURVE key is on which connection and routing id, the login handshake
(challenge, GnuPG-checked login in worker threads), the binding of a key to one user's device,
and the garbage budget of each key.

`Sessions` owns that state and is handed what it needs: a `reply` to send on the client port,
the `Delivery` its devices attach to, a way to register a device's cursor, the login checker
and a pool to run it in. The login blob itself is checked in login.py.
"""

from __future__ import annotations

import math
import os
import queue
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from zmq.utils import z85

from tits import wire
from tits.log import sanitise
from tits.login import CHALLENGE_TTL_S

from .config import Limits
from .delivery import Delivery, Device
from .login import LoginOk, describe

if TYPE_CHECKING:
    from .cloud import Cloud

log = structlog.get_logger("titsd")

MAX_CONNS = 100_000
MAX_STRIKES = 100_000  # CURVE keys whose garbage count outlives their connection
MAX_PRESENCE_USERS = 100_000  # as in wire.PresenceUpdate
MAX_PRESENCE_DEVICES = 64  # as in wire.PresenceEntry
SETTLE_MS = 1500  # presence debounce + gossip + a forward or two, with room to spare
LOGIN_RESULTS = ("ok", "refused", "unavailable", "busy", "rate-limited", "no-challenge")

Reply = Callable[[bytes, Any], bool]
Verify = Callable[[wire.Login, bytes, bytes], LoginOk]


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
    batch: bool = False  # its client takes `wire.Deliveries`
    fd: int = -1  # the TCP connection its frames come on (-1: none now)
    link_lost: float = 0.0  # when that connection went (0: it is there)


class ZapPolicy:
    """ZAP policy: any CURVE client key, except keys dropped for sending garbage."""

    def __init__(self, banned: set[str]) -> None:
        self.banned = banned

    def callback(self, domain: str, key: bytes) -> bool:
        return key.decode("ascii", "replace") not in self.banned


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


class Sessions:
    def __init__(
        self,
        *,
        fingerprint: str,
        armored: bytes,
        limits: Limits,
        session_timeout: float,
        reply: Reply,
        delivery: Delivery,
        register_device: Callable[[str, str], None],
        verify: Verify,
        pool: Executor,
        wake: Callable[[], None],
        welcome: Callable[[], tuple[int, list[str]]] = lambda: (0, []),
        counters: dict[str, int] | None = None,
        gap_of: Callable[[str, str], wire.Gap | None] = lambda user, device: None,
        left: Callable[[str, str], None] = lambda user, device: None,
    ) -> None:
        # what retention took from a device (broker/retention.py), and its last sign of life
        self.gap_of, self.left = gap_of, left
        self.fingerprint, self.armored = fingerprint, armored
        self.limits, self.session_timeout = limits, session_timeout
        self.reply, self.delivery, self.register_device = reply, delivery, register_device
        self.verify, self.pool, self.wake, self.welcome = verify, pool, wake, welcome
        self.counters = counters if counters is not None else {}
        for name in ("refused", "logins"):
            self.counters.setdefault(name, 0)
        # every Error sent, by its code, and each login's outcome: read by /metrics at scrape
        # time (broker/metrics.py); both keyed by a closed set, so their size is bounded
        self.refusals: dict[str, int] = dict.fromkeys(wire.ERROR_CODES, 0)
        self.login_results: dict[str, int] = dict.fromkeys(LOGIN_RESULTS, 0)
        # the operator's (`titsd admin`): no logins while draining; a kicked user's logins
        # refused until the time given (monotonic)
        self.draining = False
        self.kicked: dict[str, float] = {}
        self.conns: dict[str, Conn] = {}
        self.by_device: dict[tuple[str, str], Conn] = {}
        self.routes: dict[bytes, Conn] = {}  # routing id → the key bound to it
        self.by_fd: dict[int, Conn] = {}  # TCP connection (its fd) → the key on it
        self.strikes: dict[str, int] = {}  # garbage counts of keys whose Conn was dropped
        self.banned: set[str] = set()  # read by the ZAP thread (ZapPolicy)
        self.results: queue.SimpleQueue[tuple[str, LoginOk | BaseException]] = queue.SimpleQueue()
        self.logins_inflight = 0
        self.presence_due = False  # the presence list changed: publish it
        delivery.on_gone = self.device_gone

    # -- reading ------------------------------------------------------------------------------

    def open_sessions(self) -> int:
        return sum(1 for c in self.conns.values() if c.device is not None)

    def local_presence(self) -> list[wire.PresenceEntry]:
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

    # -- connections --------------------------------------------------------------------------

    def conn_for(self, curve: str, route: bytes, fd: int, now: float) -> Conn | None:
        """The key's `Conn`, bound to the routing id and TCP connection this frame came on;
        None if the frame is not to be served (a dropped key, a full table, a taken id)."""
        conn = self.conns.get(curve)
        if conn is None:
            if len(self.conns) >= MAX_CONNS or curve in self.banned:
                return None  # (a dropped key's connection may outlive its Conn)
            conn = Conn(curve, b"", now, self.limits.burst, now)
            conn.garbage = self.strikes.pop(curve, 0)  # the budget is the key's, not the session's
            self.conns[curve] = conn
        elif conn.banned:
            return None
        if (conn.route != route or conn.fd != fd) and not self.bind_route(conn, route, fd):
            return None
        conn.last_seen = now
        if conn.device is not None and not conn.attached:
            self.attach(conn)
        return conn

    def bind_route(self, conn: Conn, route: bytes, fd: int) -> bool:
        """Bind `conn` (a CURVE key) to the routing id and TCP connection its frame came on.

        A client may pick its own routing id, and ROUTER sends to whatever connection holds it
        now. libzmq lets one live connection at a time hold an id, so a *second key* on an id
        means the first key's link is gone: deliveries to it stop at once (they would reach
        the newcomer), and the newcomer is refused for as long as the first key's session
        lasts. Delivery resumes when the first key is heard from again, on its own link."""
        owner = self.routes.get(route)
        if owner is not None and owner is not conn:
            if owner.route == route:
                self.unbind(owner, "route taken")
            log.warning("conn.route_in_use", curve=conn.curve[:12], owner=owner.curve[:12])
            self.counters["refused"] += 1
            self.refusals["route-in-use"] += 1
            self.reply(route, wire.Error(code="route-in-use", message="routing id in use"))
            return False
        if self.routes.get(conn.route) is conn and conn.route != route:
            del self.routes[conn.route]
        if self.by_fd.get(conn.fd) is conn:
            del self.by_fd[conn.fd]
        stale = self.by_fd.get(fd)
        if stale is not None and stale is not conn:
            self.unbind(stale, "fd reused")  # its disconnect was not seen: it is gone
        conn.route, conn.fd, conn.link_lost = route, fd, 0.0
        self.routes[route] = conn
        self.by_fd[fd] = conn
        if conn.device is not None:
            conn.device.route = route
        return True

    def unbind(self, conn: Conn, why: str) -> None:
        """`conn`'s link is gone: nothing more is sent to its routing id (whoever holds it
        next). Its session stays for `session_timeout`, and resumes on its next frame."""
        if self.by_fd.get(conn.fd) is conn:
            del self.by_fd[conn.fd]
        conn.fd = -1
        conn.link_lost = time.monotonic()
        if conn.device is not None and conn.attached:
            self.delivery.detach(conn.device)
            conn.attached = False
            log.info("conn.link_lost", curve=conn.curve[:12], why=why)

    def link_event(self, fd: int) -> None:
        """The TCP connection `fd` went (or a new one took the fd of one whose end we missed)."""
        conn = self.by_fd.get(fd)
        if conn is not None:
            self.unbind(conn, "disconnected")

    def expire(self, now: float) -> None:
        """A session lasts while its connection does, however quiet (libzmq's heartbeats find
        a dead peer, and the socket monitor says so): it ends `session_timeout` after the link
        went. A key that never logged in is forgotten once idle that long (its garbage count
        is kept in `strikes`)."""
        limit = now - self.session_timeout
        expired = [
            c
            for c in self.conns.values()
            if (c.link_lost and c.link_lost < limit) or (c.device is None and c.last_seen < limit)
        ]
        for conn in expired:
            self.logout(conn)
            self.unbind(conn, "expired")
            if self.routes.get(conn.route) is conn:
                del self.routes[conn.route]
            del self.conns[conn.curve]
            if conn.garbage and not conn.banned:
                if len(self.strikes) >= MAX_STRIKES:
                    del self.strikes[next(iter(self.strikes))]
                self.strikes[conn.curve] = conn.garbage

    # -- refusals -----------------------------------------------------------------------------

    def error(
        self, conn: Conn, code: wire.ErrorCode, message: str, ref: bytes | None = None
    ) -> None:
        self.refusals[code] = self.refusals.get(code, 0) + 1
        self.reply(conn.route, wire.Error(code=code, message=message[:1000], ref=ref))

    def garbage(
        self, conn: Conn, code: wire.ErrorCode, message: str, ref: bytes | None = None
    ) -> None:
        """Refuse a frame the client got wrong; past the key's budget, drop the key."""
        conn.garbage += 1
        self.counters["refused"] += 1
        if conn.garbage > self.limits.garbage:
            log.warning("conn.dropped", curve=conn.curve[:12], garbage=conn.garbage)
            self.error(conn, "dropped", "too many bad frames; this connection is dropped")
            self.logout(conn)
            conn.banned = True
            if len(self.banned) < MAX_CONNS:
                self.banned.add(conn.curve)
            return
        log.info("conn.refused", code=code, why=sanitise(message), curve=conn.curve[:12])
        self.error(conn, code, message, ref)

    # -- login --------------------------------------------------------------------------------

    def hello(self, conn: Conn, now: float) -> None:
        nonce = os.urandom(32)
        conn.nonce = nonce
        conn.nonce_expires = now + CHALLENGE_TTL_S
        self.reply(
            conn.route,
            wire.Challenge(
                nonce=nonce,
                broker=self.fingerprint,
                expires=int((time.time() + CHALLENGE_TTL_S) * 1000),
                key=self.armored,
            ),
        )

    def login(self, conn: Conn, msg: wire.Login, now: float) -> None:
        nonce, conn.nonce = conn.nonce, None  # a challenge answers one login attempt, at most
        if nonce is None or now > conn.nonce_expires:
            self.login_results["no-challenge"] += 1
            self.garbage(conn, "no-challenge", "ask for a challenge (hello) first")
            return
        if self.draining:  # the client tries the cloud's next broker
            self.login_results["unavailable"] += 1
            self.error(conn, "login-unavailable", "this broker is draining: log in at another")
            return
        until = self.kicked.get(msg.fingerprint)
        if until is not None and until > now:
            self.login_results["refused"] += 1
            self.error(
                conn, "login-refused",
                f"the operator logged you out: try again in {math.ceil((until - now) / 60)} min",
            )  # fmt: skip
            return
        if until is not None:
            del self.kicked[msg.fingerprint]
        while conn.logins and conn.logins[0] < now - 60.0:
            conn.logins.popleft()
        if len(conn.logins) >= self.limits.logins_per_minute or conn.login_busy:
            self.login_results["rate-limited"] += 1
            self.error(conn, "rate-limited", "too many login attempts")
            return
        if self.logins_inflight >= self.limits.login_queue:
            self.login_results["busy"] += 1
            self.error(conn, "busy", "the broker is busy; try again shortly")
            return
        conn.logins.append(now)
        conn.login_busy = True
        conn.listed = msg.listed
        conn.batch = msg.batch
        self.logins_inflight += 1
        curve_raw = z85.decode(conn.curve.encode())
        self.pool.submit(self._verify, conn.curve, msg, nonce, curve_raw)

    def _verify(self, curve: str, msg: wire.Login, nonce: bytes, curve_raw: bytes) -> None:
        """In a worker thread: GnuPG does the checking; the loop learns the result."""
        try:
            result: LoginOk | BaseException = self.verify(msg, nonce, curve_raw)
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the client
            result = exc
        self.results.put((curve, result))
        self.wake()

    def drain_results(self) -> None:
        """On the loop: the logins the workers finished."""
        while True:
            try:
                curve, result = self.results.get_nowait()
            except queue.Empty:
                return
            self.logins_inflight -= 1
            try:
                self.login_done(curve, result)
            except Exception:
                log.exception("login.handler_failed")

    def login_done(self, curve: str, result: LoginOk | BaseException) -> None:
        conn = self.conns.get(curve)
        if conn is None or conn.banned:
            return
        conn.login_busy = False
        if not isinstance(result, LoginOk):
            code, message, client_fault = describe(result)
            self.login_results["refused" if client_fault else "unavailable"] += 1
            log.warning("login.refused", curve=curve[:12], code=code, why=sanitise(message))
            if client_fault:
                self.garbage(conn, code, message)
            else:  # the broker's own trouble: the client may try again, unpunished
                self.error(conn, code, message)
            return
        self.logout(conn)
        key = (result.fingerprint, result.device)
        other = self.by_device.get(key)
        if other is not None and other is not conn:
            self.logout(other)  # the same device on a new connection replaces the old one
        conn.user = result
        conn.device = Device(
            result.fingerprint, result.device, conn.route, result.name, batch=conn.batch
        )
        self.by_device[key] = conn
        self.presence_due = True
        pending = self.attach(conn, welcome=True)
        self.counters["logins"] += 1
        self.login_results["ok"] += 1
        log.info("login.ok", user=result.fingerprint[:16], device=result.device, pending=pending)

    def attach(self, conn: Conn, welcome: bool = False) -> int:
        dev = conn.device
        if dev is None:
            return 0
        dev.route = conn.route
        pending = self.delivery.attach(dev)
        gap = self.gap_of(dev.user, dev.device) if welcome else None  # before `seen` moves
        self.register_device(dev.user, dev.device)
        conn.attached = True
        if welcome:
            settle_ms, brokers = self.welcome()
            self.reply(
                conn.route,
                wire.Welcome(
                    fingerprint=dev.user,
                    device=dev.device,
                    broker=self.fingerprint,
                    pending=pending,
                    settle_ms=settle_ms,
                    brokers=brokers,
                    gap=gap,
                ),
            )
        self.delivery.pump()
        return pending

    # -- the operator (titsd admin) -------------------------------------------------------

    def kick(self, user: str, seconds: float, now: float) -> int:
        """Log out every device of `user` here, and refuse their logins for `seconds`. Returns
        how many devices were logged out."""
        conns = [c for (fp, _), c in list(self.by_device.items()) if fp == user]
        for conn in conns:
            self.error(conn, "dropped", "the operator logged you out")
            self.logout(conn)
        if seconds > 0:
            if len(self.kicked) >= MAX_CONNS:
                del self.kicked[next(iter(self.kicked))]
            self.kicked[user] = now + seconds
        return len(conns)

    def drain(self, on: bool = True) -> int:
        """Draining: no new logins, and every device logged out, told to log in again, so its
        client moves to another broker of the cloud (this one answers login-unavailable).
        Returns how many devices were logged out. `on=False` takes logins again."""
        self.draining = on
        if not on:
            return 0
        conns = list(self.by_device.values())
        for conn in conns:
            self.error(conn, "not-logged-in", "this broker is draining: log in at another")
            self.logout(conn)
        return len(conns)

    def logout(self, conn: Conn) -> None:
        dev = conn.device
        if dev is None:
            return
        self.delivery.detach(dev)
        self.left(dev.user, dev.device)
        if self.by_device.get((dev.user, dev.device)) is conn:
            del self.by_device[(dev.user, dev.device)]
            self.presence_due = True
        conn.device = None
        conn.user = None
        conn.attached = False

    def device_gone(self, dev: Device) -> None:
        """Delivery found its route gone (EHOSTUNREACH)."""
        conn = self.by_device.get((dev.user, dev.device))
        if conn is not None and conn.device is dev:
            conn.attached = False  # re-attached when that CURVE key is heard from again
