"""The durable mailbox: SQLite in WAL mode, written in group commits by the broker thread.

    mail(seq, user, id, sender, env, body, ts)   one row per recipient, in acceptance order
    cursors(user, device, cursor)                every message of `user` with seq <= cursor
                                                 has been acknowledged by that device

`seq` is assigned here, in memory, so a batch can be inserted with one `executemany` and the
caller knows every row's seq without reading back. A message is acknowledged to its sender
only after the transaction that holds it has committed (`durability="full"` also fsyncs the
WAL on every commit, so a power cut loses nothing acknowledged either).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS mail (
    seq INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    id BLOB NOT NULL,
    sender TEXT NOT NULL,
    env BLOB NOT NULL,
    body BLOB NOT NULL,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mail_user ON mail(user, seq);
CREATE INDEX IF NOT EXISTS mail_id ON mail(id);
CREATE TABLE IF NOT EXISTS cursors (
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    seen INTEGER NOT NULL,
    PRIMARY KEY (user, device)
) WITHOUT ROWID;
"""

Row = tuple[int, str, bytes, str, bytes, bytes, int]  # seq, user, id, sender, env, body, ts


class Store:
    def __init__(self, path: Path, durability: str = "full") -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self.db.execute("PRAGMA wal_autocheckpoint=4000")
        self.db.executescript(SCHEMA)
        (last,) = self.db.execute("SELECT coalesce(max(seq), 0) FROM mail").fetchone()
        self.next_seq = int(last) + 1

    def allocate(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def commit(self, rows: Sequence[Row], cursors: Iterable[tuple[int, str, str]]) -> None:
        """One transaction: the new rows and the cursor moves (cursor, user, device)."""
        cursors = list(cursors)
        if not rows and not cursors:
            return
        now = int(time.time())
        db = self.db
        db.execute("BEGIN")
        try:
            if rows:
                db.executemany("INSERT INTO mail VALUES (?,?,?,?,?,?,?)", rows)
            if cursors:
                db.executemany(
                    "UPDATE cursors SET cursor=max(cursor, ?), seen=? WHERE user=? AND device=?",
                    [(c, now, u, d) for c, u, d in cursors],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- reads --------------------------------------------------------------------------------

    def device_cursor(self, user: str, device: str) -> int:
        """The device's cursor; a device seen for the first time starts at 0 (it gets every
        message still kept for its user)."""
        row = self.db.execute(
            "SELECT cursor FROM cursors WHERE user=? AND device=?", (user, device)
        ).fetchone()
        if row is not None:
            return int(row[0])
        self.db.execute("INSERT INTO cursors VALUES (?,?,?,?)", (user, device, 0, int(time.time())))
        return 0

    def last_seq(self, user: str) -> int:
        (last,) = self.db.execute(
            "SELECT coalesce(max(seq), 0) FROM mail WHERE user=?", (user,)
        ).fetchone()
        return int(last)

    def count_after(self, user: str, seq: int) -> int:
        (n,) = self.db.execute(
            "SELECT count(*) FROM mail WHERE user=? AND seq>?", (user, seq)
        ).fetchone()
        return int(n)

    def fetch(self, user: str, after: int, limit: int) -> list[tuple[int, bytes, bytes, bytes]]:
        """(seq, id, env, body) of `user`'s messages after `after`, oldest first."""
        return self.db.execute(
            "SELECT seq, id, env, body FROM mail WHERE user=? AND seq>? ORDER BY seq LIMIT ?",
            (user, after, limit),
        ).fetchall()

    def senders_of(self, ids: Sequence[bytes]) -> dict[bytes, str]:
        """Which of these message ids are already stored, and who sent them."""
        out: dict[bytes, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = "SELECT id, sender FROM mail WHERE id IN (%s)" % ",".join("?" * len(chunk))
            out.update((bytes(a), b) for a, b in self.db.execute(q, chunk))
        return out

    def recent(self, since_ts: int) -> list[tuple[bytes, str]]:
        return [
            (bytes(a), b)
            for a, b in self.db.execute("SELECT id, sender FROM mail WHERE ts>=?", (since_ts,))
        ]

    def stats(self) -> dict[str, int]:
        (n,) = self.db.execute("SELECT count(*) FROM mail").fetchone()
        (d,) = self.db.execute("SELECT count(*) FROM cursors").fetchone()
        return {"stored": int(n), "devices": int(d)}

    # -- housekeeping -------------------------------------------------------------------------

    def prune(self, now: float, keep_s: float, max_age_s: float) -> int:
        """Drop messages every known device has acknowledged and that are older than `keep_s`
        (kept that long for devices still to come), and anything older than `max_age_s`."""
        cur = self.db.execute(
            "DELETE FROM mail WHERE (ts < ? AND seq <= "
            "(SELECT min(c.cursor) FROM cursors c WHERE c.user = mail.user)) OR ts < ?",
            (int(now - keep_s), int(now - max_age_s)),
        )
        return cur.rowcount

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()
