"""Media frames on the client port, and chunks fetched through the cloud.

Client → broker: `BlobOffer` (+ manifest) is answered with `BlobHave` (the chunks still
missing: a resumed upload sends only those), `ChunkPut` (+ bytes) with `ChunkOk`, `ChunkGet`
with `ChunkData` (+ bytes). Every refusal is a `BlobError` with a `wire.MediaErrorCode`;
nothing a client sends stops the broker or leaves a half chunk on disk.

The store's work (hashing, disk, SQLite) runs on MEDIA_THREADS media threads, never on the
broker's loop, so a 4 MiB chunk costs the loop only its routing; the results come back
through the loop's wake pipe (`drain`). Each chunk's work goes to the thread its hash picks,
so a chunk asked for while it is being stored is read after it is written there, as with
one thread. At most MAX_JOBS wait for those threads: beyond, `busy`. A chunk's bytes stay in
the frame they came in (hashed and written from it, no copy), and that frame is what goes
on to those who waited for it.

A chunk asked for that is on its way (its file offered here, the upload under way) waits
for it, so a receiver can fetch while the sender still sends. A chunk this broker lacks
otherwise is asked of the broker the manifest names as its holder (or, when that cannot be
reached or lacks it, of a broker where the presence gossip lists the file's sender — one
at a time, each ask after a failed one going to the next). A holder that is not a
neighbour is asked over a direct connection (broker/medialinks.py: one hop, where every
relay would decrypt and encrypt the chunk again); where that cannot be had (refused,
unanswered, `media_direct = false`), a `ChunkWant` goes hop by hop along the cloud's
shortest path (the topology `Relay` uses; no broker off that path is asked), and any
broker on the way that has the chunk answers with `ChunkFound` back along the path. Only
chunks this broker asked for are taken. The chunk is checked against its hash and kept
here, so the next receiver at this broker is served from disk. A wait unanswered in WANT_S
is answered `not-found`: the client asks again (the path may have been repaired meanwhile).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import structlog
import zmq

from tits import wire
from tits.errors import MediaError

from .blobs import BlobStore
from .delivery import SendResult

log = structlog.get_logger("titsd")

T = TypeVar("T")
WANT_S = 10.0  # a chunk waited for (from the cloud, or an upload) this long: `not-found`
MAX_WAITERS = 10_000  # chunk requests parked at once (beyond: `not-found`)
# chunks waiting for the media threads (beyond: `busy`): 64 MiB at most, whatever the chunk
# size (16 at 4 MiB: the bound in bytes stayed where it was when chunks were 1 MiB)
MAX_JOBS = (64 << 20) // wire.CHUNK_SIZE
MEDIA_THREADS = 2  # hashing and writing chunks: the disk's page cache takes a core's time
MAX_ASKED = (128 << 20) // wire.CHUNK_SIZE  # chunks asked of the cloud at once: 128 MiB
UPLOAD_S = 600.0  # an offered file's missing chunks count as on their way this long

Body = bytes | zmq.Frame  # a chunk's bytes: as read from disk, or the frame they came in
Serve = Callable[[Body], None]
Fail = Callable[[str], None]


def _view(data: Body) -> bytes | memoryview:
    return data.buffer if isinstance(data, zmq.Frame) else data


class ReplySink(Protocol):
    def reply(self, route: bytes, msg: Any) -> bool: ...
    def deliver(self, route: bytes, env: bytes, body: Body) -> SendResult: ...


class CloudRoutes(Protocol):
    """What the cloud gives media: the next hop toward a broker, and a send to a peer."""

    def next_hop(self, broker: str) -> str | None: ...
    def send(self, peer: str, msg: object, body: Body | None = None) -> bool: ...
    def where(self, fingerprint: str) -> list[str]: ...
    def direct(self, broker: str, want: wire.ChunkWant) -> bool: ...
    def reply_direct(self, rid: bytes, msg: object, body: Body | None) -> bool: ...


class Routes:
    """`CloudRoutes` over the broker's `Cloud`: its topology's next hop, its peer links."""

    def __init__(self, cloud: Any) -> None:
        self._cloud = cloud

    def next_hop(self, broker: str) -> str | None:
        hop: str | None = self._cloud.topology.next_hop(broker)
        return hop

    def send(self, peer: str, msg: object, body: Body | None = None) -> bool:
        return bool(self._cloud.peers.send(peer, msg, body))

    def where(self, fingerprint: str) -> list[str]:
        """The brokers the cloud's presence gossip lists this user at."""
        return sorted(self._cloud.where(fingerprint))

    def direct(self, broker: str, want: wire.ChunkWant) -> bool:
        links = self._cloud.media_links
        return links is not None and bool(links.send(broker, want))

    def reply_direct(self, rid: bytes, msg: object, body: Body | None) -> bool:
        return bool(self._cloud.peers.send_media(rid, msg, body))


