"""Links to peer brokers: a ROUTER we bind, a DEALER per link we dial, CURVE on both, an
admission handshake, heartbeats that measure round-trip times and declare silent peers dead.

Routing ids on our ROUTER are the ones ZeroMQ assigns, never chosen by the dialer: the design
suggested DEALER identity = broker id, but then any CURVE client that connects with a broker's
id first (or, with ROUTER_HANDOVER, last) captures that broker's traffic. A routing id is bound
to a broker only by an admitted hello, and every later frame must come with the same CURVE key.

One link per pair of brokers, whichever side dialed. Frames on a link are
``[envelope, body?]`` (``[routing id, envelope, body?]`` on the ROUTER). Forwards and their
acknowledgements are `queue`d and go out as one `PeerBatch` per peer when the broker's loop
calls `flush`. A link is *up* once
both sides have shown a `PeerHello` whose proof matches the cloud secret and the CURVE key
of that very connection; before that, nothing but a hello is read.

A hello with `media` set asks for a direct media connection instead (broker/medialinks.py):
admitted by the same proof, but never a link: no heartbeats, not in the topology, and only
`ChunkWant` is read from it (answered by `send_media`).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog
import zmq
from zmq.utils import z85

from tits import wire
from tits.errors import WireError
from tits.log import sanitise

from .admission import Admission

log = structlog.get_logger("tits.broker.peers")

HEARTBEAT_INTERVAL = 0.2
HEARTBEAT_LIVENESS = 5
HEARTBEAT_EXPIRY = HEARTBEAT_INTERVAL * HEARTBEAT_LIVENESS
HELLO_TIMEOUT = 1.5  # a dialed broker that says nothing this long is taken for dead
LAG_LOGGED = 0.25  # a gap between our own ticks this much over a heartbeat is logged
RTT_SAMPLES = 8
BASE_RTT_SAMPLES = 50  # 10 s of heartbeats
MAX_PEER_FRAME = 8 << 20
OUTBOX_MAX = 8192  # queued forwards per peer before `queue` reports it full...
COALESCE_S = 0.001  # a busy link gets a batch a millisecond at most: each batch costs the peer
# a pass of its loop (a poll of every socket, a send), and tiny ones made that most of a
# relay's time (31 % in poll alone); a link quiet for that long sends at once
OUTBOX_BYTES = 32 << 20  # ... or this many bytes of them (acknowledgements always go)
MAX_MEDIA_IN = 256  # direct media connections admitted at once (the oldest goes beyond)
PEER_HWM = 2000  # frames queued in ZeroMQ per link (each a batch, typically a few kB). Not
# much lower: heartbeats share the pipe, and at 128 a busy link lost them behind data, was
# declared dead, and the cloud re-planned under load (3-hop throughput fell to 14 %)


_ENDPOINT = re.compile(r"^tcp://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})\Z")


def parse_url(url: str) -> tuple[str, bytes]:
    """``tcp://HOST:PORT#<64 hex>`` → (endpoint, CURVE public key as z85). Peers hand us
    these, so anything `connect` could choke on (``*``, no port, port 0) is refused here."""
    endpoint, _, key = url.partition("#")
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    m = _ENDPOINT.match(endpoint)
    if m is None or not 0 < int(m.group(2)) < 65536 or len(raw) != 32:
        raise WireError(f"not a broker URL (tcp://HOST:PORT#CURVEKEY): {sanitise(url)}")
    return endpoint, z85.encode(raw)


def bind_endpoint(sock: zmq.Socket, endpoint: str) -> int:
    """Bind `tcp://HOST:PORT` (PORT 0: any free port) and return the port bound."""
    if endpoint.endswith(":0"):
        endpoint = endpoint[:-2] + ":*"
    sock.bind(endpoint)
    return int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])


def curve_dealer(
    ctx: zmq.Context, server_key: bytes, curve: tuple[bytes, bytes], hwm: int
) -> zmq.Socket:
    """A DEALER to a peer port, its options set before it connects (libzmq ignores them
    after)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_PEER_FRAME)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.curve_serverkey = server_key
    sock.curve_publickey, sock.curve_secretkey = curve
    return sock


