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


def test_a_message_is_in_a_mailbox_once_whatever_path_it_came_by(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "normal", lambda: None)
    msg_id = b"i" * 16
    first = [(store.allocate(), u, msg_id, "S" * 40, b"e", b"b", 0, "") for u in ("U", "V")]
    again = [(store.allocate(), u, msg_id, "S" * 40, b"e2", b"b2", 0, "") for u in ("U", "W")]
    writer.submit(Job(rows=first))
    writer.submit(Job(rows=again))
    assert all(writer.done.get(timeout=10).error is None for _ in range(2))
    got = store.db.execute("SELECT user, seq FROM mail WHERE id=? ORDER BY user", (msg_id,))
    assert [u for u, _ in got] == ["U", "V", "W"]  # U's second copy is not a second row
    assert [r[3] for r in store.fetch("U", 0, 10)] == [b"b"]
    assert store.stats()["bodies"] == 2  # one per commit of the message, not per recipient
    writer.close()
    store.close()


def test_the_wal_a_crash_left_is_checkpointed_at_start(tmp_path: Path) -> None:
    """Issue 14 hole 3: with `wal_autocheckpoint=0`, a WAL a kill -9 left (13–17 MiB on a full
    disk) was never folded back; freeing space did not help."""
    import subprocess
    import sys

    path = tmp_path / "m.db"
    crash = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pathlib import Path
from tits.broker.store import Job, Store, Writer
store = Store(Path({str(path)!r}))
writer = Writer(store.path, "normal", lambda: None)
writer._ckpt_stop.set()  # no checkpoints: the WAL only grows
rows = [(store.allocate(), "U", n.to_bytes(16, "big"), "S", b"e", os.urandom(4000), 0, "")
        for n in range(500)]
writer.submit(Job(rows=rows))
assert writer.done.get(timeout=30).error is None
os._exit(0)  # as kill -9: nothing closed, nothing checkpointed
"""
    subprocess.run([sys.executable, "-c", crash], check=True, timeout=60)
    wal = path.with_name("m.db-wal")
    assert wal.stat().st_size > 1 << 20
    store = Store(path)
    assert wal.stat().st_size == 0
    assert store.count_after("U", 0) == 500
    store.close()


def test_seqs_never_go_back_after_pruning_took_the_newest_rows(tmp_path: Path) -> None:
    """A restart after everything was pruned must not hand out seqs a cursor has passed
    (the device would never be sent them). main took max(seq) of what was left."""
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "normal", lambda: None)
    old = int(time.time()) - 1000
    writer.submit(Job(rows=rows(store, "U" * 40, 5, ts=old), devices=[("U" * 40, "d1")]))
    writer.submit(Job(cursors=[(5, "U" * 40, "d1")]))
    writer.submit(Job(prune=(time.time(), 10.0, 100_000.0)))
    assert [writer.done.get(timeout=10).pruned for _ in range(3)][-1] == 5
    writer.close()
    store.close()
    again = Store(path)
    assert again.next_seq == 6 and again.stats()["bodies"] == 0
    again.close()


# the mailbox as schema 2 wrote it (users by name in every row), kept here as it was on disk
SCHEMA_2_ON_DISK = """
CREATE TABLE bodies (ref INTEGER PRIMARY KEY, last INTEGER NOT NULL, id BLOB NOT NULL,
    sender TEXT NOT NULL, ts INTEGER NOT NULL, env BLOB NOT NULL, body BLOB NOT NULL);
