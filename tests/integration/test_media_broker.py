"""Media through one real broker: a file uploaded in chunks and fetched checked, the same
sticker a hundred times stored once on the broker's disk, a broken upload resumed after a
`kill -9` of the broker without resending what arrived, and typed refusals for chunks whose
bytes lie and for uploads of files never offered."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.broker_fixtures import (  # noqa: F401
    BrokerProc,
    People,
    broker_fixture,
    connect,
    people_fixture,
    wait_for,
)
from tits import wire
from tits.client import Connection
from tits.client.blocking import Messenger
from tits.client.model import Message
from tits.client.transfer import WINDOW
from tits.errors import MediaError
from tits.media.manifest import scan

MB = 1 << 20


def blob_files(data: Path) -> list[Path]:
    """Chunk files on the broker's disk (not what the broker says it has)."""
    return [p for p in (data / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".")]


def media_of(m: Messenger, n: int, timeout: float = 60.0) -> list[Message]:
    got: list[Message] = []
    wait_for(lambda: m.receive(got.append, timeout=1.0) >= 0 and len(got) >= n, timeout, "media")
    return [g for g in got if g.kind == "media"]


def test_a_file_goes_in_chunks_and_arrives_checked(
    broker: BrokerProc, people: People, tmp_path: Path
) -> None:
    data = os.urandom(2 * wire.CHUNK_SIZE + 1234)
    src = tmp_path / "假期 video.mp4"
    src.write_bytes(data)
    with (
        Messenger(people.alice, broker=broker.url) as a,
        Messenger(people.bob, broker=broker.url) as b,
    ):
        seen: list[tuple[int, int]] = []
        a.send_file(people.bob.fingerprint, src, progress=lambda d, t: seen.append((d, t)))
        assert seen[-1] == (len(data), len(data))
        assert a.client.transfers.sent_bytes == len(data)
        [msg] = media_of(b, 1)
        info = msg.to_json()["media"]
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["size"] == len(data) and info["path"] is None and info["verified"]
        assert info["name"] == "假期 video.mp4"
        path = b.fetch(msg)
        assert path == people.bob.path / "media" / info["sha256"]
        assert path.read_bytes() == data
        assert (people.bob.path / "media" / "files" / "假期 video.mp4").read_bytes() == data
        assert b.store.message(msg.id).file == str(path)  # type: ignore[union-attr]
    assert len(blob_files(broker.data)) == 3


def test_the_same_sticker_a_hundred_times_is_one_blob(
    broker: BrokerProc, people: People, tmp_path: Path
) -> None:
    sticker = tmp_path / "love.png"
    sticker.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(20_000))
    with Messenger(people.alice, broker=broker.url) as a:
        m = scan(sticker)
        for _ in range(100):
            a.send_file(people.bob.fingerprint, sticker, manifest=m)
        assert a.client.transfers.sent_bytes == sticker.stat().st_size  # sent once
    with Messenger(people.bob, broker=broker.url) as b:
        msgs = media_of(b, 100)
        assert len(msgs) == 100
        assert b.fetch(msgs[0]).read_bytes() == sticker.read_bytes()
    files = blob_files(broker.data)
    assert len(files) == 1 and files[0].name == m.chunks[0].hex()


def test_an_upload_resumes_after_the_broker_is_killed(
    broker: BrokerProc, people: People, tmp_path: Path
) -> None:
    data = os.urandom(10 * wire.CHUNK_SIZE)  # starting over would send 15 chunks
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with Messenger(people.alice, broker=broker.url) as a:
        m = a._run(a.client.scan(src))
        killed: list[int] = []

        def progress(done: int, total: int) -> None:
            if done >= total // 2 and not killed:
                killed.append(done)
                broker.kill9()
                broker.start()  # same data, same client port: the client reconnects

        a.send_file(people.bob.fingerprint, src, manifest=m, progress=progress)
        sent = a.client.transfers.sent_bytes
    assert killed
    # what was stored before the kill was not sent again: at most the window in flight
    assert len(data) <= sent <= len(data) + (WINDOW + 1) * wire.CHUNK_SIZE, sent
    with Messenger(people.bob, broker=broker.url) as b:
        [msg] = media_of(b, 1)
        assert hashlib.sha256(b.fetch(msg).read_bytes()).digest() == m.sha256


def answer(conn: Connection, kind: type) -> Any:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = conn.recv(1.0)
        if isinstance(got, kind):
            return got
    raise AssertionError(f"no {kind.__name__}")


