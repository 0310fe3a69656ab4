"""What each end keeps between two pairings for a history transfer to resume: the linking
device's snapshots (by hash, for one --history choice, an hour), the new device's chunks
(held only when they hash to what the bundle names), and chunks checked as they come."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tits.client import history as H
from tits.client import resume as R

ME = "A" * 40


def _archive(tmp: Path, chunks: float = 5.5) -> Path:
    path = tmp / "made" / "history.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(int(chunks * H.CHUNK_BYTES)))
    return path


def test_ranges_are_compact_and_come_back_within_the_archive() -> None:
    assert R.ranges([5, 0, 1, 2, 2, 7, 6]) == [(0, 3), (5, 8)]
    assert R.expand([(0, 3), (5, 8), (90, 1 << 30)], 7) == {0, 1, 2, 5, 6}
    assert R.expand([(-5, 1)], 3) == {0}


def test_a_snapshot_is_reused_by_its_hash_for_the_same_choice_only(tmp_path: Path) -> None:
    snaps = R.Snapshots(tmp_path / "home")
    made: list[Path] = []

    def make() -> Path:
        made.append(_archive(tmp_path / str(len(made))))
        return made[-1]

    first, same = snaps.archive_for(b"", "all", make)
    assert not same and first.stem == H.digest(first).hex()
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    again, same = snaps.archive_for(bytes.fromhex(first.stem), "all", make)
    assert same and again == first and len(made) == 1
    other, same = snaps.archive_for(bytes.fromhex(first.stem), "30d", make)
    assert not same and other != first and len(made) == 2
    assert snaps.archive_for(b"\0" * 32, "all", make)[1] is False  # not ours: a new one
    snaps.sweep(now=time.time() + R.KEEP_S + 1)
    assert not list(snaps.dir.glob("*"))


def test_the_new_device_holds_only_chunks_that_hash_right(tmp_path: Path) -> None:
    src = _archive(tmp_path)
    size, hashes, sha = src.stat().st_size, R.chunk_hashes(src), H.digest(src)
    total = H.chunk_count(size)
    part = R.Partial(tmp_path / "new")
    got, had = part.receiver(ME, total, size, sha, hashes)
    assert had == 0
    for i in (0, 1, 2):
        got.add(i, H.read_chunk(src, i))
    with pytest.raises(H.HistoryError, match="not the one"):
        got.add(3, b"\0" * H.CHUNK_BYTES)  # the right size, the wrong bytes
    assert part.offer(ME) == (sha, [(0, 3)])
    assert part.offer("B" * 40) == (b"", [])  # kept for another account: nothing to offer
    with part.archive.open("r+b") as fh:  # altered on disk: no longer held
        fh.seek(H.CHUNK_BYTES + 7)
        fh.write(b"!")
    assert part.offer(ME) == (sha, [(0, 1), (2, 3)])
    # the next pairing's bundle decides: the same archive keeps 0 and 2 ...
    got, had = part.receiver(ME, total, size, sha, hashes)
    assert had == 2 and got.missing == [1, 3, 4, 5]
    for i in got.missing:
        got.add(i, H.read_chunk(src, i))
    assert H.digest(got.finish()) == sha
    # ... another archive starts again from nothing
    manifest = json.loads(part.manifest.read_text())
    assert manifest["sha256"] == sha.hex()
    other = _archive(tmp_path / "b")
    got, had = part.receiver(ME, total, size, H.digest(other), R.chunk_hashes(other))
    assert had == 0 and got.missing == list(range(total))
