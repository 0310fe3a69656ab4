"""The mailbox store and its writer thread."""

from __future__ import annotations

import time
from pathlib import Path

from tits.broker.store import STORED_SQL, Job, Store, Writer


def rows(store: Store, user: str, n: int, ts: int = 0) -> list[tuple]:
    """`n` messages for `user`, each with its own id (the id is its seq)."""
    out = []
    for _ in range(n):
        seq = store.allocate()
        out.append((seq, user, seq.to_bytes(16, "big"), "S" * 40, b"e", b"b%d" % seq, ts, ""))
    return out


def test_jobs_commit_in_order_and_seq_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "full", lambda: None)
    jobs = [Job(rows=rows(store, "U" * 40, 700), token=i) for i in range(5)]
    for j in jobs:
        writer.submit(j)
    done = [writer.done.get(timeout=10) for _ in jobs]
    assert [j.token for j in done] == list(range(5)) and all(j.error is None for j in done)
    assert writer.stats["rows"] == 3500
    assert store.last_seq("U" * 40) == 3500 and store.count_after("U" * 40, 3000) == 500
    got = store.fetch("U" * 40, 3498, 10)
    assert [r[0] for r in got] == [3499, 3500]
    writer.close()
    store.close()
    again = Store(path)
    assert again.next_seq == 3501
    again.close()


def test_a_failed_commit_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "normal", lambda: None)
    good = rows(store, "U" * 40, 1)
    writer.submit(Job(rows=good))
    assert writer.done.get(timeout=10).error is None
    writer.submit(Job(rows=good))  # the same seq again: a constraint error
    assert writer.done.get(timeout=10).error is not None
    writer.close()
    store.close()


def test_cursor_upsert_never_goes_back_and_prune(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "normal", lambda: None)
    old = int(time.time()) - 1000
    writer.submit(Job(rows=rows(store, "U" * 40, 4, ts=old), devices=[("U" * 40, "d1")]))
    writer.submit(Job(cursors=[(3, "U" * 40, "d1")]))
    writer.submit(Job(cursors=[(1, "U" * 40, "d1")]))
    for _ in range(3):
        writer.done.get(timeout=10)
    assert store.device_cursor("U" * 40, "d1") == 3
    assert store.device_cursor("U" * 40, "d2") == 0
    # kept while younger than keep_s; then only what every device has acknowledged goes
    writer.submit(Job(prune=(time.time(), 10_000.0, 100_000.0)))
    assert writer.done.get(timeout=10).pruned == 0
    writer.submit(Job(prune=(time.time(), 10.0, 100_000.0)))
    assert writer.done.get(timeout=10).pruned == 3
    assert [r[0] for r in store.fetch("U" * 40, 0, 10)] == [4]
    assert store.senders_of([(4).to_bytes(16, "big"), b"x" * 16]) == {
        (4).to_bytes(16, "big"): "S" * 40
    }
    writer.close()
    store.close()


def test_stored_already_finds_pairs_by_message_id_not_by_reading_mailboxes(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "mail.db")
    writer = Writer(tmp_path / "mail.db", "normal", lambda: None)
    ids = [n.to_bytes(16, "big") for n in range(300)]
    rows = [(n + 1, "U" * 40, i, "S" * 40, b"env", b"body", 0, "") for n, i in enumerate(ids)]
    writer.submit(Job(rows=rows))
    writer.close()
    got = store.stored_already([(ids[5], "U" * 40), (ids[6], "V" * 40), (b"n" * 16, "U" * 40)])
    assert got == {(ids[5], "U" * 40)}
    # SQLite left to itself reads the users' whole mailboxes (mail_user): by id it must go
    query = STORED_SQL.format(ids="?,?", users="?")
    plan = str(store.db.execute("EXPLAIN QUERY PLAN " + query, (ids[0], ids[1], "U")).fetchall())
    assert "INDEX mail_id_user" in plan, plan
    store.close()
