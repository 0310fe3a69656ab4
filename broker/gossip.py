"""Gossip over PUB/SUB: every broker publishes on its PUB and subscribes to the PUB of each
linked peer; what is new to it, it republishes, so adverts and presence flood the cloud.

PUB/SUB drops (slow joiners, high-water marks), so nothing relies on one frame arriving:
adverts and presence carry sequence numbers and are refreshed periodically, and a broker asks
a neighbour for a whole snapshot when a link comes up (the zguide's Clone pattern).
Frames are sealed with the cloud's gossip key (see admission.py).

One SUB socket follows every linked peer: libzmq takes a connection's CURVE server key from the
socket's options when `connect` is called, so each connect names its own PUB's key. (A SUB per
peer made every pass of the broker's loop poll that many more sockets: 11 µs a poll at 12.)
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import zmq

from tits import wire
from tits.errors import TitsError
from tits.log import sanitise

from .admission import Admission
from .peers import bind_endpoint, parse_url

log = structlog.get_logger("tits.broker.gossip")

MAX_GOSSIP_FRAME = 8 << 20


class Gossip:
    def __init__(
        self,
        ctx: zmq.Context,
        admission: Admission,
        curve_public: bytes,
        curve_secret: bytes,
        pub: zmq.Socket,
        bind: str,
        on_gossip: Callable[[object], None],
    ) -> None:
        """`pub`: a CURVE server PUB made by the broker (so ZAP covers it), not bound."""
        self.ctx, self.admission, self.on_gossip = ctx, admission, on_gossip
        self._curve = (curve_public, curve_secret)
        self.pub = pub
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 200)  # per subscriber: a reader that stalls loses
        # frames (healed by refresh and snapshots) instead of growing our memory
        self.port = bind_endpoint(self.pub, bind)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.MAXMSGSIZE, MAX_GOSSIP_FRAME)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.curve_publickey, self.sub.curve_secretkey = self._curve
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.subs: dict[str, tuple[str, str]] = {}  # peer → (its PUB URL, endpoint connected)

    def follow(self, peer_id: str, pub_url: str) -> None:
        """Subscribe to a linked peer's PUB (again, if its address changed)."""
        held = self.subs.get(peer_id)
        if held is not None and held[0] == pub_url:
            return
        self.unfollow(peer_id)
        try:
            endpoint, server_key = parse_url(pub_url)
        except TitsError as exc:
            log.warning("gossip.bad_pub_url", peer=peer_id[:16], error=exc.message)
            return
        self.sub.curve_serverkey = server_key  # for this connect only
        try:
            self.sub.connect(endpoint)
        except zmq.ZMQError as exc:
            log.warning("gossip.bad_pub_url", peer=peer_id[:16], error=str(exc))
            return
        self.subs[peer_id] = (pub_url, endpoint)

    def unfollow(self, peer_id: str) -> None:
        held = self.subs.pop(peer_id, None)
        if held is not None and held[1] not in {e for _, e in self.subs.values()}:
            try:
                self.sub.disconnect(held[1])
            except zmq.ZMQError:
                pass  # not connected (any more): nothing to undo

    def sockets(self) -> list[zmq.Socket]:
        return [self.sub]

    def publish(self, msg: object) -> None:
        try:
            self.pub.send(self.admission.seal_gossip(wire.encode(msg)), zmq.NOBLOCK)
        except zmq.Again:
            pass  # PUB never blocks; a dropped frame is healed by refresh and snapshots

    def handle(self, sock: zmq.Socket) -> None:
        for _ in range(256):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 1:
                log.warning("gossip.bad_frame", frames=len(frames))
                continue
            try:
                msg = wire.GOSSIP_DECODER.decode(self.admission.open_gossip(frames[0]))
            except TitsError as exc:
                log.warning("gossip.bad_frame", error=sanitise(exc.message))
                continue
            self.on_gossip(msg)

    def close(self) -> None:
        self.subs.clear()
        self.sub.close(0)
        self.pub.close(0)
