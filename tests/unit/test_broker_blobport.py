"""The broker's media port without sockets (its store real, on disk; replies recorded):
a chunk asked for while its upload is under way waits for it, limits answer with typed
errors, and a client not logged in gets nothing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import zmq

from tits import wire
from tits.broker.blobport import BlobPort
from tits.broker.blobs import BlobStore, MediaLimits
from tits.broker.delivery import SendResult
from tits.media.assembly import read_chunk
from tits.media.manifest import scan

ALICE, BOB = "A" * 40, "B" * 40


class Replies:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any, bytes | None]] = []

    def reply(self, route: bytes, msg: Any) -> bool:
        self.sent.append((route, msg, None))
        return True

    def deliver(self, route: bytes, env: bytes, body: bytes | zmq.Frame) -> SendResult:
        data = body.bytes if isinstance(body, zmq.Frame) else body
        self.sent.append((route, wire.SERVER_DECODER.decode(env), data))
        return SendResult.OK

    def of(self, route: bytes) -> list[Any]:
        return [m for r, m, _ in self.sent if r == route]


def frames(msg: Any, body: bytes | None = None) -> list[zmq.Frame]:
    out = [zmq.Frame(b"route"), zmq.Frame(wire.encode(msg))]
    return out + ([zmq.Frame(body)] if body is not None else [])


def port(tmp: Path, **limits: Any) -> tuple[BlobPort, Replies]:
    replies = Replies()
    return BlobPort(BlobStore(tmp / "d", MediaLimits(**limits)), "C" * 40, replies, {}), replies


def test_a_chunk_asked_for_during_its_upload_is_served_when_it_comes(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(2 * wire.CHUNK_SIZE))
    m = scan(src)
    p, r = port(tmp_path)
    offer = wire.BlobOffer(sha256=m.sha256)
    p.handle(b"alice", ALICE, offer, frames(offer, wire.encode(m)))
    assert r.of(b"alice") == [wire.BlobHave(sha256=m.sha256, missing=[0, 1])]
    get = wire.ChunkGet(chunk=m.chunks[1], index=1)
    p.handle(b"bob", BOB, get, frames(get))
    assert r.of(b"bob") == []  # waiting, not refused
    put = wire.ChunkPut(sha256=m.sha256, index=1)
    p.handle(b"alice", ALICE, put, frames(put, read_chunk(src, m, 1)))
    [(_, data, body)] = [x for x in r.sent if x[0] == b"bob"]
    assert data == wire.ChunkData(chunk=m.chunks[1], index=1)
    assert body == read_chunk(src, m, 1)
    # a chunk of no file offered here, with no holder to ask: not-found at once
    other = wire.ChunkGet(chunk=os.urandom(32))
    p.handle(b"bob", BOB, other, frames(other))
    assert r.of(b"bob")[-1].code == "not-found"
    # and one still coming that never comes: not-found once the wait is over
    late = wire.ChunkGet(chunk=m.chunks[0], index=0)
    p.handle(b"bob", BOB, late, frames(late))
    p.tick(1e12)
    assert r.of(b"bob")[-1] == wire.BlobError(
        code="not-found", message="the chunk did not come in time: try again",
        chunk=m.chunks[0], index=0,
    )  # fmt: skip
    p.store.close()


def test_limits_are_typed_refusals(tmp_path: Path) -> None:
    p, r = port(tmp_path, rate_bytes=float(wire.CHUNK_SIZE))
    get = wire.ChunkGet(chunk=os.urandom(32))
    for _ in range(9):
        p.handle(b"bob", BOB, get, frames(get))
    codes = [e.code for e in r.of(b"bob")]
    assert codes == ["not-found"] * 8 + ["rate-limited"]  # a burst of 8 chunks, then slow down
    put = wire.ChunkPut(sha256=os.urandom(32), index=0)
    p.handle(b"alice", ALICE, put, frames(put))  # no bytes
    offer = wire.BlobOffer(sha256=os.urandom(32))
    p.handle(b"alice", ALICE, offer, frames(offer))  # no manifest
    assert [e.code for e in r.of(b"alice")] == ["bad-chunk", "bad-manifest"]
    p.handle(b"eve", None, get, frames(get))
    assert [type(x) for x in r.of(b"eve")] == [wire.Error]
    assert r.of(b"eve")[0].code == "not-logged-in"
    p.store.close()


class FakeCloud:
    """Routes to `reachable` brokers (each its own next hop); the sender online at `at`."""

    def __init__(self, reachable: set[str], at: list[str]) -> None:
        self.reachable, self.at = reachable, at
        self.sent: list[tuple[str, Any]] = []

    def next_hop(self, broker: str) -> str | None:
        return broker if broker in self.reachable else None

    def send(self, peer: str, msg: object, body: bytes | zmq.Frame | None = None) -> bool:
        self.sent.append((peer, msg))
        return True

    def where(self, fingerprint: str) -> list[str]:
        return self.at if fingerprint == ALICE else []


def test_a_chunk_is_asked_of_the_holder_then_of_where_its_sender_is(tmp_path: Path) -> None:
    holder, now_at = "D" * 40, "E" * 40
    p, r = port(tmp_path)
    cloud = FakeCloud({holder, now_at}, [now_at])
    p.cloud = cloud
    chunk = os.urandom(32)
    get = wire.ChunkGet(chunk=chunk, index=0, holder=holder, sender=ALICE)
    p.handle(b"bob", BOB, get, frames(get))
    assert [(peer, type(m)) for peer, m in cloud.sent] == [(holder, wire.ChunkWant)]
    # the holder restarted without it (Alice failed over mid-upload): it says so
    p.on_peer(holder, wire.ChunkFound(chunk=chunk, to=p.me, missing=True), None)
    assert r.of(b"bob")[-1].code == "not-found"
    p.handle(b"bob", BOB, get, frames(get))  # Bob asks again: now where Alice is
    assert cloud.sent[-1][0] == now_at and cloud.sent[-1][1].target == now_at
    data = os.urandom(1000)
    found = wire.ChunkFound(chunk=hashlib.sha256(data).digest(), to=p.me)
    p.on_peer(now_at, found, data)  # bytes for another chunk: nobody waits for them
    assert r.of(b"bob")[-1].code == "not-found"
    # and a holder no route reaches is skipped at once
    cloud.reachable = {now_at}
    other = wire.ChunkGet(chunk=os.urandom(32), index=1, holder=holder, sender=ALICE)
    p.handle(b"bob", BOB, other, frames(other))
    assert cloud.sent[-1][0] == now_at
    p.store.close()
