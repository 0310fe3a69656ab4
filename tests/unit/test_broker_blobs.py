"""The broker's chunk store without sockets: a chunk stored once (counted on disk), uploads
only for offered files, bytes checked against their hash, quotas, limits and retention."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tits import wire
from tits.broker.blobs import BlobStore, MediaLimits
from tits.errors import MediaError
from tits.media.assembly import read_chunk
from tits.media.manifest import scan

ALICE, BOB = "A" * 40, "B" * 40


def chunk_files(data: Path) -> list[Path]:
    """What is on the broker's disk, not what it says."""
    return [p for p in (data / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".")]


def file_of(tmp: Path, size: int, name: str = "f.bin") -> tuple[Path, wire.Manifest]:
    p = tmp / name
    p.write_bytes(os.urandom(size))
    return p, scan(p)


def upload(store: BlobStore, user: str, path: Path, m: wire.Manifest) -> list[int]:
    missing = store.offer(user, wire.encode(m), m.sha256).missing
    for i in missing:
        store.put(m.sha256, i, read_chunk(path, m, i))
    return missing


def test_the_same_file_a_hundred_times_is_one_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "d")
    path, m = file_of(tmp_path, 40_000, "sticker.png")
    sent = [upload(store, ALICE if i % 2 else BOB, path, m) for i in range(100)]
    assert sent[0] == [0] and all(s == [] for s in sent[1:])
    assert len(chunk_files(tmp_path / "d")) == 1
    store.close()


def test_a_chunk_is_taken_only_for_an_offered_file_and_only_its_bytes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "d")
    path, m = file_of(tmp_path, 2 * wire.CHUNK_SIZE)
    with pytest.raises(MediaError) as err:
        store.put(m.sha256, 0, read_chunk(path, m, 0))
    assert err.value.code == "unknown-manifest"
    store.offer(ALICE, wire.encode(m), m.sha256)
    with pytest.raises(MediaError) as err:
        store.put(m.sha256, 0, os.urandom(wire.CHUNK_SIZE))
    assert err.value.code == "bad-chunk"
    with pytest.raises(MediaError) as err:
        store.put(m.sha256, 1, read_chunk(path, m, 1)[:-1])
    assert err.value.code == "bad-chunk"
    assert chunk_files(tmp_path / "d") == []
    assert store.put(m.sha256, 1, read_chunk(path, m, 1)) is False
    assert store.put(m.sha256, 0, read_chunk(path, m, 0)) is True  # complete
    store.close()


def test_an_offer_says_what_is_missing_after_a_restart(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "d")
    path, m = file_of(tmp_path, 3 * wire.CHUNK_SIZE)
    store.offer(ALICE, wire.encode(m), m.sha256)
    store.put(m.sha256, 1, read_chunk(path, m, 1))
    store.close()
    again = BlobStore(tmp_path / "d")
    assert again.offer(ALICE, wire.encode(m), m.sha256).missing == [0, 2]
    again.close()


def test_limits_and_quota_are_typed_refusals(tmp_path: Path) -> None:
    lim = MediaLimits(quota_bytes=3 * wire.CHUNK_SIZE, max_size=2 * wire.CHUNK_SIZE, max_chunks=2)
    store = BlobStore(tmp_path / "d", lim)
    _, big = file_of(tmp_path, 2 * wire.CHUNK_SIZE + 1, "big")
    with pytest.raises(MediaError) as err:
        store.offer(ALICE, wire.encode(big), big.sha256)
    assert err.value.code == "too-many-chunks"
    p1, one = file_of(tmp_path, 2 * wire.CHUNK_SIZE, "one")
    _, two = file_of(tmp_path, 2 * wire.CHUNK_SIZE, "two")
    upload(store, ALICE, p1, one)
    with pytest.raises(MediaError) as err:
        store.offer(ALICE, wire.encode(two), two.sha256)
    assert err.value.code == "quota"
    store.offer(ALICE, wire.encode(one), one.sha256)  # what she has already costs no more
    store.offer(BOB, wire.encode(two), two.sha256)  # and Bob has his own quota
    with pytest.raises(MediaError) as err:
        store.offer(ALICE, b"\xc1garbage", one.sha256)
    assert err.value.code == "bad-manifest"
    with pytest.raises(MediaError) as err:
        store.offer(ALICE, wire.encode(one), two.sha256)
    assert err.value.code == "bad-manifest"
    store.close()


def test_gc_deletes_what_retention_let_go_and_keeps_what_is_shared(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "d", MediaLimits(retention_s=100.0))
    p_old, old = file_of(tmp_path, 1000, "old")
    p_new, new = file_of(tmp_path, 1000, "new")
    store.offer(ALICE, wire.encode(old), old.sha256, now=1000.0)
    store.put(old.sha256, 0, read_chunk(p_old, old, 0))
    store.store(old.chunks[0], read_chunk(p_old, old, 0), now=1000.0)
    store.offer(ALICE, wire.encode(new), new.sha256, now=1150.0)
    store.put(new.sha256, 0, read_chunk(p_new, new, 0))
    store.store(new.chunks[0], read_chunk(p_new, new, 0), now=1150.0)
    assert len(chunk_files(tmp_path / "d")) == 2
    assert store.gc(now=1200.0) == (1, 1)
    assert [p.name for p in chunk_files(tmp_path / "d")] == [new.chunks[0].hex()]
    assert store.usage(ALICE, now=1200.0) == 1000
    store.close()


def test_a_chunk_changed_on_disk_since_it_was_written_is_hashed_again(tmp_path: Path) -> None:
    """A chunk the store wrote is served without a second hash only while its file is the
    one it wrote: one rotted or swapped since is caught, forgotten and asked for again."""
    path, m = file_of(tmp_path, 2 * wire.CHUNK_SIZE)
    store = BlobStore(tmp_path / "d")
    upload(store, ALICE, path, m)
    assert store.read(m.chunks[0]) == read_chunk(path, m, 0)
    blob = store.path_of(m.chunks[1])
    st = blob.stat()
    blob.write_bytes(os.urandom(st.st_size))
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # however coarse the clock
    assert store.read(m.chunks[1]) is None
    assert not store.has(m.chunks[1]) and not blob.exists()
    assert store.offer(ALICE, wire.encode(m), m.sha256).missing == [1]
    store.close()
