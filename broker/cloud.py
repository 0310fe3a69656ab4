"""The broker's part in the cloud: peer links, gossip, topology, presence, join and repair.

`Cloud` owns the peer ROUTER, the gossip PUB and the sockets it opens to peers; the broker's
poll loop reads them through `sockets()`/`handle()` and calls `tick()` often. What to do with
forwarded messages (store, deliver, pass on) is the broker's: `Cloud` only moves them to the
next hop on the shortest path and reports acknowledgements, through `CloudHost`.

Join: dial the seeds, ask one for a snapshot, then link to the peers `join_plan` names and let
go of seeds it did not name. Restart: the persisted topology names our old neighbours, which
we dial as seeds. Repair: when the live graph breaks an invariant, every broker computes the
same `repair_plan` and dials the pairs where it is the smaller fingerprint; a pair still not
linked after `REPAIR_GRACE` is dialed by the other side too (views can differ for a moment).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import structlog
import zmq

from tits import wire
from tits.errors import TitsError, WireError
from tits.router import join_plan, repair_plan

from . import cloudview
from .admission import Admission
from .config import url_host
from .directory import SHARDS, Directory, split
from .gossip import Gossip
from .medialinks import MediaLinks
from .peers import Peer, PeerLinks, make_url, parse_url
from .signer import BrokerSigner, BrokerVerifier, CertPending
from .topology import Topology

log = structlog.get_logger("tits.broker.cloud")

ADVERT_REFRESH = 2.0  # re-advertise this often even when nothing changed (PUB/SUB drops)
ADVERT_DEBOUNCE = 0.05  # coalesce bursts of link changes into one advert
PRESENCE_REFRESH = 5.0
PRESENCE_DEBOUNCE = 0.02
SNAPSHOT_EVERY = 15.0
REPAIR_EVERY = 0.25
REPAIR_GRACE = 1.5
SEED_RETRY = 2.0
REDIAL_FIRST = 0.3  # a broker lost without a goodbye is dialed again after this long ...
REDIAL_MAX = 30.0  # ... then twice as long each time, up to this ...
REDIAL_FOR = 600.0  # ... for this long, then it is given up (it would have advertised by now)
MAX_REDIAL = 256
RESNAPSHOT_GAP = 10.0  # gossip a budget dropped is asked for again at most this often (an
# insider's flood must not make us pull a whole cloud's snapshot from a peer every second)
JOIN_WAIT = 5.0  # a joining broker plans once every advert of the snapshot is checked, or this
SAVE_EVERY = 1.0
HOP_COST_US = 20_000  # a hop costs a relay's CPU (and, when it is stuck, a store); on a LAN an
# RTT mostly measures how busy the other broker is, and detours through idle brokers cost more
SNAPSHOT_MIN_GAP = 1.0
SNAPSHOT_PAGE_BYTES = 1 << 20
MAX_SEEDS = 8


def rtt_bucket(rtt_ms: float | None) -> int:
    """The round-trip time in µs rounded up to a power of two (at least 256)."""
    rtt_us = max(256, int((rtt_ms if rtt_ms is not None else 1.0) * 1000))
    return min(1 << (rtt_us - 1).bit_length(), 1 << 25)


def link_cost(bucket: int) -> int:
    """A link's cost in µs: a fixed price per hop plus its RTT bucket. Raw RTTs swing with CPU
    load; brokers that see different costs for a moment route in loops (the cloud benchmark
    saw 4.1 hops travelled for a 3-hop pair, over 10 relays), so RTTs count only by powers of
    two, and a detour must save more than a hop's own price."""
    return min(HOP_COST_US + bucket, 60_000_000)


@dataclass
class _Redial:
    """A broker we lost without a goodbye (silence, unreachable, it forgot us): where it was,
    and when to try it again. A stall or a partition heals by this: nothing else dials a
    broker that every side has presumed dead."""

    address: str
    since: float
    due: float
    backoff: float = REDIAL_FIRST


class Route(Enum):
    OK = 0
    FULL = 1  # next hop's queue is full: try later
    NO_ROUTE = 2  # target unknown or unreachable now: try later


