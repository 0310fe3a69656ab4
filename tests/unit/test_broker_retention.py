"""What a prune past max_age_s takes from each device is counted before it goes, per device
(not what it acknowledged, not its own sends, not a relay's), said at its login and then
cleared; a device away longer than max_age_s is told even with nothing counted here."""

from __future__ import annotations

import time
from pathlib import Path

from tits.broker.store import Job, Store, Writer

U = "U" * 40


def _run(writer: Writer, *jobs: Job) -> None:
    for j in jobs:
        writer.submit(j)
    for _ in jobs:
        assert writer.done.get(timeout=10).error is None


def test_a_prune_counts_what_each_device_had_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "normal", lambda: None)
    old = int(time.time()) - 1000
    rows = []
    for n in range(5):  # seq 1..5: the third one sent by d2 itself (not delivered to it)
        seq = store.allocate()
        skip = "d2" if n == 2 else ""
        rows.append((seq, U, seq.to_bytes(16, "big"), "S" * 40, b"e", b"b%d" % seq, old + n, skip))
    seq = store.allocate()
    rows.append((seq, "@broker/x", seq.to_bytes(16, "big"), "S" * 40, b"e", b"r", old, ""))
    _run(writer, Job(rows=rows, devices=[(U, "d1"), (U, "d2"), ("@broker/x", "r")]))
    _run(writer, Job(cursors=[(5, U, "d1"), (1, U, "d2")]))
    assert store.gap(U, "d1", 100_000.0) is None  # nothing pruned, not away
    _run(writer, Job(prune=(time.time(), 10.0, 100.0)))
    assert store.fetch(U, 0, 10) == []
    assert store.gap(U, "d1", 100.0) is None  # it had taken all five
    gap = store.gap(U, "d2", 100.0)
    assert gap is not None and gap.missed == 3 and gap.retention_s == 100  # seq 2, 4, 5
    assert (gap.oldest, gap.newest) == (old + 1, old + 4) and gap.seen > 0
    assert store.gap("@broker/x", "r", 100.0) is None
    _run(writer, Job(told=[(U, "d2", gap.newest)]))
    assert store.gap(U, "d2", 100.0) is None  # said once
    writer.close()
    store.close()


def test_a_device_away_longer_than_max_age_is_told_without_a_count(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "normal", lambda: None)
    _run(writer, Job(devices=[(U, "d1")]))
    store.db.execute("UPDATE cursors SET seen = ? WHERE device = 'd1'", (int(time.time()) - 500,))
    store.db.commit()
    gap = store.gap(U, "d1", 100.0)
    assert gap is not None and gap.missed == 0 and gap.seen > 0
    assert store.gap(U, "d1", 1000.0) is None
    _run(writer, Job(devices=[(U, "d1")]))  # its next login is a sign of life
    assert store.gap(U, "d1", 100.0) is None
    assert store.gap(U, "never-seen", 100.0) is None
    writer.close()
    store.close()
