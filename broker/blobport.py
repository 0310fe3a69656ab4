"""Media frames on the client port, and chunks fetched through the cloud.

Client → broker: `BlobOffer` (+ manifest) is answered with `BlobHave` (the chunks still
missing: a resumed upload sends only those), `ChunkPut` (+ bytes) with `ChunkOk`, `ChunkGet`
with `ChunkData` (+ bytes). Every refusal is a `BlobError` with a `wire.MediaErrorCode`;
nothing a client sends stops the broker or leaves a half chunk on disk.

A chunk this broker lacks is asked of the broker the manifest names as its holder: a
`ChunkWant` goes hop by hop along the cloud's shortest path (the topology `Relay` uses;
no broker is asked that is not on it), and any broker on the way that has the chunk
answers with `ChunkFound` back along the path. The chunk is checked against its hash and
kept here, so the next receiver at this broker is served from disk. A want unanswered in
WANT_S is answered `not-found`: the client asks again (the path may have been repaired).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Protocol

import structlog
import zmq

from tits import wire
from tits.errors import MediaError

from .blobs import BlobStore
from .delivery import SendResult

log = structlog.get_logger("titsd")

WANT_S = 10.0  # a chunk asked of the cloud and not come by then: `not-found`, ask again
MAX_WAITERS = 10_000  # chunk requests parked for the cloud at once (beyond: `not-found`)
MEDIA_KINDS = (wire.BlobOffer, wire.ChunkPut, wire.ChunkGet)


class ReplySink(Protocol):
    def reply(self, route: bytes, msg: Any) -> bool: ...
    def deliver(self, route: bytes, env: bytes, body: bytes) -> SendResult: ...


class CloudRoutes(Protocol):
    """What the cloud gives media: the next hop toward a broker, and a send to a peer."""

    def next_hop(self, broker: str) -> str | None: ...
    def send(self, peer: str, msg: object, body: bytes | None = None) -> bool: ...


class Routes:
    """`CloudRoutes` over the broker's `Cloud`: its topology's next hop, its peer links."""

    def __init__(self, cloud: Any) -> None:
        self._cloud = cloud

    def next_hop(self, broker: str) -> str | None:
        hop: str | None = self._cloud.topology.next_hop(broker)
        return hop

    def send(self, peer: str, msg: object, body: bytes | None = None) -> bool:
        return bool(self._cloud.peers.send(peer, msg, body))


class BlobPort:
    def __init__(
        self, store: BlobStore, me: str, replies: ReplySink, counters: dict[str, int]
    ) -> None:
        self.store, self.me, self.replies = store, me, replies
        self.cloud: CloudRoutes | None = None
        self.counters = counters
        for k in ("media_in", "media_out", "media_refused", "media_cloud"):
            counters.setdefault(k, 0)
        # chunk → (route, index) of the clients waiting for it, and when it was asked
        self._waiting: dict[bytes, list[tuple[bytes, int]]] = {}
        self._asked: dict[bytes, float] = {}

    # -- the client port -----------------------------------------------------------------------

    def handle(self, route: bytes, user: str | None, msg: Any, frames: list[zmq.Frame]) -> None:
        if user is None:
            self.replies.reply(route, wire.Error(code="not-logged-in", message="log in first"))
            return
        try:
            if isinstance(msg, wire.BlobOffer):
                if len(frames) != 3:
                    raise MediaError("an offer needs its manifest", code="bad-manifest")
                offered = self.store.offer(user, frames[2].bytes, msg.sha256)
                self.replies.reply(route, wire.BlobHave(sha256=msg.sha256, missing=offered.missing))
            elif isinstance(msg, wire.ChunkPut):
                if len(frames) != 3:
                    raise MediaError("a chunk needs its bytes", code="bad-chunk")
                data = frames[2].buffer
                complete = self.store.put(msg.sha256, msg.index, data)
                self.counters["media_in"] += len(data)
                self.replies.reply(
                    route, wire.ChunkOk(sha256=msg.sha256, index=msg.index, complete=complete)
                )
            elif isinstance(msg, wire.ChunkGet):
                self._get(route, msg)
        except MediaError as exc:
            self.counters["media_refused"] += 1
            sha = getattr(msg, "sha256", None)
            chunk = getattr(msg, "chunk", None)
            self.replies.reply(
                route,
                wire.BlobError(
                    code=exc.code, message=exc.message[:1000], sha256=sha, chunk=chunk,  # type: ignore[arg-type]
                    index=getattr(msg, "index", 0),
                ),
            )  # fmt: skip

    def _get(self, route: bytes, msg: wire.ChunkGet) -> None:
        data = self.store.read(msg.chunk)
        if data is not None:
            self.store.touch(msg.chunk)
            self._serve(route, msg.chunk, msg.index, data)
            return
        holder = msg.holder
        if self.cloud is None or not holder or holder == self.me or not wire.is_fingerprint(holder):
            raise MediaError("no such chunk here", code="not-found")
        waiters = self._waiting.setdefault(msg.chunk, [])
        if sum(map(len, self._waiting.values())) >= MAX_WAITERS:
            raise MediaError("too many chunks on their way here: try again", code="not-found")
        waiters.append((route, msg.index))
        if msg.chunk not in self._asked:
            if not self._want(msg.chunk, holder):
                self._fail(msg.chunk, "no route to the broker that holds it")

    def _serve(self, route: bytes, chunk: bytes, index: int, data: bytes) -> None:
        env = wire.encode(wire.ChunkData(chunk=chunk, index=index))
        if self.replies.deliver(route, env, data) is SendResult.OK:
            self.counters["media_out"] += len(data)

    # -- the cloud -----------------------------------------------------------------------------

    def _want(self, chunk: bytes, holder: str) -> bool:
        assert self.cloud is not None
        hop = self.cloud.next_hop(holder)
        want = wire.ChunkWant(chunk=chunk, origin=self.me, target=holder)
        if hop is None or not self.cloud.send(hop, want):
            return False
        self._asked[chunk] = time.monotonic()
        return True

    def _fail(self, chunk: bytes, why: str) -> None:
        self._asked.pop(chunk, None)
        for route, index in self._waiting.pop(chunk, []):
            self.replies.reply(
                route, wire.BlobError(code="not-found", message=why, chunk=chunk, index=index)
            )

    def on_peer(self, peer: str, msg: object, body: bytes | None) -> None:
        cloud = self.cloud
        if cloud is None:
            return
        if isinstance(msg, wire.ChunkWant):
            data = self.store.read(msg.chunk)
            if data is not None:
                self.store.touch(msg.chunk)
                self._toward(msg.origin, wire.ChunkFound(chunk=msg.chunk, to=msg.origin), data)
            elif msg.target == self.me or msg.hops == 0:
                self._toward(msg.origin, wire.ChunkFound(chunk=msg.chunk, to=msg.origin,
                                                         missing=True), None)  # fmt: skip
            else:
                msg.hops -= 1
                self._toward(msg.target, msg, None)
        elif isinstance(msg, wire.ChunkFound):
            if msg.to != self.me:
                if msg.hops > 0:
                    msg.hops -= 1
                    self._toward(msg.to, msg, body)
                return
            if msg.missing or body is None:
                self._fail(msg.chunk, "the broker that held it has it no more")
                return
            if hashlib.sha256(body).digest() != msg.chunk:
                log.warning("media.bad_cloud_chunk", peer=peer[:16])
                self._fail(msg.chunk, "a broker sent the wrong bytes")
                return
            try:
                self.store.store(msg.chunk, body)
            except MediaError as exc:
                log.error("media.store_failed", error=exc.message[:200])
            self.counters["media_cloud"] += len(body)
            self._asked.pop(msg.chunk, None)
            for route, index in self._waiting.pop(msg.chunk, []):
                self._serve(route, msg.chunk, index, body)

    def _toward(self, broker: str, msg: object, body: bytes | None) -> None:
        assert self.cloud is not None
        hop = self.cloud.next_hop(broker)
        if hop is None or not self.cloud.send(hop, msg, body):
            log.info("media.no_route", to=broker[:16])

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for chunk, asked in list(self._asked.items()):
            if now - asked >= WANT_S:
                self._fail(chunk, "no broker answered for this chunk in time: try again")

    def gc(self) -> None:
        files, chunks = self.store.gc()
        if files or chunks:
            log.info("media.gc", files=files, chunks=chunks)
