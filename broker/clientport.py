"""The client port: drain the client ROUTER, check each frame (its CURVE binding, its size,
its kind, the sender's rate), batch sends for the broker's group commit, answer and refuse.

`ClientPort` owns the socket's receiving side and its monitor; `Replies` owns its sending
side (answers and deliveries). Sessions (sessions.py) and duplicate ids (dedup.py) are
handed in, and so is `commit`, which the broker runs for each drained batch of sends.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from tits import wire
from tits.errors import WireError

from .config import Limits
from .dedup import Dedup, Seen
from .delivery import Delivery, SendResult
from .sessions import Conn, Sessions

log = structlog.get_logger("titsd")

BATCH = 2048  # messages drained per turn before a group commit
MAX_FANOUT_BYTES = 16 << 20  # one body per message, but bound what a fan-out may cost
_MORE_NB = int(zmq.SNDMORE | zmq.NOBLOCK)  # plain ints: pyzmq's flag enums cost µs per send
_MORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_SRCFD = int(zmq.SRCFD)
_ACCEPTED, _DISCONNECTED = int(zmq.EVENT_ACCEPTED), int(zmq.EVENT_DISCONNECTED)
MONITOR_EVENTS = _ACCEPTED | _DISCONNECTED

_MEDIA = (wire.BlobOffer, wire.ChunkPut, wire.ChunkGet)
Batch = list[tuple[Conn, wire.Send, bytes]]
Dups = list[tuple[Conn, bytes]]
Commit = Callable[[Batch, Dups], None]


# `wire.Deliveries` as msgpack, up to its list of envelopes: {"k": "deliveries", "items": [...]}.
# The stored envelopes are joined on (no re-encoding, no object per item: msgspec.Raw and
# the encoder were a tenth of a fan-out's loop); tests/unit/test_broker_batch.py checks it
# against the encoder.
_DELIVERIES_HEAD = b"\x82\xa1k\xaadeliveries\xa5items"


def deliveries_frame(envs: list[bytes]) -> bytes:
    """The `Deliveries` frame of these encoded `Deliver`s (at most 65,535)."""
    n = len(envs)
    count = bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return b"".join((_DELIVERIES_HEAD, count, *envs))


class Replies:
    """Sending on the client ROUTER (`ROUTER_MANDATORY`, never blocking): answers, and the
    deliveries to devices. A send that fails is never counted as done."""

    def __init__(self, sock: zmq.Socket) -> None:
        # the backend's send, without the sugar layer's per-call checks (routing_id, group)
        self._send = super(zmq.Socket, sock).send

    def reply(self, route: bytes, msg: Any) -> bool:
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

    def deliver_many(self, route: bytes, envs: list[bytes], bodies: list[bytes]) -> SendResult:
        """One `Deliveries` message: [route, envelopes, body 1, ..., body n]."""
        frame = deliveries_frame(envs)
        try:
            send = self._send
            send(route, _MORE_NB)
            send(frame, _MORE)
            for body in bodies[:-1]:
                send(body, _MORE)
            send(bodies[-1], 0)
            return SendResult.OK
        except zmq.Again:
            return SendResult.FULL
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return SendResult.GONE
            raise

    def deliver(self, route: bytes, env: bytes, body: bytes | zmq.Frame) -> SendResult:
        """One message and its body (a frame received goes on as it is, without a copy)."""
        try:
            send = self._send
            send(route, _MORE_NB)  # ROUTER_MANDATORY: only this frame can fail
            send(env, _MORE)
            # copy=True makes the backend copy whatever the size; with copy=False it still
            # copies below the socket's copy_threshold (64 KiB). A 1 MiB chunk copied here
            # was a third of the loop's time while it served a download.
            send(body, 0, copy=False)
            return SendResult.OK
        except zmq.Again:
            return SendResult.FULL
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return SendResult.GONE
            raise


class ClientPort:
    def __init__(
        self,
        sock: zmq.Socket,
        monitor: zmq.Socket,
        *,
        limits: Limits,
        sessions: Sessions,
        dedup: Dedup,
        delivery: Delivery,
        commit: Commit,
        senders_of: Callable[[list[bytes]], dict[bytes, str]],
        counters: dict[str, int] | None = None,
    ) -> None:
        self.sock, self.monitor, self.limits = sock, monitor, limits
        self.sessions, self.dedup, self.delivery = sessions, dedup, delivery
        self.commit, self.senders_of = commit, senders_of
        self.counters = counters if counters is not None else {}
        self.counters.setdefault("refused", 0)
        self.moves_due = False  # acknowledgements moved cursors without a commit to carry them
        self.media: Any = None  # the BlobPort (broker/blobport.py) media frames go to

    # -- draining -----------------------------------------------------------------------------

    def drain(self) -> None:
        recv = self.sock.recv
        max_frames = self.limits.max_frames
        batch: Batch = []
        dups: Dups = []
        old: Batch = []
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
                acked |= self.on_frames(frames, extra, now, batch, dups, old)
            except Exception:  # a bug must cost one message, never the broker
                log.exception("conn.handler_failed")
        if old:
            self._resolve_old(old, batch, dups)
        if batch or dups:
            self.commit(batch, dups)
        elif acked:
            self.moves_due = True
        if acked or batch:
            self.delivery.pump(now)

    def drain_monitor(self) -> None:
        """Connections accepted and lost on the client port (libzmq's socket monitor)."""
        mon = self.monitor
        while True:
            try:
                frames = mon.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 1 or len(frames[0]) < 6:
                continue
            event, fd = struct.unpack("=HI", frames[0][:6])
            if event & (_DISCONNECTED | _ACCEPTED):
                # a disconnect; or a new connection on the fd of one whose disconnect we missed
                self.sessions.link_event(fd)

    def on_frames(
        self,
        frames: list[zmq.Frame],
        extra: int,
        now: float,
        batch: Batch,
        dups: Dups,
        old: Batch,
    ) -> bool:
        """Handle one client message; True if it acknowledged deliveries."""
        head = frames[0]
        try:
            curve = head.get("User-Id")
            fd = head.get(_SRCFD)  # which TCP connection: its disconnect ends the binding
        except zmq.ZMQError:  # no ZAP verdict: never serve a connection we cannot bind
            log.error("conn.no_user_id")
            return False
        if type(curve) is not str or type(fd) is not int:
            return False
        sessions = self.sessions
        route = head.bytes
        conn = sessions.conns.get(curve)
        if (
            conn is not None
            and conn.route == route
            and conn.fd == fd
            and not conn.banned
            and (conn.attached or conn.device is None)
        ):
            conn.last_seen = now  # the usual frame: `conn_for` has nothing to do
        else:
            conn = sessions.conn_for(curve, route, fd, now)
            if conn is None:
                return False
        if extra or len(frames) < 2:
            n = len(frames) - 1 + extra
            sessions.garbage(conn, "bad-frame", f"expected [envelope, body?], got {n} frames")
            return False
        try:
            msg = wire.CLIENT_DECODER.decode(frames[1].buffer)
        except wire.VersionError as exc:
            # not garbage (a newer client is no attacker), but it still pays for the answer
            if self.take_token(conn, now):
                sessions.error(conn, "version", exc.message)
            return False
        except WireError as exc:
            sessions.garbage(conn, "bad-frame", exc.message)
            return False
        kind = type(msg)
        if kind is not wire.Received and not self.take_token(conn, now):
            # acknowledgements are exempt: refusing one makes us deliver again, which costs
            # more — and stalled a receiver in the cloud benchmark until its window filled
            # (garbage has its own budget above)
            return False
        if kind is wire.Send:
            self._send(conn, msg, frames, batch, dups, old, now)
            return False
        if kind is wire.Received:
            if conn.device is None:
                sessions.error(conn, "not-logged-in", "log in first")
                return False
            if conn.attached:
                self.delivery.acked(conn.device, msg.ids)
            return True
        if kind is wire.Ping:
            user = conn.device.user if conn.device else None
            sessions.reply(conn.route, wire.Pong(t=msg.t, user=user))
        elif kind is wire.Hello:
            sessions.hello(conn, now)
        elif kind is wire.Login:
            sessions.login(conn, msg, now)
        elif kind is wire.Bye:
            sessions.logout(conn)  # the key's garbage count stays (a Bye does not reset it)
        elif kind in _MEDIA and self.media is not None:
            self.media.handle(conn.route, conn.device.user if conn.device else None, msg, frames)
        else:  # a kind this channel does not take
            sessions.garbage(conn, "bad-kind", f"{kind.__name__} is not for this port")
        return False

    def _send(
        self, conn: Conn, msg: wire.Send, frames: list[zmq.Frame], batch: Batch, dups: Dups,
        old: Batch, now: float,
    ) -> None:  # fmt: skip
        sessions = self.sessions
        if len(frames) != 3:
            sessions.garbage(conn, "bad-frame", "send needs [envelope, body]", msg.id)
            return
        dev = conn.device
        if dev is None:  # not garbage: a broker restart logs every client out
            sessions.error(conn, "not-logged-in", "log in first", msg.id)
            return
        if msg.sender != dev.user:
            log.warning("send.forged_sender", user=dev.user[:16], claimed=msg.sender[:16])
            sessions.garbage(conn, "forged-sender", "sender is not the logged-in user", msg.id)
            return
        if not msg.to:
            sessions.error(conn, "bad-request", "no recipients", msg.id)
            return
        if msg.purge is not None and msg.purge == msg.id:
            sessions.error(conn, "bad-request", "a message cannot take itself back", msg.id)
            return
        body = frames[2].bytes
        if len(body) > wire.MAX_BODY_FRAME:  # the socket's limit is a media chunk's
            limit = f"the body is over the {wire.MAX_BODY >> 20} MiB limit"
            sessions.error(conn, "too-big", limit, msg.id)
            return
        if len(body) * len(msg.to) > MAX_FANOUT_BYTES:  # (before its id is taken)
            sessions.error(conn, "too-big", "body × recipients is over the limit", msg.id)
            return
        seen = self.dedup.admit(msg.id, msg.sender, now)  # a new id is remembered
        if seen is Seen.NEW:
            batch.append((conn, msg, body))
        elif seen is Seen.DUPLICATE:
            dups.append((conn, msg.id))
        elif seen is Seen.CONFLICT:
            sessions.error(conn, "id-conflict", "message id already used", msg.id)
        else:
            old.append((conn, msg, body))

    def _resolve_old(self, old: Batch, batch: Batch, dups: Dups) -> None:
        """Ids older than the in-memory window: look them up in the store."""
        verdicts = self.dedup.resolve_old([(m.id, m.sender) for _, m, _ in old], self.senders_of)
        for (conn, msg, body), seen in zip(old, verdicts, strict=True):
            if seen is Seen.NEW:
                batch.append((conn, msg, body))
            elif seen is Seen.DUPLICATE:
                dups.append((conn, msg.id))
            else:
                self.sessions.error(conn, "id-conflict", "message id already used", msg.id)

    def take_token(self, conn: Conn, now: float) -> bool:
        """Token bucket: a frame costs one token; False (and refused) when there is none."""
        limits = self.limits
        tokens = min(limits.burst, conn.tokens + (now - conn.refill_at) * limits.rate)
        conn.refill_at = now
        if tokens < 1.0:
            conn.tokens = tokens
            self.counters["refused"] += 1
            self.sessions.error(conn, "rate-limited", "too many messages; slow down")
            return False
        conn.tokens = tokens - 1.0
        return True
