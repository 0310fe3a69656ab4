"""Direct connections for media: a chunk fetched from a broker that is not a neighbour goes
in one hop, not along the route.

Along the route, every relay decrypts and encrypts each chunk again (CURVE: about 3 ms a MiB
each way on the machines we measure on), so a download three hops from its holder cost
three times the CPU of one from a neighbour. A message still travels the route (it must be
stored and acknowledged hop by hop); a chunk is content-addressed and checked against its
hash where it lands, so any broker of the cloud that holds it may hand it over directly.

The dialing side (`MediaLinks`) opens a DEALER to the holder's peer URL, as its signed advert
names it (so the CURVE key is the one the holder signed), and says a `PeerHello` with
`media=True` and the cloud's admission proof. The holder's `PeerLinks` admits it as it admits
a link, but keeps it apart: it never becomes a link of the topology, carries no heartbeats,
and only `ChunkWant` is read from it (broker/peers.py). `ChunkWant`s wait until the holder's
hello comes back; a dial unanswered in HELLO_TIMEOUT, or refused, hands them back
(`on_failed`), and the broker asks along the route instead (a cloud whose brokers can reach
only their neighbours still works, and `media_direct = false` says so up front). A link idle
for IDLE_S closes, and so does one the holder answers with an error (it restarted and no
longer knows the connection): the next ask dials again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
import zmq

from tits import wire
from tits.errors import TitsError, WireError

from .admission import Admission
from .peers import HELLO_TIMEOUT, curve_dealer, parse_url

log = structlog.get_logger("tits.broker.media")

IDLE_S = 30.0  # a direct link nothing asked over this long closes
FAILED_S = 60.0  # after a failed dial, that broker is asked along the route for this long
MAX_LINKS = 32  # direct links open at once (beyond: the route)
MAX_PENDING = 256  # wants waiting for one dial's hello
MEDIA_HWM = 64  # frames queued per direct link (each a chunk at most)

Body = bytes | zmq.Frame


@dataclass
class _Link:
    broker: str
    sock: zmq.Socket
    server_key: str
    started: float
    used: float
    up: bool = False
    pending: list[wire.ChunkWant] = field(default_factory=list)


class MediaLinks:
    def __init__(
        self,
        ctx: zmq.Context,
        me: str,
        curve: tuple[bytes, bytes],
        admission: Admission,
        address_of: Callable[[str], str | None],
        hello: Callable[[], wire.PeerHello],
        on_found: Callable[[str, wire.ChunkFound, Body | None], None],
        on_failed: Callable[[str, list[wire.ChunkWant]], None],
    ) -> None:
        """`address_of(broker)`: its peer URL from its signed advert; `on_found(broker, msg,
        body)`: a chunk (or its absence) came; `on_failed(broker, wants)`: these could not go
        direct, send them along the route."""
        self.ctx, self.me, self._curve, self.admission = ctx, me, curve, admission
        self._address_of, self._hello = address_of, hello
        self._on_found, self._on_failed = on_found, on_failed
        self.links: dict[str, _Link] = {}
        self._by_sock: dict[zmq.Socket, _Link] = {}
        self._failed: dict[str, float] = {}  # broker → until when it is not dialed again
        self.changed = False  # a socket opened or closed: the broker rebuilds its poll set

    def sockets(self) -> list[zmq.Socket]:
        return list(self._by_sock)

    def owns(self, sock: zmq.Socket) -> bool:
        return sock in self._by_sock

    def send(self, broker: str, want: wire.ChunkWant, now: float | None = None) -> bool:
        """Ask `broker` directly. False: no direct link can be had now (ask along the route)."""
        now = time.monotonic() if now is None else now
        link = self.links.get(broker)
        if link is None:
            link = self._dial(broker, now)
            if link is None:
                return False
        link.used = now
        if not link.up:
            if len(link.pending) >= MAX_PENDING:
                return False
            link.pending.append(want)
            return True
        return self._transmit(link, want)

    def _dial(self, broker: str, now: float) -> _Link | None:
        if broker == self.me or now < self._failed.get(broker, 0.0):
            return None
        if len(self.links) >= MAX_LINKS:
            return None
        address = self._address_of(broker)
        if not address:
            return None
        try:
            endpoint, server_key = parse_url(address)
        except TitsError:
            return None
        sock = curve_dealer(self.ctx, server_key, self._curve, MEDIA_HWM)
        try:
            sock.connect(endpoint)
            hello = self._hello()
            hello.media = True
            hello.proof = self.admission.proof(self.me, self._curve[0].decode())
            sock.send(wire.encode(hello), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            sock.close(0)
            log.info("media.dial_failed", broker=broker[:16], error=str(exc))
            self._failed[broker] = now + FAILED_S
            return None
        link = _Link(broker, sock, server_key.decode(), now, now)
        self.links[broker] = link
        self._by_sock[sock] = link
        self.changed = True
        return link

    def _transmit(self, link: _Link, want: wire.ChunkWant) -> bool:
        try:
            link.sock.send(wire.encode(want), zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False  # its queue is full: the want times out and the client asks again

    def handle(self, sock: zmq.Socket, now: float) -> None:
        link = self._by_sock.get(sock)
        for _ in range(64):
            if link is None or sock.closed:
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if not 1 <= len(frames) <= 2:
                continue
            try:
                msg = wire.PEER_DECODER.decode(frames[0].buffer)
            except WireError as exc:
                log.warning("media.bad_frame", broker=link.broker[:16], error=exc.message[:200])
                continue
            if not link.up:
                self._answered(link, msg, now)
                link = self._by_sock.get(sock)
            elif isinstance(msg, wire.ChunkFound) and msg.to == self.me:
                # (one meant for another broker is dropped: a direct link is no relay)
                link.used = now
                self._on_found(link.broker, msg, frames[1] if len(frames) == 2 else None)
            elif isinstance(msg, wire.Error):
                # it no longer knows this connection (it restarted; ZeroMQ reconnected us
                # underneath): what was asked on it times out, the next ask dials again
                log.info("media.forgotten", broker=link.broker[:16], code=msg.code)
                self._close(link)
                return

    def _answered(self, link: _Link, msg: object, now: float) -> None:
        """The holder's first frame: its hello, from the broker we meant, with a valid proof
        for the CURVE key we dialed."""
        if (
            isinstance(msg, wire.PeerHello)
            and msg.media
            and msg.broker == link.broker
            and self.admission.admits(msg.broker, link.server_key, msg.proof)
        ):
            link.up = True
            pending, link.pending = link.pending, []
            for i, want in enumerate(pending):
                if not self._transmit(link, want):
                    self._on_failed(link.broker, pending[i:])
                    break
            return
        log.warning("media.refused", broker=link.broker[:16], got=type(msg).__name__)
        self._fail(link, now)

    def _fail(self, link: _Link, now: float) -> None:
        self._failed[link.broker] = now + FAILED_S
        pending, link.pending = link.pending, []
        self._close(link)
        if pending:
            self._on_failed(link.broker, pending)

    def _close(self, link: _Link) -> None:
        self.links.pop(link.broker, None)
        self._by_sock.pop(link.sock, None)
        link.sock.close(0)
        self.changed = True

    def tick(self, now: float) -> None:
        for link in list(self.links.values()):
            if not link.up and now - link.started > HELLO_TIMEOUT:
                log.info("media.dial_timeout", broker=link.broker[:16])
                self._fail(link, now)
            elif link.up and now - link.used > IDLE_S:
                self._close(link)
        for broker, until in list(self._failed.items()):
            if now >= until:
                del self._failed[broker]

    def forget(self, broker: str) -> None:
        """It left the cloud (or restarted with another key): a link to it goes."""
        link = self.links.get(broker)
        if link is not None:
            self._close(link)

    def close(self) -> None:
        for link in list(self.links.values()):
            self._close(link)