class CloudHost(Protocol):
    def cloud_forward_arrived(self, peer: str, fwd: wire.Forward, body: bytes) -> None: ...
    def cloud_forward_acked(self, peer: str, msg_id: bytes, token: bytes) -> None: ...
    def cloud_presence_changed(self, fingerprints: set[str]) -> None: ...
    def cloud_link_down(self, peer: str) -> None: ...


class Cloud:
    def __init__(
        self,
        ctx: zmq.Context,
        me: str,
        identity_data: Path,
        signer: BrokerSigner,
        verifier: BrokerVerifier,
        admission: Admission,
        curve: tuple[bytes, bytes],
        server_socket: Callable[[int], zmq.Socket],
        host: CloudHost,
        bind_host: str,
        peer_port: int,
        pub_port: int,
        client_url: str,
        http_url: str,
        seeds: list[str],
        name: str = "",
        public_host: str = "",  # the name peers dial [bind_host]
        media_direct: bool = True,  # chunks from non-neighbours over a direct connection
    ) -> None:
        self.me, self.host, self.signer = me, host, signer
        self.media: Any = None  # the BlobPort: chunks asked and found along the routes
        self.client_url, self.http_url, self.name = client_url, http_url, name[:64]
        self.topology = Topology(me, identity_data, signer, verifier)
        self.directory = Directory(me)
        self.peers = PeerLinks(
            ctx, me, curve[0], curve[1], admission, self, self._hello,
            server_socket(zmq.ROUTER), f"tcp://{bind_host}:{peer_port}", self._known_key,
        )  # fmt: skip
        # Any CURVE client may subscribe: frames are sealed with the cloud secret, and a
        # subscriber's queue is small. (A ZAP gate for linked brokers only was tried: a SUB
        # refused once — it often connects before the link is marked up — is never retried
        # by libzmq 4.3, and a 30-broker cloud never converged.)
        pub = server_socket(zmq.PUB)
        self.gossip = Gossip(
            ctx, admission, curve[0], curve[1], pub, f"tcp://{bind_host}:{pub_port}",
            self._on_gossip,
        )  # fmt: skip
        named = url_host(public_host) if public_host else bind_host
        self.peer_url = make_url(f"tcp://{named}:{self.peers.port}", curve[0])
        self.pub_url = make_url(f"tcp://{named}:{self.gossip.port}", curve[0])
        self.verifier = verifier
        self.media_links = (
            MediaLinks(ctx, me, curve, admission, self._address_of, self._hello,
                       self._media_found, self._media_failed)
            if media_direct else None
        )  # fmt: skip
        self._sockets_changed = True
        self._snapshot_sent: dict[str, float] = {}
        self._buckets: dict[str, int] = {}  # the RTT bucket we last advertised for each link
        now = time.monotonic()
        self._advert_due = now
        self._presence_due = now
        self._next_snapshot = now + SNAPSHOT_EVERY
        self._next_repair = now
        self._next_save = now + SAVE_EVERY
        self._presence_seq = time.time_ns() // 1000
        self._local: list[list[wire.PresenceEntry]] = [[] for _ in range(SHARDS)]
        self._presence_dirty: set[int] = set(range(SHARDS))  # all go out once at the start
        self._presence_signed: list[wire.PresenceUpdate] = []
        self._presence_refresh = now
        self._unlinked_since: dict[str, float] = {}
        # what /metrics counts of the cloud's self-repair (read at scrape time)
        self.link_events = {"up": 0, "down": 0, "lost": 0}
        self.repair_dials = 0  # links the repair plan had this broker dial
        # joining: seeds given on the command line, else our neighbours before a restart
        held = self.topology.advert(me)
        self.seeds = list(seeds)
        if not self.seeds and held is not None:
            # our old neighbours first, then anyone else we knew: some may be gone for good
            first = [link.peer for link in held.links]
            rest = sorted(b for b in self.topology.db if b != me and b not in first)
            for broker in first + rest:
                peer_advert = self.topology.advert(broker)
                if peer_advert is not None and peer_advert.address:
                    self.seeds.append(peer_advert.address)
            self.seeds = self.seeds[:MAX_SEEDS]
        self.joined = not self.seeds  # a first broker (or a lone one) is whole by itself
        self._planned: set[str] = set()
        self._seed_ids: set[str] = set()
        self._next_seed_try = now
        self._join_asked: float | None = None  # when a snapshot came while joining
        self._join_waits: set[str] = set()  # brokers of that snapshot whose adverts wait
        self._redial: dict[str, _Redial] = {}
        self._resnapshot_due = 0.0  # when gossip was dropped by a budget: ask again after

    # -- what the broker's loop uses --------------------------------------------------------

    @property
    def sockets_changed(self) -> bool:
        """True when the poll set must be rebuilt (a socket opened, or closed: a closed socket
        left in a poller is polled as fd 0 and can spin the loop)."""
        media = self.media_links is not None and self.media_links.changed
        return self._sockets_changed or self.peers.changed or media

    @sockets_changed.setter
    def sockets_changed(self, value: bool) -> None:
        self._sockets_changed = value

    def sockets(self) -> list[zmq.Socket]:
        self._sockets_changed = self.peers.changed = False
        media: list[zmq.Socket] = []
        if self.media_links is not None:
            self.media_links.changed = False
            media = self.media_links.sockets()
        return [*self.peers.sockets(), *self.gossip.sockets(), *media]

    def _known_key(self, broker: str) -> str | None:
        address = self._address_of(broker)
        if address is None:
            return None
        try:
            return parse_url(address)[1].decode()
        except TitsError:
            return None

    def _address_of(self, broker: str) -> str | None:
        """Its peer URL, as its signed advert names it."""
        advert = self.topology.advert(broker)
        return advert.address if advert is not None and advert.address else None

    # -- direct media connections (broker/medialinks.py) -------------------------------------

    def _media_found(
        self, broker: str, msg: wire.ChunkFound, body: bytes | zmq.Frame | None
    ) -> None:
        if self.media is not None:
            self.media.on_peer(broker, msg, body)

    def _media_failed(self, broker: str, wants: list[wire.ChunkWant]) -> None:
        if self.media is not None:
            self.media.direct_failed(broker, wants)

    def on_media_want(self, broker: str, rid: bytes, msg: wire.ChunkWant) -> None:
        if self.media is not None:
            self.media.on_direct(broker, rid, msg)

    def handle(self, sock: zmq.Socket, now: float) -> None:
        if sock.closed:  # closed by an earlier event of the same poll round
            return
        if sock is self.gossip.sub:
            self.gossip.handle(sock)
        elif self.media_links is not None and self.media_links.owns(sock):
            self.media_links.handle(sock, now)
        else:
            self.peers.handle(sock, now)

    def tick(self, now: float) -> None:
        self.peers.tick(now)
        if self.media_links is not None:
            self.media_links.tick(now)
        for item in self.verifier.ready():  # certificates the worker has checked meanwhile
            self._on_gossip(item)
        if self.verifier.dropped and now >= self._resnapshot_due:
            self._resnapshot(now)
        if not self.joined:
            self._maybe_join(now)
        isolated = self.joined and not self.peers.up_peers() and not self.peers.dials
        if (not self.joined or isolated) and now >= self._next_seed_try:
            # joining; or every link is gone and nothing is being dialed: the seeds again
            self._next_seed_try = now + SEED_RETRY
            for url in self.seeds:
                try:
                    if self.peers.dial(url, now=now):
                        self.sockets_changed = True
                except TitsError as exc:  # a persisted neighbour's address gone bad
                    log.warning("cloud.bad_seed", error=exc.message)
        if self.joined and self._redial:
            self._redial_lost(now)
        if now >= self._advert_due:
            self._advertise(now)
        if now >= self._presence_due or now >= self._presence_refresh:
            self._publish_presence(now)
        if now >= self._next_repair and self.joined:
            self._next_repair = now + REPAIR_EVERY
            self._repair(now)
        if now >= self._next_snapshot:
            self._next_snapshot = now + SNAPSHOT_EVERY
            ups = self.peers.up_peers()
            if ups:
                self.peers.send(random.choice(ups).id, wire.SnapshotRequest())
            for gone in self.topology.expire(now):
                self._broker_gone(gone)
        if now >= self._next_save:
            self._next_save = now + SAVE_EVERY
            self.topology.save()

    def send_forward(self, fwd: wire.Forward, body: bytes) -> Route:
        hop = self.topology.next_hop(fwd.target)
        if hop is None:
            return Route.NO_ROUTE
        return Route.OK if self.peers.queue(hop, fwd, body) else Route.FULL

    def forward_via(self, fwd: wire.Forward, body: bytes) -> str | None:
        """Queue `fwd` to its next hop; that hop's id, or None if it could not go now."""
        hop = self.topology.next_hop(fwd.target)
        return hop if hop is not None and self.peers.queue(hop, fwd, body) else None

    def ack(self, peer: str, msg_id: bytes, token: bytes) -> None:
        self.peers.queue(peer, wire.ForwardAck(id=msg_id, token=token))

    def flush(self, now: float | None = None) -> None:
        """Send what the loop queued for each peer (the broker calls it once a pass, so
        forwards and acknowledgements go in batches; with `now`, busy links coalesce)."""
        self.peers.flush(now)

    def flush_due(self) -> float | None:
        return self.peers.flush_due()

    def set_local_users(self, entries: list[wire.PresenceEntry]) -> None:
        parts = split(entries)
        if sum(map(len, parts)) < len(entries):  # fingerprints made to crowd one shard
            log.warning("presence.shard_full", users=len(entries), listed=sum(map(len, parts)))
        for shard, part in enumerate(parts):
            if part != self._local[shard]:
                self._local[shard] = part
                self._presence_dirty.add(shard)
        if self._presence_dirty:
            self._presence_due = min(self._presence_due, time.monotonic() + PRESENCE_DEBOUNCE)

    def where(self, fingerprint: str) -> dict[str, list[str]]:
        return self.directory.where(fingerprint)

    def close(self) -> None:
        """A graceful leave: tell everyone, so survivors repair without waiting for silence."""
        self.verifier.close()
        advert = self._my_advert(alive=False)
        self.gossip.publish(self.signer.sign_advert(advert))
        self.topology.save()
        if self.media_links is not None:
            self.media_links.close()
        self.peers.close()
        self.gossip.pub.setsockopt(zmq.LINGER, 200)  # let the goodbye advert leave
        self.gossip.close()

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        mine = {"id": self.me, "name": self.name, "url": self.client_url, "http": self.http_url}
        return cloudview.status(self.topology, self.directory, mine)

    def problems(self) -> list[str]:
        lost = {bid: r.since for bid, r in self._redial.items()}
        return cloudview.problems(self.topology, self.me, lost, time.monotonic())

    # -- PeerEvents ----------------------------------------------------------------------------

    def on_link_up(self, peer: Peer) -> None:
        self.link_events["up"] += 1
        self.sockets_changed = True
        self._unlinked_since.pop(peer.id, None)
        self._redial.pop(peer.id, None)
        self.gossip.follow(peer.id, peer.pub)
        self.peers.send(peer.id, wire.SnapshotRequest())
        self._soon_advert()
        if not self.joined and peer.id not in self._planned:
            self._seed_ids.add(peer.id)

    def on_link_down(self, peer: Peer) -> None:
        self.link_events["lost" if peer.lost else "down"] += 1
        self.sockets_changed = True
        self._buckets.pop(peer.id, None)
        self.gossip.unfollow(peer.id)
        self._soon_advert()
        if peer.redial and peer.address:
            self._lost(peer.id, peer.address)
        if peer.lost:
            self._presumed_dead(peer.id)
        self.host.cloud_link_down(peer.id)  # after the routes changed: resends take new ones

    def on_dial_failed(self, url: str, expect: str | None) -> None:
        if expect is not None:
            self._presumed_dead(expect)

    def _presumed_dead(self, broker: str) -> None:
        """Silent to us: leave it out of planning and routing until it advertises again (a
        live broker does within ADVERT_REFRESH). Without this, a broker that only knows the
        dead one's last advert would keep planning links to it."""
        self.topology.forget(broker)
        self._broker_gone(broker)

    def on_peer_message(self, peer: Peer, msg: object, body: bytes | zmq.Frame | None) -> None:
        """`body` is bytes, or the frame a chunk came in (`ChunkFound`: it goes on uncopied)."""
        match msg:
            case wire.Forward():
                if not isinstance(body, bytes):
                    log.warning("forward.no_body", peer=peer.id[:16])
                    return
                self.host.cloud_forward_arrived(peer.id, msg, body)
            case wire.ForwardAck(id=msg_id, token=token):
                self.host.cloud_forward_acked(peer.id, msg_id, token)
            case wire.SnapshotRequest():
                now = time.monotonic()
                if now - self._snapshot_sent.get(peer.id, -1e9) < SNAPSHOT_MIN_GAP:
                    return  # snapshots are big: one a second per peer is plenty
                self._snapshot_sent[peer.id] = now
                for page in self._snapshot_pages():
                    if not self.peers.send(peer.id, page):
                        break  # its queue is full: it asks again
            case wire.Snapshot(adverts=adverts, presence=presence):
                for item in [*adverts, *presence]:
                    # what is new to us may be new to our neighbours
                    self._on_gossip(item, source=peer.id)
                if not self.joined:
                    if self._join_asked is None:
                        self._join_asked = time.monotonic()
                    for signed in adverts:  # the plan waits for these to be checked
                        try:
                            broker = wire.ADVERT_DECODER.decode(signed.advert).broker
                        except WireError:
                            continue  # refused (and logged) above
                        if self.verifier.is_pending(broker):
                            self._join_waits.add(broker)
                    self._maybe_join(time.monotonic())
            case wire.ChunkWant() | wire.ChunkFound():
                if self.media is not None:  # media chunks along the routes (broker/blobport.py)
                    self.media.on_peer(peer.id, msg, body)
            case wire.Error(code=code, message=text):
                log.info("peer.error", peer=peer.id[:16], code=code, message=text[:200])
            case _:
                log.warning("peer.unexpected", peer=peer.id[:16], kind=type(msg).__name__)

    def _snapshot_pages(self) -> list[wire.Snapshot]:
        """Everything we hold, adverts first (a joining broker plans with them), in frames of
        at most SNAPSHOT_PAGE_BYTES: a cloud's presence is far bigger than one frame may be."""
        pages = [wire.Snapshot(seq=self.topology.next_seq())]
        size = 0
        items: list[wire.SignedAdvert | wire.PresenceUpdate] = [
            *self.topology.signed_adverts(), *self.directory.updates(), *self._signed_presence()
        ]  # fmt: skip
        for item in items:
            n = len(wire.encode(item))
            page = pages[-1]
            if size + n > SNAPSHOT_PAGE_BYTES or len(page.adverts) + len(page.presence) >= 4096:
                page = wire.Snapshot(seq=page.seq)
                pages.append(page)
                size = 0
            if isinstance(item, wire.SignedAdvert):
                page.adverts.append(item)
            else:
                page.presence.append(item)
            size += n
        return pages

    # -- gossip --------------------------------------------------------------------------------

    def _on_gossip(self, msg: object, republish: bool = True, source: str = "gossip") -> None:
        """An advert or a presence update, from the SUB or a peer's snapshot (`source`: whose
        budget pays if its certificate must be checked)."""
        now = time.monotonic()
        if isinstance(msg, wire.SignedAdvert):
            try:
                advert = self.topology.accept(msg, now)
            except CertPending:
                self._hold(msg, source)
                return
            if advert is None:
                return
            if republish:
                self.gossip.publish(msg)
            if not advert.alive:
                self._redial.pop(advert.broker, None)  # it said goodbye: do not call it back
                self._broker_gone(advert.broker)
            elif advert.broker in self._redial and self.topology.planning_graph().get(
                advert.broker
            ):
                del self._redial[advert.broker]  # back, and linked to others: repair decides
        elif isinstance(msg, wire.PresenceUpdate):
            try:
                claimed = wire.PRESENCE_DECODER.decode(msg.presence)
                if claimed.broker == self.me or self.directory.is_stale(
                    claimed.broker, claimed.shard, claimed.seq
                ):
                    return  # our own, come back; or a repeat: no signature to check
                try:
                    presence = self.verifier.presence(msg)
                except CertPending:
                    self.verifier.hold(msg, source)
                    return
                if self.directory.misfiled(presence):
                    raise WireError(f"users in the wrong shard {presence.shard}")
            except Exception as exc:  # noqa: BLE001 - any bad update is refused and logged
                log.warning("gossip.presence_refused", error=str(exc)[:200])
                return
            changed = self.directory.apply(presence, msg)
            if changed is None:
                return
            if republish:
                self.gossip.publish(msg)
            if changed:
                self.host.cloud_presence_changed(changed)

    def _hold(self, msg: wire.SignedAdvert, source: str) -> None:
        try:
            self.verifier.hold(msg, source)
        except TitsError as exc:
            log.warning("gossip.advert_refused", error=exc.message[:200])

    def _resnapshot(self, now: float) -> None:
        """Gossip that a budget dropped is asked for again, once the worker has caught up."""
        if self.verifier.pending:
            return
        self.verifier.dropped = 0
        self._resnapshot_due = now + RESNAPSHOT_GAP
        ups = self.peers.up_peers()
        if ups:
            self.peers.send(random.choice(ups).id, wire.SnapshotRequest())

    def _broker_gone(self, broker: str) -> None:
        if self.media_links is not None:
            self.media_links.forget(broker)
        changed = self.directory.drop_broker(broker)
        if changed:
            self.host.cloud_presence_changed(changed)

    # -- our own adverts and presence -------------------------------------------------------------

    def _hello(self) -> wire.PeerHello:
        return wire.PeerHello(
            broker=self.me, address=self.peer_url, pub=self.pub_url, http=self.http_url
        )

    def _my_advert(self, alive: bool = True) -> wire.Advert:
        links = []
        for p in self.peers.up_peers():
            # hysteresis: a link's advertised cost moves only when its RTT has moved by 4× or
            # more, so routes stay put while load makes round-trip times wobble
            new, old = rtt_bucket(p.base_rtt_ms), self._buckets.get(p.id)
            if old is None or new >= 4 * old or 4 * new <= old:
                self._buckets[p.id] = old = new
            rtt = p.rtt_ms
            links.append(
                wire.Link(p.id, link_cost(old), min(int(rtt * 1000), 60_000_000) if rtt else 0)
            )
        return wire.Advert(
            broker=self.me,
            address=self.peer_url,
            seq=self.topology.next_seq(),
            links=sorted(links, key=lambda link: link.peer),
            alive=alive,
            http=self.http_url,
            client=self.client_url,
            pub=self.pub_url,
            name=self.name,
        )

    def _soon_advert(self) -> None:
        self._advert_due = min(self._advert_due, time.monotonic() + ADVERT_DEBOUNCE)

    def _advertise(self, now: float) -> None:
        self._advert_due = now + ADVERT_REFRESH
        advert = self._my_advert()
        signed = self.signer.sign_advert(advert)
        self.topology.set_mine(advert, signed, now)
        self.gossip.publish(signed)

    def _signed_presence(self) -> list[wire.PresenceUpdate]:
        """Our list, every shard of it, as last published. (Signing changed shards here would
        clear them as dirty, and `_publish_presence` would then not send them.)"""
        return self._presence_signed

    def _sign_presence(self) -> list[wire.PresenceUpdate]:
        """Sign the shards that changed (a fresh seq each); return them."""
        self._presence_seq = max(self._presence_seq + 1, time.time_ns() // 1000)
        if not self._presence_signed:
            self._presence_signed = [wire.PresenceUpdate() for _ in range(SHARDS)]
        fresh = []
        for shard in sorted(self._presence_dirty):
            presence = wire.Presence(
                broker=self.me, seq=self._presence_seq, users=self._local[shard], shard=shard
            )
            self._presence_signed[shard] = update = self.signer.sign_presence(presence)
            fresh.append(update)
        self._presence_dirty.clear()
        return fresh

    def _publish_presence(self, now: float) -> None:
        """What changed at once; everything again every PRESENCE_REFRESH (PUB/SUB drops), with
        the same seq, which a broker that has it skips without checking a signature."""
        self._presence_due = now + PRESENCE_REFRESH
        fresh = self._sign_presence() if self._presence_dirty else []
        if now >= self._presence_refresh:
            self._presence_refresh = now + PRESENCE_REFRESH
            fresh = self._presence_signed
        for update in fresh:
            self.gossip.publish(update)

    # -- join and repair -----------------------------------------------------------------------

    def _maybe_join(self, now: float) -> None:
        """Plan the join once a snapshot came and its adverts are checked (a plan from half of
        them would pick peers from half the cloud), or JOIN_WAIT after it came."""
        if self._join_asked is None:
            return
        self._join_waits = {b for b in self._join_waits if self.verifier.is_pending(b)}
        if self._join_waits and now - self._join_asked < JOIN_WAIT:
            return
        self._join(now)

    def _join(self, now: float) -> None:
        graph = self.topology.planning_graph()
        others = {b: {p: c for p, c in nbrs.items() if p != self.me} for b, nbrs in graph.items()}
        others.pop(self.me, None)
        if not others:
            return  # the snapshot had nobody else yet: wait for the next one
        plan = join_plan(others, self.me)
        self._planned = set(plan)
        for peer in plan:
            self._dial(peer, now)
        self.joined = True
        log.info("cloud.joined", peers=[p[:16] for p in plan], brokers=len(others) + 1)

    def _dial(self, broker: str, now: float) -> bool:
        """True when a new dial went out (not when one is under way or the link is up)."""
        if self.peers.is_up(broker):
            return False
        advert = self.topology.advert(broker)
        if advert is None or not advert.address:
            return False
        try:
            if self.peers.dial(advert.address, expect=broker, now=now):
                self.sockets_changed = True
                return True
        except TitsError as exc:  # an admitted broker advertised an unusable address
            log.warning("cloud.bad_address", broker=broker[:16], error=exc.message)
            self._presumed_dead(broker)
        return False

    def _lost(self, broker: str, address: str) -> None:
        """`broker` went without a goodbye: dial it again with backoff until it is back."""
        now = time.monotonic()
        held = self._redial.get(broker)
        if held is not None:
            held.address = address
            return
        if len(self._redial) >= MAX_REDIAL:
            oldest = min(self._redial, key=lambda b: self._redial[b].since)
            del self._redial[oldest]
        first = REDIAL_FIRST * random.uniform(0.5, 1.5)
        self._redial[broker] = _Redial(address, now, now + first)

    def _redial_lost(self, now: float) -> None:
        for broker, lost in list(self._redial.items()):
            if self.peers.is_up(broker) or now - lost.since > REDIAL_FOR:
                del self._redial[broker]
                continue
            if now < lost.due:
                continue
            lost.backoff = min(lost.backoff * 2, REDIAL_MAX)
            lost.due = now + lost.backoff * random.uniform(0.75, 1.25)
            try:
                if self.peers.dial(lost.address, expect=broker, now=now):
                    self.sockets_changed = True
                    log.info("cloud.redial", broker=broker[:16], backoff_s=round(lost.backoff, 2))
            except TitsError as exc:
                log.warning("cloud.bad_address", broker=broker[:16], error=exc.message)
                del self._redial[broker]

    def _repair(self, now: float) -> None:
        # let go of seeds that the join plan did not name, once the planned links are up
        if self._seed_ids and all(self.peers.is_up(p) for p in self._planned):
            for seed in self._seed_ids - self._planned:
                if self.peers.is_up(seed) and len(self.peers.up_peers()) > 3:
                    self.peers.drop(seed, reason="seed not in the join plan")
            self._seed_ids.clear()
        graph = self.topology.planning_graph()
        plan = repair_plan(graph)
        wanted = set()
        for a, b in plan:
            if self.me not in (a, b):
                continue
            other = b if a == self.me else a
            wanted.add(other)
            first = self._unlinked_since.setdefault(other, now)
            if a == self.me or now - first > REPAIR_GRACE or not graph.get(self.me):
                if self._dial(other, now):
                    self.repair_dials += 1
        for other in list(self._unlinked_since):
            if other not in wanted:
                del self._unlinked_since[other]