def make_url(endpoint: str, curve_public_z85: bytes) -> str:
    return f"{endpoint}#{z85.decode(curve_public_z85).hex()}"


class PeerEvents(Protocol):
    def on_link_up(self, peer: Peer) -> None: ...
    def on_link_down(self, peer: Peer) -> None: ...
    def on_dial_failed(self, url: str, expect: str | None) -> None: ...
    def on_peer_message(self, peer: Peer, msg: object, body: bytes | zmq.Frame | None) -> None: ...
    def on_media_want(self, broker: str, rid: bytes, msg: wire.ChunkWant) -> None: ...


@dataclass
class Peer:
    id: str
    address: str = ""
    pub: str = ""
    http: str = ""
    out: zmq.Socket | None = None  # our DEALER, when we dialed
    in_rid: bytes | None = None  # its routing id on our ROUTER, when it dialed
    in_key: str | None = None  # the CURVE key its inbound connection authenticated with
    up: bool = False
    lost: bool = False  # went down by silence or unreachability, not by a goodbye
    redial: bool = False  # went down without a goodbye (lost, or it forgot us): dial it again
    since: float = 0.0
    last_heard: float = 0.0
    last_beat: float = 0.0
    rtts_ms: deque[float] = field(default_factory=lambda: deque(maxlen=BASE_RTT_SAMPLES))
    outbox: list[tuple[wire.Forward | wire.ForwardAck, bytes]] = field(default_factory=list)
    outbox_bytes: int = 0  # bodies of the forwards in `outbox`
    last_flush: float = 0.0  # when a batch last went to it

    @property
    def rtt_ms(self) -> float | None:
        """The median of the last few round trips: what the link takes now, queues and all."""
        recent = list(self.rtts_ms)[-RTT_SAMPLES:]
        return sorted(recent)[len(recent) // 2] if recent else None

    @property
    def base_rtt_ms(self) -> float | None:
        """The fastest round trip of the last 10 s: the link's distance without the time a
        heartbeat waits behind traffic. Routes follow this one: routing on queueing delay moves
        traffic to the idle brokers, which makes them the busy ones, and routes swing back and
        forth (the cloud benchmark saw all ten other brokers carry a 3-hop pair's traffic)."""
        return min(self.rtts_ms) if self.rtts_ms else None


def envelope_size(msg: wire.Forward | wire.ForwardAck) -> int:
    """A bound on the encoded size of `msg` (without encoding it): fixed fields, then 42 bytes
    a recipient. A batch is cut by this, so a group's forwards cannot outgrow a frame."""
    if isinstance(msg, wire.Forward):
        return 400 + len(msg.token) + 42 * (len(msg.to) + len(msg.deliver_to))
    return 64 + len(msg.token)


def batch_of(
    outbox: list[tuple[wire.Forward | wire.ForwardAck, bytes]],
) -> tuple[wire.PeerBatch, int]:
    """The next batch from the front of `outbox`, and how many items it took: at most
    BATCH_MAX, and at most BATCH_BYTES unless its one item is bigger. So a batch is under
    BATCH_BYTES + the biggest item (MAX_BODY and 256 recipients' envelope): well inside
    what a peer decodes."""
    batch, size, taken = wire.PeerBatch(), 0, 0
    for msg, body in outbox:
        n = envelope_size(msg) + len(body)
        if taken and (taken >= wire.BATCH_MAX or size + n > wire.BATCH_BYTES):
            break
        if isinstance(msg, wire.Forward):
            batch.fwds.append(msg)
            batch.bodies.append(body)
        else:
            batch.acks.append(msg)
        size += n
        taken += 1
    return batch, taken


@dataclass
class _Dial:
    """A DEALER we opened whose hello has not been answered yet."""

    sock: zmq.Socket
    url: str
    expect: str | None  # the broker id we meant to reach (None for a seed)
    started: float


class PeerLinks:
    def __init__(
        self,
        ctx: zmq.Context,
        me: str,
        curve_public: bytes,
        curve_secret: bytes,
        admission: Admission,
        events: PeerEvents,
        hello: Callable[[], wire.PeerHello],
        router: zmq.Socket,
        bind: str,
        known_key: Callable[[str], str | None] = lambda broker: None,
    ) -> None:
        """`router`: a CURVE server ROUTER made by the broker (so ZAP covers it), not bound."""
        self.ctx, self.me, self.admission, self.events = ctx, me, admission, events
        self._curve = (curve_public, curve_secret)
        self._hello = hello
        self._known_key = known_key  # the CURVE key a broker's signed advert names, if any
        self.changed = True  # the set of sockets to poll changed (a closed one must go)
        self.failed_dials = 0  # refused or unanswered, for the status page and tests
        self.router = router
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_PEER_FRAME)
        self.router.setsockopt(zmq.SNDHWM, PEER_HWM)
        self.router.setsockopt(zmq.RCVHWM, PEER_HWM)
        self.port = bind_endpoint(self.router, bind)
        self.peers: dict[str, Peer] = {}
        self.dials: dict[zmq.Socket, _Dial] = {}
        self._rid_owner: dict[bytes, str] = {}
        # direct media connections: routing id → (broker, the CURVE key it came with)
        self.media_in: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._queued: set[str] = set()  # peers with a non-empty outbox
        self._last_tick: float | None = None
        self.lag_s = 0.0  # the longest stall of our own loop seen (status page, tests)

    # -- sockets the broker polls ----------------------------------------------------------

    def sockets(self) -> list[zmq.Socket]:
        outs = [p.out for p in self.peers.values() if p.out is not None]
        return [self.router, *outs, *self.dials]

    def handle(self, sock: zmq.Socket, now: float) -> None:
        """Drain one readable socket (bounded, so one busy peer cannot starve the rest)."""
        for _ in range(256):
            if sock.closed:  # a frame just handled closed it (a goodbye, a refused hello)
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if sock is self.router:
                self._from_router(frames, now)
            else:
                self._from_dealer(sock, frames, now)

    # -- dialing -----------------------------------------------------------------------------

    def dial(self, url: str, expect: str | None = None, now: float | None = None) -> bool:
        """Open a link to `url` (unless one is up or being dialed); the hello goes at once."""
        if expect is not None and (expect == self.me or self.is_up(expect)):
            return False
        if any(d.url == url for d in self.dials.values()):
            return False
        endpoint, server_key = parse_url(url)
        known = self._known_key(expect) if expect else None
        if expect and known is not None and known != server_key.decode():
            raise WireError(f"{url[:40]}… is not the CURVE key {expect[:16]} advertises")
        sock = curve_dealer(self.ctx, server_key, self._curve, PEER_HWM)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise WireError(f"cannot connect to {sanitise(url)}: {exc}") from None
        self.changed = True
        hello = self._hello()
        hello.proof = self.admission.proof(self.me, self._curve[0].decode())
        sock.send(wire.encode(hello), zmq.NOBLOCK)
        self.dials[sock] = _Dial(sock, url, expect, time.monotonic() if now is None else now)
        log.debug("peer.dialing", url=url, expect=(expect or "")[:16])
        return True

    def _from_dealer(self, sock: zmq.Socket, frames: list[zmq.Frame], now: float) -> None:
        msg, body = self._decode(frames)
        if msg is None:
            return
        dial = self.dials.get(sock)
        if dial is not None:
            server_key = parse_url(dial.url)[1].decode()
            if not isinstance(msg, wire.PeerHello) or not self.admission.admits(
                msg.broker, server_key, msg.proof
            ):
                log.warning("peer.refused", url=dial.url, reason="bad hello from the dialed side")
                self._close_dial(sock)
                return
            known = self._known_key(msg.broker)
            if (
                (dial.expect and msg.broker != dial.expect)
                or msg.broker == self.me
                or (known is not None and known != server_key)
            ):
                log.warning("peer.refused", url=dial.url, got=msg.broker[:16])
                self._close_dial(sock)
                return
            del self.dials[sock]
            peer = self.peers.setdefault(msg.broker, Peer(msg.broker))
            if peer.out is not None and peer.out is not sock:
                peer.out.close(0)
                self.changed = True
            peer.out = sock
            self._came_up(peer, msg, now)
            return
        linked = next((p for p in self.peers.values() if p.out is sock), None)
        if linked is not None:
            self._on_message(linked, msg, body, now)

    def _from_router(self, frames: list[zmq.Frame], now: float) -> None:
        if len(frames) < 2:
            return
        rid = frames[0].bytes
        user = str(frames[1].get("User-Id"))
        msg, body = self._decode(frames[1:])
        if msg is None:
            self._reply(rid, wire.Error(code="bad-frame", message="undecodable peer frame"))
            return
        media = self.media_in.get(rid)
        if media is not None:
            if media[1] == user and isinstance(msg, wire.ChunkWant):
                self.events.on_media_want(media[0], rid, msg)
            return  # nothing else is read from a media connection
        owner = self._rid_owner.get(rid)
        if owner is not None and (peer := self.peers.get(owner)) and peer.in_key == user:
            if isinstance(msg, wire.PeerHello):
                return  # a repeated hello on an admitted link changes nothing
            self._on_message(peer, msg, body, now)
            return
        if not isinstance(msg, wire.PeerHello):
            self._reply(rid, wire.Error(code="not-admitted", message="send peer-hello first"))
            return
        known = self._known_key(msg.broker)
        if not self.admission.admits(msg.broker, user, msg.proof) or (
            known is not None and known != user
        ):  # holding the secret admits a broker, not any id it likes: a known id keeps its key
            log.warning("peer.refused", claimed=sanitise(msg.broker, 16), reason="bad proof")
            self._reply(rid, wire.Error(code="not-admitted", message="not of this cloud"))
            return
        if msg.broker == self.me:
            return
        if msg.media:
            self._admit_media(rid, msg.broker, user)
            return
        peer = self.peers.setdefault(msg.broker, Peer(msg.broker))
        if peer.in_rid is not None and peer.in_rid != rid:
            self._rid_owner.pop(peer.in_rid, None)  # it reconnected (a restart)
        peer.in_rid, peer.in_key = rid, user
        self._rid_owner[rid] = msg.broker
        hello = self._hello()
        hello.proof = self.admission.proof(self.me, self._curve[0].decode())
        self._reply(rid, hello)
        self._came_up(peer, msg, now)

    def _admit_media(self, rid: bytes, broker: str, key: str) -> None:
        self.media_in[rid] = (broker, key)
        while len(self.media_in) > MAX_MEDIA_IN:
            self.media_in.popitem(last=False)
        hello = self._hello()
        hello.media = True
        hello.proof = self.admission.proof(self.me, self._curve[0].decode())
        self._reply(rid, hello)
        log.debug("peer.media_in", broker=broker[:16])

    def send_media(self, rid: bytes, msg: object, body: bytes | zmq.Frame | None) -> bool:
        """An answer on a direct media connection (the chunk's frame goes without a copy)."""
        if rid not in self.media_in:
            return False
        frames: list[bytes | zmq.Frame] = [rid, wire.encode(msg)]
        if body is not None:
            frames.append(body)
        try:
            self.router.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.media_in.pop(rid, None)  # it closed the connection
            return False
        return True

    def _decode(self, frames: list[zmq.Frame]) -> tuple[object | None, bytes | zmq.Frame | None]:
        if not 1 <= len(frames) <= 2:
            log.warning("peer.bad_frame", frames=len(frames))
            return None, None
        try:
            msg = wire.PEER_DECODER.decode(frames[0].buffer)
        except WireError as exc:
            log.warning("peer.bad_frame", error=sanitise(exc.message))
            return None, None
        if len(frames) != 2:
            return msg, None
        if isinstance(msg, wire.ChunkFound):  # a chunk goes on as the frame it came in
            return msg, frames[1]
        return msg, frames[1].bytes

    def _came_up(self, peer: Peer, hello: wire.PeerHello, now: float) -> None:
        peer.address, peer.pub, peer.http = hello.address, hello.pub, hello.http
        peer.last_heard = now
        if not peer.up:
            peer.up, peer.since = True, now
            log.info("peer.up", peer=peer.id[:16], address=peer.address)
            self.events.on_link_up(peer)

    def _on_message(
        self, peer: Peer, msg: object, body: bytes | zmq.Frame | None, now: float
    ) -> None:
        if isinstance(msg, wire.Error):
            if msg.code == "not-admitted":  # it has forgotten us (it restarted, or dropped us)
                self.drop(peer.id, reason="peer no longer knows us", say_bye=False, redial=True)
            else:
                self.events.on_peer_message(peer, msg, body)
            return  # an error is no sign of a working link: it does not count as heard
        peer.last_heard = now
        match msg:
            case wire.Heartbeat(t=t):
                self.send(peer.id, wire.HeartbeatAck(t=t))
            case wire.HeartbeatAck(t=t):
                rtt = (time.monotonic_ns() - t) / 1e6
                if 0 <= rtt < 60_000:
                    peer.rtts_ms.append(rtt)
            case wire.PeerBye():
                self.drop(peer.id, reason="peer said goodbye", say_bye=False)
            case wire.PeerBatch(fwds=fwds, bodies=bodies, acks=acks):
                if len(bodies) != len(fwds):
                    log.warning("peer.bad_batch", peer=peer.id[:16], fwds=len(fwds))
                    return
                for fwd, fwd_body in zip(fwds, bodies, strict=True):
                    self.events.on_peer_message(peer, fwd, fwd_body)
                for ack in acks:
                    self.events.on_peer_message(peer, ack, None)
            case _:
                self.events.on_peer_message(peer, msg, body)

    # -- sending -----------------------------------------------------------------------------

    def is_up(self, peer_id: str) -> bool:
        peer = self.peers.get(peer_id)
        return peer is not None and peer.up

    def up_peers(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.up]

    def send(self, peer_id: str, msg: object, body: bytes | zmq.Frame | None = None) -> bool:
        """False when the frame could not be queued (peer gone or full): the caller retries."""
        peer = self.peers.get(peer_id)
        if peer is None or not peer.up:
            return False
        return self._transmit(
            peer, [wire.encode(msg)] if body is None else [wire.encode(msg), body]
        )

    def queue(self, peer_id: str, msg: wire.Forward | wire.ForwardAck, body: bytes = b"") -> bool:
        """Put a forward (with its body) or an acknowledgement in the peer's next batch.
        False when the peer is gone, or so far behind that its outbox is full (an
        acknowledgement is always taken: it is small, and it lets the other side let go)."""
        peer = self.peers.get(peer_id)
        if peer is None or not peer.up:
            return False
        if isinstance(msg, wire.Forward):
            if len(peer.outbox) >= OUTBOX_MAX or peer.outbox_bytes >= OUTBOX_BYTES:
                return False
            peer.outbox_bytes += len(body)
        peer.outbox.append((msg, body))
        self._queued.add(peer_id)
        return True

    def flush(self, now: float | None = None) -> None:
        """Send outboxes as batches. With `now`, a peer sent a batch less than COALESCE_S ago
        waits until then (its next batch grows meanwhile; `flush_due` says when); a quiet
        link's batch goes at once. What the peer's queue has no room for stays for the next
        flush; an outbox lost with its link is retried by whoever sent into it (nothing in it
        is acknowledged to anyone yet)."""
        for peer_id in list(self._queued):
            peer = self.peers.get(peer_id)
            if peer is None or not peer.up:
                self._queued.discard(peer_id)
                continue
            if now is not None:
                if now - peer.last_flush < COALESCE_S and len(peer.outbox) < wire.BATCH_MAX:
                    continue
                peer.last_flush = now
            while peer.outbox:
                batch, taken = batch_of(peer.outbox)
                if not self._transmit(peer, [wire.encode(batch)]):
                    break
                del peer.outbox[:taken]
                peer.outbox_bytes -= sum(map(len, batch.bodies))
            if not peer.outbox:
                self._queued.discard(peer_id)

    def flush_due(self) -> float | None:
        """When the next held-back batch is due (monotonic), or None when nothing waits."""
        due = [p.last_flush + COALESCE_S for i in self._queued if (p := self.peers.get(i))]
        return min(due) if due else None

    def _transmit(self, peer: Peer, frames: list[bytes | zmq.Frame]) -> bool:
        try:
            if peer.out is not None:
                peer.out.send_multipart(frames, zmq.NOBLOCK)
            elif peer.in_rid is not None:
                self.router.send_multipart([peer.in_rid, *frames], zmq.NOBLOCK)
            else:
                return False
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.drop(peer.id, reason="unreachable", say_bye=False, lost=True)
                return False
            raise
        return True

    def _reply(self, rid: bytes, msg: object) -> None:
        try:
            self.router.send_multipart([rid, wire.encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the other side is gone or full: a reply to a stranger is best effort

    # -- time --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self._own_lag(now)
        for peer in list(self.peers.values()):
            if not peer.up:
                continue
            if now - peer.last_heard > HEARTBEAT_EXPIRY:
                self.drop(peer.id, reason="heartbeats stopped", say_bye=False, lost=True)
            elif now - peer.last_beat >= HEARTBEAT_INTERVAL:
                peer.last_beat = now
                self.send(peer.id, wire.Heartbeat(t=time.monotonic_ns()))
        for sock, dial in list(self.dials.items()):
            if now - dial.started > HELLO_TIMEOUT:
                log.info("peer.dial_timeout", url=dial.url)
                self._close_dial(sock)
                self.events.on_dial_failed(dial.url, dial.expect)

    def _own_lag(self, now: float) -> None:
        """Silence is counted only over the time our own loop ran on schedule: a gap between
        two of our ticks beyond a heartbeat interval (our loop stalled: GC, a slow disk, the
        process stopped, a starved CPU) is added to every peer's last-heard time and every
        dial's start, so a broker that lagged does not blame its peers for its own gap. A loop
        that is merely slow (passes of 0.3 s) still notices a dead peer, later (1.5 s)."""
        last, self._last_tick = self._last_tick, now
        if last is None:
            return
        excess = now - last - HEARTBEAT_INTERVAL
        if excess <= 0:
            return
        self.lag_s = max(self.lag_s, now - last)
        if excess > LAG_LOGGED:
            log.info("peer.own_loop_lagged", gap_ms=round((now - last) * 1000))
        for peer in self.peers.values():
            peer.last_heard = min(now, peer.last_heard + excess)
        for dial in self.dials.values():
            dial.started = min(now, dial.started + excess)

    def _close_dial(self, sock: zmq.Socket) -> None:
        if self.dials.pop(sock, None) is not None:
            self.failed_dials += 1
        sock.close(0)
        self.changed = True

    def drop(
        self,
        peer_id: str,
        reason: str,
        say_bye: bool = True,
        lost: bool = False,
        redial: bool = False,
    ) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        if say_bye and peer.up:
            self.flush()  # what it was sent before the goodbye, so it need not be retried
            self.send(peer_id, wire.PeerBye())  # before it is forgotten, or it goes nowhere
            if self.peers.get(peer_id) is not peer:
                return  # the send found it unreachable and dropped it already
        del self.peers[peer_id]
        peer.lost = lost
        peer.redial = lost or redial
        if peer.out is not None:
            peer.out.close(0)
            self.changed = True
        if peer.in_rid is not None:
            self._rid_owner.pop(peer.in_rid, None)
        if peer.up:
            peer.up = False
            log.info("peer.down", peer=peer_id[:16], reason=reason)
            self.events.on_link_down(peer)

    def close(self) -> None:
        for peer_id in list(self.peers):
            self.drop(peer_id, reason="shutting down")
        for sock in list(self.dials):
            self._close_dial(sock)
        self.router.close(0)
