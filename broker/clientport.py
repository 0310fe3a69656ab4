"""The client port: drain the client ROUTER, check each frame (its CURVE binding, its size,
its kind, the sender's rate), batch sends for the broker's group commit, answer and refuse.

A mixin of `Broker`, like sessions.py, so that server.py keeps the loop, the commit and
delivery; it uses the broker's connections, limits, dedup and counters.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
import zmq

from tits import wire
from tits.errors import WireError
from tits.log import sanitise

from .sessions import Conn

if TYPE_CHECKING:
    from .server import Broker

log = structlog.get_logger("titsd")

BATCH = 2048  # messages drained per turn before a group commit
MAX_CONNS = 100_000
MAX_FANOUT_BYTES = 16 << 20  # one message stored once per recipient: bound the product
_MORE_NB = int(zmq.SNDMORE | zmq.NOBLOCK)  # plain ints: pyzmq's flag enums cost µs per send
_NOBLOCK = int(zmq.NOBLOCK)


class ClientPort:
    def _drain_client(self: Broker) -> None:
        sock = self.client
        recv = sock.recv
        max_frames = self.limits.max_frames
        batch: list[tuple[Conn, wire.Send, bytes]] = []
        dups: list[tuple[Conn, bytes]] = []
        old: list[tuple[Conn, wire.Send, bytes]] = []
        now = time.monotonic()
        acked = False
        for _ in range(BATCH):
            try:
                first = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            frames = [first]
            extra = 0
            f = first
            while f.more:
                f = recv(copy=False)
                if len(frames) <= max_frames:
                    frames.append(f)
                else:
                    extra += 1
            try:
                acked |= self._on_frames(frames, extra, now, batch, dups, old)
            except Exception:  # a bug must cost one message, never the broker
                log.exception("conn.handler_failed")
        if old:
            self._check_old(old, batch, dups)
        if batch or dups:
            self._commit(batch, dups)
        elif acked:
            self._moves_due = True
        if acked or batch:
            self.delivery.pump(now)

    def _on_frames(
        self: Broker,
        frames: list[zmq.Frame],
        extra: int,
        now: float,
        batch: list[tuple[Conn, wire.Send, bytes]],
        dups: list[tuple[Conn, bytes]],
        old: list[tuple[Conn, wire.Send, bytes]],
    ) -> bool:
        """Handle one client message; True if it acknowledged deliveries."""
        head = frames[0]
        try:
            curve = str(head.get("User-Id"))  # ZAP set it: the CURVE key, z85 text
        except zmq.ZMQError:  # no ZAP verdict: never serve a connection we cannot bind
            log.error("conn.no_user_id")
            return False
        route = head.bytes
        conn = self.conns.get(curve)
        if conn is None:
            if len(self.conns) >= MAX_CONNS:
                return False
            conn = Conn(curve, route, now, self.limits.burst, now)
            self.conns[curve] = conn
        elif conn.banned:
            return False
        if conn.route != route:
            conn.route = route
            if conn.device is not None:
                conn.device.route = route
        conn.last_seen = now
        if conn.device is not None and not conn.attached:
            self._attach(conn)
        if extra or len(frames) < 2:
            n = len(frames) - 1 + extra
            self._garbage(conn, "bad-frame", f"expected [envelope, body?], got {n} frames")
            return False
        try:
            msg = wire.CLIENT_DECODER.decode(frames[1].buffer)
        except wire.VersionError as exc:
            # not garbage (a newer client is no attacker), but it still pays for the answer
            if self._take_token(conn, now):
                self._error(conn, "version", exc.message)
            return False
        except WireError as exc:
            self._garbage(conn, "bad-frame", exc.message)
            return False
        if type(msg) is not wire.Received:
            # token bucket: a frame costs one token. Acknowledgements are exempt: refusing one
            # makes us deliver again, which costs more — and stalled a receiver in the cloud
            # benchmark until its window filled (garbage has its own budget above)
            if not self._take_token(conn, now):
                return False
        if type(msg) is wire.Send:
            if len(frames) != 3:
                self._garbage(conn, "bad-frame", "send needs [envelope, body]", msg.id)
                return False
            dev = conn.device
            if dev is None:  # not garbage: a broker restart logs every client out
                self._error(conn, "not-logged-in", "log in first", msg.id)
                return False
            if msg.sender != dev.user:
                log.warning("send.forged_sender", user=dev.user[:16], claimed=msg.sender[:16])
                self._garbage(conn, "forged-sender", "sender is not the logged-in user", msg.id)
                return False
            if not msg.to:
                self._error(conn, "bad-request", "no recipients", msg.id)
                return False
            prev = self.recent.get(msg.id)
            if prev is not None:
                if prev[0] != msg.sender:
                    self._error(conn, "id-conflict", "message id already used", msg.id)
                    return False
                dups.append((conn, msg.id))
                return False
            body = frames[2].bytes
            if len(body) * len(msg.to) > MAX_FANOUT_BYTES:
                self._error(conn, "too-big", "body × recipients is over the limit", msg.id)
                return False
            if wire.msg_id_time_ms(msg.id) <= self.dedup_floor_ms:
                old.append((conn, msg, body))
            else:
                self.recent[msg.id] = (msg.sender, now)
                batch.append((conn, msg, body))
            return False
        if type(msg) is wire.Received:
            if conn.device is None:
                self._error(conn, "not-logged-in", "log in first")
                return False
            if conn.attached:
                self.delivery.acked(conn.device, msg.ids)
            return True
        if type(msg) is wire.Ping:
            self._reply(
                conn.route, wire.Pong(t=msg.t, user=conn.device.user if conn.device else None)
            )
        elif type(msg) is wire.Hello:
            self._hello(conn, now)
        elif type(msg) is wire.Login:
            self._login(conn, msg, now)
        elif type(msg) is wire.Bye:
            self._logout(conn)
            self.conns.pop(conn.curve, None)
        else:  # a kind this channel does not take
            self._garbage(conn, "bad-kind", f"{type(msg).__name__} is not for this port")
        return False

    def _take_token(self: Broker, conn: Conn, now: float) -> bool:
        """Token bucket: a frame costs one token; False (and refused) when there is none."""
        tokens = min(self.limits.burst, conn.tokens + (now - conn.refill_at) * self.limits.rate)
        conn.refill_at = now
        if tokens < 1.0:
            conn.tokens = tokens
            self.counters["refused"] += 1
            self._error(conn, "rate-limited", "too many messages; slow down")
            return False
        conn.tokens = tokens - 1.0
        return True

    # -- replies and refusals -----------------------------------------------------------------

    def _reply(self: Broker, route: bytes, msg: Any) -> bool:
        try:
            self._send(route, _MORE_NB)
            self._send(wire.encode(msg), 0)
            return True
        except zmq.Again:
            return False  # its queue is full; a client retries what is not answered
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return False
            raise

    def _error(
        self: Broker, conn: Conn, code: wire.ErrorCode, message: str, ref: bytes | None = None
    ) -> None:
        self._reply(conn.route, wire.Error(code=code, message=message[:1000], ref=ref))

    def _garbage(
        self: Broker, conn: Conn, code: wire.ErrorCode, message: str, ref: bytes | None = None
    ) -> None:
        conn.garbage += 1
        self.counters["refused"] += 1
        if conn.garbage > self.limits.garbage:
            log.warning("conn.dropped", curve=conn.curve[:12], garbage=conn.garbage)
            self._error(conn, "dropped", "too many bad frames; this connection is dropped")
            self._logout(conn)
            conn.banned = True
            if len(self.banned) < MAX_CONNS:
                self.banned.add(conn.curve)
            return
        log.info("conn.refused", code=code, why=sanitise(message), curve=conn.curve[:12])
        self._error(conn, code, message, ref)