CREATE TABLE mail (user TEXT NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL,
    ref INTEGER NOT NULL, ts INTEGER NOT NULL, skip TEXT NOT NULL,
    PRIMARY KEY (user, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX mail_id_user ON mail(id, user);
CREATE TABLE cursors (user TEXT NOT NULL, device TEXT NOT NULL, cursor INTEGER NOT NULL,
    seen INTEGER NOT NULL, PRIMARY KEY (user, device)) WITHOUT ROWID;
PRAGMA user_version=2;
"""


def test_a_schema_2_mailbox_opens_with_its_mail_cursors_and_dedup(tmp_path: Path) -> None:
    """Schema 3 numbers the users; a data dir of schema 2 keeps every message, cursor and
    seq, and takes new mail (a duplicate of an old message still once per mailbox)."""
    import sqlite3

    path = tmp_path / "m.db"
    alice, bob, carol = "A" * 40, "B" * 40, "C" * 40
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2_ON_DISK)
    now = int(time.time())
    # a group message of Alice's for Bob and Carol (one body), and her own row (from d1)
    db.execute(
        "INSERT INTO bodies VALUES (1, 3, ?, ?, ?, ?, ?)", (b"1" * 16, alice, now, b"e1", b"b1")
    )
    db.executemany(
        "INSERT INTO mail VALUES (?, ?, ?, 1, ?, ?)",
        [(bob, 1, b"1" * 16, now, ""), (carol, 2, b"1" * 16, now, ""),
         (alice, 3, b"1" * 16, now, "d1")],
    )  # fmt: skip
    db.execute(
        "INSERT INTO bodies VALUES (4, 4, ?, ?, ?, ?, ?)", (b"2" * 16, bob, now, b"e2", b"b2")
    )
    db.execute("INSERT INTO mail VALUES (?, 4, ?, 4, ?, '')", (alice, b"2" * 16, now))
    db.execute("INSERT INTO cursors VALUES (?, 'd2', 1, 0)", (bob,))
    db.commit()
    db.close()

    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert store.next_seq == 5
    assert store.stats() == {"stored": 4, "bodies": 2, "devices": 1}
    assert [(r[0], bytes(r[1]), r[3], r[4]) for r in store.fetch(alice, 0, 10)] == [
        (3, b"1" * 16, b"b1", "d1"),
        (4, b"2" * 16, b"b2", ""),
    ]
    assert store.count_after(alice, 0, "d1") == 1  # her own from d1 is not for d1
    assert [r[0] for r in store.fetch(bob, 0, 10)] == [1]
    assert store.device_cursor(bob, "d2") == 1
    assert store.senders_of([b"1" * 16, b"2" * 16]) == {b"1" * 16: alice, b"2" * 16: bob}
    assert store.recent(now - 10, 100) == ([(b"1" * 16, alice), (b"2" * 16, bob)], None)
    # the view of schema 2's table, for people and tools reading the file
    got = store.db.execute("SELECT user, seq, ts FROM mail ORDER BY seq").fetchall()
    assert got == [(bob, 1, now), (carol, 2, now), (alice, 3, now), (alice, 4, now)]

    writer = Writer(path, "normal", lambda: None)
    again = [(store.allocate(), u, b"1" * 16, alice, b"e", b"b", now, "") for u in (bob, "D" * 40)]
    writer.submit(Job(rows=again))
    assert writer.done.get(timeout=10).error is None
    assert [r[0] for r in store.fetch(bob, 0, 10)] == [1]  # Bob's copy is not a second row
    assert [r[0] for r in store.fetch("D" * 40, 0, 10)] == [6]
    writer.close()
    store.close()


def test_a_schema_1_mailbox_opens_with_its_mail(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "m.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE mail (seq INTEGER PRIMARY KEY, user TEXT NOT NULL, id BLOB NOT NULL,
            sender TEXT NOT NULL, env BLOB NOT NULL, body BLOB NOT NULL, ts INTEGER NOT NULL);
        CREATE INDEX mail_user ON mail(user, seq);
        CREATE INDEX mail_id ON mail(id);
        CREATE TABLE cursors (user TEXT NOT NULL, device TEXT NOT NULL,
            cursor INTEGER NOT NULL, seen INTEGER NOT NULL,
            PRIMARY KEY (user, device)) WITHOUT ROWID;
        """
    )
    db.executemany(
        "INSERT INTO mail VALUES (?, ?, ?, ?, ?, ?, 0)",
        [(n, "U" * 40, b"%016d" % n, "S" * 40, b"e", b"b%d" % n) for n in range(1, 4)],
    )
    db.commit()
    db.close()
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert [(r[0], r[3]) for r in store.fetch("U" * 40, 1, 10)] == [(2, b"b2"), (3, b"b3")]
    assert store.next_seq == 4
    store.close()
