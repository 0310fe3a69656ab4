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

    def direct(self, broker: str, want: wire.ChunkWant) -> bool:
        return False  # no direct links here: every ask goes by route

    def reply_direct(self, rid: bytes, msg: object, body: bytes | zmq.Frame | None) -> bool:
        return False


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


class FarCloud(FakeCloud):
    """Every broker but `near` is reached through `near`; direct asks are recorded, and
    succeed while `direct_ok`."""

    def __init__(self, near: str, far: set[str]) -> None:
        super().__init__({near, *far}, [])
        self.near = near
        self.direct_ok = True
        self.asked_direct: list[tuple[str, wire.ChunkWant]] = []
        self.answers: list[tuple[bytes, Any, Any]] = []

    def next_hop(self, broker: str) -> str | None:
        return None if broker not in self.reachable else self.near

    def direct(self, broker: str, want: wire.ChunkWant) -> bool:
        self.asked_direct.append((broker, want))
        return self.direct_ok

    def reply_direct(self, rid: bytes, msg: object, body: bytes | zmq.Frame | None) -> bool:
        self.answers.append((rid, msg, body))
        return True


def test_a_far_holder_is_asked_directly_and_by_route_when_that_fails(tmp_path: Path) -> None:
    near, holder = "D" * 40, "F" * 40
    p, r = port(tmp_path)
    cloud = FarCloud(near, {holder})
    p.cloud = cloud
    data = os.urandom(5000)
    chunk = hashlib.sha256(data).digest()
    get = wire.ChunkGet(chunk=chunk, index=0, holder=holder, sender=ALICE)
    p.handle(b"bob", BOB, get, frames(get))
    assert [b for b, _ in cloud.asked_direct] == [holder] and cloud.sent == []
    # the direct link could not be had: the same want goes along the route, to the neighbour
    p.direct_failed(holder, [w for _, w in cloud.asked_direct])
    assert [(peer, m.target) for peer, m in cloud.sent] == [(near, holder)]
    p.on_peer(near, wire.ChunkFound(chunk=chunk, to=p.me), data)
    assert r.of(b"bob")[-1] == wire.ChunkData(chunk=chunk, index=0)
    # a want answered meanwhile is not sent again
    p.direct_failed(holder, [w for _, w in cloud.asked_direct])
    assert len(cloud.sent) == 1
    # a neighbour holder is asked on its link, never directly
    cloud.near = holder
    other = wire.ChunkGet(chunk=os.urandom(32), index=1, holder=holder, sender=ALICE)
    p.handle(b"bob", BOB, other, frames(other))
    assert len(cloud.asked_direct) == 1 and cloud.sent[-1][0] == holder
    p.store.close()


def test_a_direct_ask_is_answered_the_same_way_and_never_passed_on(tmp_path: Path) -> None:
    p, _ = port(tmp_path)
    cloud = FarCloud("D" * 40, {"F" * 40})
    p.cloud = cloud
    data = os.urandom(5000)
    chunk = hashlib.sha256(data).digest()
    p.store.store(chunk, data)
    asker = "E" * 40
    p.on_direct(asker, b"rid", wire.ChunkWant(chunk=chunk, origin=asker, target=p.me))
    rid, found, body = cloud.answers[-1]
    assert rid == b"rid" and found == wire.ChunkFound(chunk=chunk, to=asker) and body == data
    # one it lacks: "missing", at once, and no broker is asked on its behalf
    lack = os.urandom(32)
    p.on_direct(asker, b"rid", wire.ChunkWant(chunk=lack, origin=asker, target="F" * 40))
    assert cloud.answers[-1][1] == wire.ChunkFound(chunk=lack, to=asker, missing=True)
    assert cloud.sent == [] and cloud.asked_direct == []
    p.store.close()