class BlobPort:
    def __init__(
        self,
        store: BlobStore,
        me: str,
        replies: ReplySink,
        counters: dict[str, int],
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.me, self.replies = store, me, replies
        self.cloud: CloudRoutes | None = None
        self.counters = counters
        for k in (
            "media_in",
            "media_out",
            "media_refused",
            "media_cloud",
            "media_relayed",
            "media_to_cloud",
        ):
            counters.setdefault(k, 0)
        self._wake = wake
        self._pools = [
            ThreadPoolExecutor(1, thread_name_prefix=f"titsd-media{i}")
            for i in range(MEDIA_THREADS if wake else 0)
        ]
        self._done: deque[Callable[[], None]] = deque()
        self._jobs = 0
        # chunk → who waits for it (serve, fail), and since when it is asked / expected
        self._waiting: dict[bytes, list[tuple[Serve, Fail]]] = {}
        self._asked: dict[bytes, float] = {}
        self._coming: dict[bytes, float] = {}  # chunks of files offered here, not yet put
        self._buckets: dict[str, tuple[float, float]] = {}  # user → (bytes allowed, when)
        self._tries: dict[bytes, int] = {}  # chunk → asks of the cloud that failed

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- the media thread ----------------------------------------------------------------------

    def _run(
        self, work: Callable[[], T], then: Callable[[Future[T]], None], key: bytes | None = None
    ) -> bool:
        """`work` on the media thread of chunk `key` (the first without), then `then` on the
        loop (from `drain`). Without a wake (unit tests, tools) both run here and now."""
        if not self._pools or self._wake is None:
            f: Future[T] = Future()
            try:
                f.set_result(work())
            except Exception as exc:  # noqa: BLE001 - handed to `then`, like the thread's
                f.set_exception(exc)
            then(f)
            return True
        if self._jobs >= MAX_JOBS:
            return False
        self._jobs += 1
        wake = self._wake

        def finished(f: Future[T]) -> None:
            self._done.append(lambda: then(f))
            wake()

        pool = self._pools[key[-1] % len(self._pools) if key else 0]
        pool.submit(work).add_done_callback(finished)
        return True

    def drain(self) -> None:
        """On the loop: what the media thread finished."""
        while self._done:
            self._jobs -= 1
            try:
                self._done.popleft()()
            except Exception:
                log.exception("media.after_job_failed")

    # -- the client port -----------------------------------------------------------------------

    def handle(self, route: bytes, user: str | None, msg: Any, frames: list[zmq.Frame]) -> None:
        if user is None:
            self.replies.reply(route, wire.Error(code="not-logged-in", message="log in first"))
            return
        if isinstance(msg, wire.ChunkPut | wire.ChunkGet) and not self._allow(user):
            return self._refuse(route, msg, MediaError(
                "too many media bytes a second: slow down", code="rate-limited"))  # fmt: skip
        if isinstance(msg, wire.BlobOffer):
            if len(frames) != 3:
                return self._refuse(route, msg, MediaError("an offer needs its manifest",
                                                           code="bad-manifest"))  # fmt: skip
            body = frames[2].bytes
            ok = self._run(lambda: self.store.offer(user, body, msg.sha256),
                           lambda f: self._offered(route, msg, f))  # fmt: skip
        elif isinstance(msg, wire.ChunkPut):
            if len(frames) != 3:
                return self._refuse(route, msg, MediaError("a chunk needs its bytes",
                                                           code="bad-chunk"))  # fmt: skip
            frame = frames[2]
            ok = self._run(lambda: self._put(msg, frame), lambda f: self._stored(route, msg, f),
                           self.store.chunk_of(msg.sha256, msg.index))  # fmt: skip
        elif isinstance(msg, wire.ChunkGet):
            ok = self._run(lambda: self.store.read(msg.chunk), lambda f: self._read(route, msg, f),
                           msg.chunk)  # fmt: skip
        else:
            return None
        if not ok:
            self._refuse(route, msg, MediaError("the broker is busy: try again", code="busy"))
        return None

    def _allow(self, user: str) -> bool:
        """A token bucket of chunk bytes per user (each chunk costs a full CHUNK_SIZE)."""
        rate = self.store.limits.rate_bytes
        if rate <= 0:
            return True
        now = time.monotonic()
        burst = max(rate, 8.0 * wire.CHUNK_SIZE)
        tokens, at = self._buckets.get(user, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens < wire.CHUNK_SIZE:
            self._buckets[user] = (tokens, now)
            return False
        self._buckets[user] = (tokens - wire.CHUNK_SIZE, now)
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        return True

    def _put(self, msg: wire.ChunkPut, frame: zmq.Frame) -> tuple[bool, bytes, zmq.Frame]:
        complete = self.store.put(msg.sha256, msg.index, frame.buffer)
        m = self.store.manifest(msg.sha256)
        assert m is not None  # put raised otherwise
        return complete, m.chunks[msg.index], frame

    def _offered(self, route: bytes, msg: wire.BlobOffer, f: Future[Any]) -> None:
        try:
            offered = f.result()
        except MediaError as exc:
            return self._refuse(route, msg, exc)
        until = time.monotonic() + UPLOAD_S
        for c in offered.lacking:
            self._coming[c] = until
        self.replies.reply(route, wire.BlobHave(sha256=msg.sha256, missing=offered.missing))
        return None

    def _stored(self, route: bytes, msg: wire.ChunkPut, f: Future[Any]) -> None:
        try:
            complete, chunk, data = f.result()
        except MediaError as exc:
            return self._refuse(route, msg, exc)
        self.counters["media_in"] += len(data)
        self.replies.reply(route, wire.ChunkOk(sha256=msg.sha256, index=msg.index,
                                               complete=complete))  # fmt: skip
        self._coming.pop(chunk, None)
        self._asked.pop(chunk, None)
        for serve, _ in self._waiting.pop(chunk, []):
            serve(data)
        return None

    def _read(self, route: bytes, msg: wire.ChunkGet, f: Future[Any]) -> None:
        try:
            data = f.result()
        except MediaError as exc:
            return self._refuse(route, msg, exc)
        if data is not None:
            self._serve(route, msg.chunk, msg.index, data)
            return None

        def serve(d: Body) -> None:
            self._serve(route, msg.chunk, msg.index, d)

        def fail(why: str) -> None:
            self.replies.reply(route, wire.BlobError(code="not-found", message=why,
                                                     chunk=msg.chunk, index=msg.index))  # fmt: skip

        if msg.chunk in self._coming:  # its upload is under way here: wait for it
            self._park(msg.chunk, serve, fail)
            return None
        holder = self._source(msg)
        if holder is None:
            return self._refuse(route, msg, MediaError("no such chunk here", code="not-found"))
        first = msg.chunk not in self._asked
        if first and len(self._asked) >= MAX_ASKED:  # what is on its way here stays bounded
            return self._refuse(route, msg, MediaError("too many chunks on their way here: "
                                                       "try again", code="busy"))  # fmt: skip
        if self._park(msg.chunk, serve, fail) and first:
            if not self._want(msg.chunk, holder):
                self._fail(msg.chunk, "no route to the broker that holds it")
        return None

    def _source(self, msg: wire.ChunkGet) -> str | None:
        """Which broker to ask for a chunk not here: the manifest's holder, then (each time
        a try failed) the brokers where its sender is online, by presence gossip: those a
        route reaches, in turn. None: nobody to ask."""
        cloud = self.cloud
        if cloud is None:
            return None
        found = [msg.holder] if wire.is_fingerprint(msg.holder) else []
        if wire.is_fingerprint(msg.sender):
            found += [b for b in cloud.where(msg.sender) if b not in found]
        found = [b for b in found if b != self.me and cloud.next_hop(b) is not None]
        if not found:
            return None
        tries = self._tries.get(msg.chunk, 0)
        return found[tries % len(found)]

    def _park(self, chunk: bytes, serve: Serve, fail: Fail) -> bool:
        if sum(map(len, self._waiting.values())) >= MAX_WAITERS:
            fail("too many chunks on their way here: try again")
            return False
        self._waiting.setdefault(chunk, []).append((serve, fail))
        self._asked.setdefault(chunk, time.monotonic())
        return True

    def _serve(self, route: bytes, chunk: bytes, index: int, data: Body) -> None:
        env = wire.encode(wire.ChunkData(chunk=chunk, index=index))
        if self.replies.deliver(route, env, data) is SendResult.OK:
            self.counters["media_out"] += len(data)

    def _refuse(self, route: bytes, msg: Any, exc: MediaError) -> None:
        self.counters["media_refused"] += 1
        code = exc.code if exc.code in wire.MEDIA_ERROR_CODES else "storage"
        self.replies.reply(
            route,
            wire.BlobError(
                code=code, message=exc.message[:1000],  # type: ignore[arg-type]
                sha256=getattr(msg, "sha256", None), chunk=getattr(msg, "chunk", None),
                index=getattr(msg, "index", 0),
            ),
        )  # fmt: skip

    # -- the cloud -----------------------------------------------------------------------------

    def _want(self, chunk: bytes, holder: str) -> bool:
        assert self.cloud is not None
        hop = self.cloud.next_hop(holder)
        want = wire.ChunkWant(chunk=chunk, origin=self.me, target=holder)
        if hop is None:
            return False
        direct = hop != holder and self.cloud.direct(holder, want)  # not a neighbour
        if not direct and not self.cloud.send(hop, want):
            return False
        self._asked[chunk] = time.monotonic()
        return True

    def direct_failed(self, holder: str, wants: list[wire.ChunkWant]) -> None:
        """No direct link to `holder` after all: these go along the route."""
        assert self.cloud is not None
        hop = self.cloud.next_hop(holder)
        for want in wants:
            if want.chunk not in self._asked:
                continue  # answered or given up meanwhile
            if hop is None or not self.cloud.send(hop, want):
                self._fail(want.chunk, "no route to the broker that holds it")

    def _fail(self, chunk: bytes, why: str) -> None:
        self._asked.pop(chunk, None)
        self._tries[chunk] = self._tries.get(chunk, 0) + 1  # the next ask goes elsewhere
        if len(self._tries) > MAX_WAITERS:
            self._tries.clear()
        for _, fail in self._waiting.pop(chunk, []):
            fail(why)

    def on_peer(self, peer: str, msg: object, body: Body | None) -> None:
        if self.cloud is None:
            return
        if isinstance(msg, wire.ChunkWant):
            self._run(lambda: self.store.read(msg.chunk), lambda f: self._wanted(msg, f),
                      msg.chunk)  # fmt: skip
        elif isinstance(msg, wire.ChunkFound):
            if msg.to != self.me:
                if msg.hops > 0:
                    msg.hops -= 1
                    if body is not None:
                        self.counters["media_relayed"] += len(body)
                    self._toward(msg.to, msg, body)
                return
            if msg.chunk not in self._asked:
                return  # not asked for (or answered already): a peer cannot fill our disk
            if msg.missing or body is None:
                self._fail(msg.chunk, "the broker that held it has it no more")
                return
            data, chunk = body, msg.chunk
            if not self._run(lambda: self._keep(chunk, data),
                             lambda f: self._found(peer, chunk, data, f), chunk):  # fmt: skip
                self._found(peer, chunk, data, None)  # the media threads are full: check here

    def _keep(self, chunk: bytes, data: Body) -> bool:
        """On a media thread: are these the chunk's bytes? If so, keep them here."""
        view = _view(data)
        if hashlib.sha256(view).digest() != chunk:
            return False
        try:
            self.store.store(chunk, view)
        except MediaError as exc:  # not kept, but right: those waiting get them all the same
            log.warning("media.not_kept", error=exc.message)
        return True

    def _found(self, peer: str, chunk: bytes, data: Body, f: Future[bool] | None) -> None:
        """A chunk came from the cloud: to those who wait for it, if its bytes are right."""
        good = hashlib.sha256(_view(data)).digest() == chunk if f is None else f.result()
        if not good:
            log.warning("media.bad_cloud_chunk", peer=peer[:16])
            self._fail(chunk, "a broker sent the wrong bytes")
            return
        self.counters["media_cloud"] += len(data)
        self._asked.pop(chunk, None)
        self._tries.pop(chunk, None)
        for serve, _ in self._waiting.pop(chunk, []):
            serve(data)

    def on_direct(self, broker: str, rid: bytes, msg: wire.ChunkWant) -> None:
        """A broker asks us directly (broker/medialinks.py): the answer goes back the same
        way, and is never passed on (we are the one it meant)."""
        if self.cloud is None:
            return
        cloud = self.cloud
        want = wire.ChunkWant(chunk=msg.chunk, origin=broker, target=self.me, hops=0)

        def back(found: object, body: Body | None) -> None:
            cloud.reply_direct(rid, found, body)

        self._run(lambda: self.store.read(want.chunk), lambda f: self._wanted(want, f, back),
                  want.chunk)  # fmt: skip

    def _wanted(
        self,
        msg: wire.ChunkWant,
        f: Future[Any],
        back: Callable[[object, Body | None], None] | None = None,
    ) -> None:
        """Answer a `ChunkWant`: `back` (a direct asker), else toward its origin by route."""
        try:
            data = f.result()
        except MediaError:
            data = None
        answer = functools.partial(self._toward, msg.origin) if back is None else back
        found = wire.ChunkFound(chunk=msg.chunk, to=msg.origin)

        def serve(d: Body) -> None:
            self.counters["media_to_cloud"] += len(d)
            answer(found, d)

        if data is not None:
            serve(data)
            return

        def fail(_why: str) -> None:
            found.missing = True
            answer(found, None)

        if msg.chunk in self._coming:  # uploaded here right now: it goes when it is in
            self._park(msg.chunk, serve, fail)
        elif msg.target == self.me or msg.hops == 0:
            fail("")
        else:
            msg.hops -= 1
            self._toward(msg.target, msg, None)

    def _toward(self, broker: str, msg: object, body: Body | None) -> None:
        assert self.cloud is not None
        hop = self.cloud.next_hop(broker)
        if hop is None or not self.cloud.send(hop, msg, body):
            log.info("media.no_route", to=broker[:16])

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for chunk, asked in list(self._asked.items()):
            if now - asked >= WANT_S:
                self._fail(chunk, "the chunk did not come in time: try again")
        for chunk, until in list(self._coming.items()):
            if now >= until:
                del self._coming[chunk]

    def gc(self) -> None:
        def done(f: Future[tuple[int, int]]) -> None:
            try:
                files, chunks = f.result()
            except Exception:
                log.exception("media.gc_failed")
                return
            if files or chunks:
                log.info("media.gc", files=files, chunks=chunks)

        self._run(self.store.gc, done)