def test_lying_chunks_and_unknown_files_are_refused(broker: BrokerProc, people: People) -> None:
    conn = connect(people.alice, broker.url)
    try:
        sha = os.urandom(32)
        conn._send(wire.ChunkPut(sha256=sha, index=0), b"x" * 100)
        err = answer(conn, wire.BlobError)
        assert err.code == "unknown-manifest"
        data = os.urandom(3000)
        m = wire.Manifest(
            sha256=hashlib.sha256(data).digest(), size=3000,
            chunks=[hashlib.sha256(data).digest()],
        )  # fmt: skip
        conn._send(wire.BlobOffer(sha256=m.sha256), wire.encode(m))
        have = answer(conn, wire.BlobHave)
        assert have.missing == [0]
        conn._send(wire.ChunkPut(sha256=m.sha256, index=0), os.urandom(3000))
        err = answer(conn, wire.BlobError)
        assert err.code == "bad-chunk"
        huge = wire.Manifest(sha256=os.urandom(32), size=1 << 40, chunks=[])
        conn._send(wire.BlobOffer(sha256=huge.sha256), wire.encode(huge))
        err = answer(conn, wire.BlobError)
        assert err.code == "bad-manifest"
        conn._send(wire.ChunkGet(chunk=os.urandom(32)))
        err = answer(conn, wire.BlobError)
        assert err.code == "not-found"
        conn._send(wire.Ping(t=1))  # and the broker still serves
        assert answer(conn, wire.Pong).user == people.alice.fingerprint
    finally:
        conn.close()
    assert blob_files(broker.data) == []


def test_a_receiver_fetches_while_the_sender_still_sends(
    broker: BrokerProc, people: People, tmp_path: Path
) -> None:
    """The message goes once the broker took the offer; the broker holds a chunk asked for
    until its upload brings it."""
    import threading

    data = os.urandom(3 * wire.CHUNK_SIZE)
    src = tmp_path / "live.bin"
    src.write_bytes(data)
    with (
        Messenger(people.alice, broker=broker.url) as a,
        Messenger(people.bob, broker=broker.url) as b,
    ):
        m = a.scan(src)
        events: list[tuple[str, float]] = []

        def slow(done: int, total: int) -> None:
            time.sleep(0.15)  # a slow uplink: ~7 MB/s
            if done == total:
                events.append(("sent", time.monotonic()))

        def receive() -> None:
            [msg] = media_of(b, 1)

            def got(done: int, total: int) -> None:
                if not any(e == "first" for e, _ in events):
                    events.append(("first", time.monotonic()))

            path = b.fetch(msg, progress=got)
            events.append(("fetched", time.monotonic()))
            assert path.read_bytes() == data

        t = threading.Thread(target=receive)
        t.start()
        a.send_file(people.bob.fingerprint, src, manifest=m, progress=slow)
        t.join(120)
    when = dict(events)
    assert set(when) == {"sent", "first", "fetched"}, events
    assert when["first"] < when["sent"]  # Bob had chunks before Alice had sent them all


def test_the_quota_in_the_broker_config_is_a_typed_refusal(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.broker_fixtures import short_tmpdir

    monkeypatch.setenv("TITSD_MEDIA_QUOTA_BYTES", str(3 * MB))
    monkeypatch.setenv("TITSD_MEDIA_MAX_SIZE", str(4 * MB))
    root = short_tmpdir("tq")
    broker = BrokerProc(root / "broker").start()
    try:
        files = []
        for i, size in enumerate((2 * MB, 2 * MB, 5 * MB)):
            f = tmp_path / f"f{i}.bin"
            f.write_bytes(os.urandom(size))
            files.append(f)
        with Messenger(people.alice, broker=broker.url) as a:
            a.send_file(people.bob.fingerprint, files[0])
            with pytest.raises(MediaError) as err:
                a.send_file(people.bob.fingerprint, files[1])
            assert err.value.code == "quota"
            with pytest.raises(MediaError) as err:
                a.send_file(people.bob.fingerprint, files[2])
            assert err.value.code == "too-big"
            a.send_file(people.bob.fingerprint, files[0])  # what she has there costs no more
        with Messenger(people.bob, broker=broker.url) as b:
            assert len(media_of(b, 2)) == 2  # the refused ones were never sent
    finally:
        broker.cleanup()
        shutil.rmtree(root, ignore_errors=True)
