"""The durable mailbox: SQLite in WAL mode, written in group commits by the broker thread.

    users(uid, name)                            a mailbox's owner (a fingerprint, or a relay's
                                                pseudo user "@broker/..."), as a small integer
    bodies(ref, last, id, sender, ts, env, body) a message's envelope and body, stored once
                                                for the rows with seq ref..last
    entries(uid, seq, id, ref, skip)            one row per (message, mailbox), in acceptance
                                                order, keyed by (uid, seq) (a mailbox is a
                                                range); `skip`: the device that sent it, which
                                                is not sent its own message back
    cursors(user, device, cursor)               every message of `user` with seq <= cursor
                                                has been acknowledged by that device
    mail (a view)                               entries with the user's name and the time, as
                                                the table of schema 2 was, for people and tests

A message id is in a mailbox at most once (a unique index), whatever path it came by: a
client's resend at another broker, a forward, a relay's retry. Users are integers in the two
per-row b-trees: a 40-character fingerprint in every row and in the (id, user) index cost a
third of a group commit (schema 2).

`seq` is assigned here, in memory, so a batch can be inserted with one `executemany` and the
caller knows every row's seq without reading back. A message is acknowledged to its sender
only after the transaction that holds it has committed (`durability="full"` also fsyncs the
WAL on every commit, so a power cut loses nothing acknowledged either). Commits run on the
`Writer` thread; the broker thread only reads (WAL lets both go at once). Only the writer
adds users; both sides keep a bounded cache of name → uid.
"""

from __future__ import annotations

import functools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tits import wire

from . import retention
from .purge import PRUNE_PURGES_SQL, Purge, ensure_table, purge_rows

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    uid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS bodies (
    ref INTEGER PRIMARY KEY,
    last INTEGER NOT NULL,
    id BLOB NOT NULL,
    sender INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    env BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    uid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    ref INTEGER NOT NULL,
    skip TEXT NOT NULL,
    PRIMARY KEY (uid, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS mail_id_user ON entries(id, uid);
CREATE TABLE IF NOT EXISTS cursors (
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    seen INTEGER NOT NULL,
    PRIMARY KEY (user, device)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS mail AS
    SELECT u.name AS user, e.seq AS seq, e.id AS id, e.ref AS ref, b.ts AS ts, e.skip AS skip
    FROM entries e JOIN users u ON u.uid = e.uid JOIN bodies b ON b.ref = e.ref;
"""

# schema 2 (users by name in every row), which `migrate` brings to 3
SCHEMA_2 = """
CREATE TABLE bodies (
    ref INTEGER PRIMARY KEY, last INTEGER NOT NULL, id BLOB NOT NULL, sender TEXT NOT NULL,
    ts INTEGER NOT NULL, env BLOB NOT NULL, body BLOB NOT NULL
);
CREATE TABLE mail (
    user TEXT NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL, ref INTEGER NOT NULL,
    ts INTEGER NOT NULL, skip TEXT NOT NULL, PRIMARY KEY (user, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX mail_id_user ON mail(id, user);
CREATE TABLE IF NOT EXISTS cursors (
    user TEXT NOT NULL, device TEXT NOT NULL, cursor INTEGER NOT NULL, seen INTEGER NOT NULL,
    PRIMARY KEY (user, device)
) WITHOUT ROWID;
"""

# seq, user, id, sender, env, body, ts, skip. Consecutive rows that share their env and body
# objects (one message's recipients) are stored with one `bodies` row.
Row = tuple[int, str, bytes, str, bytes, bytes, int, str]

UID_CACHE = 200_000  # names → uids remembered per connection (looked up again past that)


class Store:
    """The broker thread's connection: schema, seq numbers and every read. Writes go through
    `Writer`, on its own connection and thread, so an fsync never stalls the message loop."""

    def __init__(self, path: Path, durability: str = "full") -> None:
        self.path = path
        self.durability = durability
        self.db = connect(path, durability)
        migrate(self.db)
        ensure_table(self.db)
        retention.ensure(self.db)
        try:  # what a crash left in the WAL goes into the database now, and the WAL shrinks
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a full disk: the writer checkpoints again once there is room
        # seqs never go back, even when pruning took the newest rows: a cursor may be there
        (last,) = self.db.execute(
            "SELECT max(coalesce((SELECT last FROM bodies ORDER BY ref DESC LIMIT 1), 0),"
            " coalesce((SELECT max(cursor) FROM cursors), 0))"
        ).fetchone()
        self.next_seq = int(last) + 1
        self._uids: dict[str, int] = {}

    def allocate(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    # -- reads --------------------------------------------------------------------------------

    def uid(self, user: str) -> int | None:
        """The user's number, or None if no mail was ever stored for them here (the writer
        gives one with a user's first row; a uid never changes, so hits are cached)."""
        uid = self._uids.get(user)
        if uid is None:
            row = self.db.execute("SELECT uid FROM users WHERE name=?", (user,)).fetchone()
            if row is None:
                return None
            if len(self._uids) >= UID_CACHE:
                self._uids.clear()
            uid = self._uids[user] = int(row[0])
        return uid

    def device_cursor(self, user: str, device: str) -> int:
        """The device's cursor; a device seen for the first time starts at 0 (it gets every
        message still kept for its user)."""
        row = self.db.execute(
            "SELECT cursor FROM cursors WHERE user=? AND device=?", (user, device)
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def known_cursor(self, user: str, device: str) -> int | None:
        """The device's cursor, or None if this broker has never seen the device."""
        row = self.db.execute(
            "SELECT cursor FROM cursors WHERE user=? AND device=?", (user, device)
        ).fetchone()
        return int(row[0]) if row is not None else None

    def gap(self, user: str, device: str, max_age_s: float) -> wire.Gap | None:
        return retention.gap(self.db, user, device, max_age_s)

    def last_seq(self, user: str) -> int:
        uid = self.uid(user)
        if uid is None:
            return 0
        (last,) = self.db.execute(
            "SELECT coalesce(max(seq), 0) FROM entries WHERE uid=?", (uid,)
        ).fetchone()
        return int(last)

    def count_after(self, user: str, seq: int, device: str = "") -> int:
        """How many of `user`'s messages after `seq` are for `device` (not sent from it)."""
        uid = self.uid(user)
        if uid is None:
            return 0
        (n,) = self.db.execute(
            "SELECT count(*) FROM entries WHERE uid=? AND seq>? AND skip!=?",
            (uid, seq, device or "-"),  # (a skip is a device id or "")
        ).fetchone()
        return int(n)

    def fetch(
        self, user: str, after: int, limit: int
    ) -> list[tuple[int, bytes, bytes, bytes, str]]:
        """(seq, id, env, body, skip) of `user`'s messages after `after`, oldest first."""
        uid = self.uid(user)
        if uid is None:
            return []
        return self.db.execute(
            "SELECT e.seq, e.id, b.env, b.body, e.skip FROM entries e JOIN bodies b"
            " ON b.ref = e.ref WHERE e.uid=? AND e.seq>? ORDER BY e.seq LIMIT ?",
            (uid, after, limit),
        ).fetchall()

    def senders_of(self, ids: Sequence[bytes]) -> dict[bytes, str]:
        """Which of these message ids are already stored, and who sent them."""
        out: dict[bytes, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = (
                "SELECT e.id, u.name FROM entries e INDEXED BY mail_id_user JOIN bodies b"
                " ON b.ref = e.ref JOIN users u ON u.uid = b.sender"
                " WHERE e.id IN (%s)" % ",".join("?" * len(chunk))
            )
            out.update((bytes(a), b) for a, b in self.db.execute(q, chunk))
        return out

    def recent(self, since_ts: int, limit: int) -> tuple[list[tuple[bytes, str]], bytes | None]:
        """(id, sender) of messages accepted since `since_ts`, at most `limit`, oldest first;
        and the highest id among the stored messages left out (None if there is none)."""
        rows = self.db.execute(
            "SELECT b.ref, b.id, u.name FROM bodies b JOIN users u ON u.uid = b.sender"
            " WHERE b.ts>=? ORDER BY b.ref DESC LIMIT ?",
            (since_ts, limit),
        ).fetchall()
        oldest = rows[-1][0] if rows else self.next_seq
        (top,) = self.db.execute("SELECT max(id) FROM bodies WHERE ref<?", (oldest,)).fetchone()
        return [(bytes(i), s) for _, i, s in reversed(rows)], bytes(top) if top else None

    def stored_already(self, keys: list[tuple[bytes, str]]) -> set[tuple[bytes, str]]:
        """Of these (message id, user) pairs, the ones stored before: forwards seen before a
        restart. One query for a whole batch (a query per forward was a sixth of a receiving
        broker's time), narrowed by user too, so a group's many rows of one id stay cheap."""
        wanted = set(keys)
        names: dict[int, str] = {}
        for _, user in wanted:
            uid = self.uid(user)
            if uid is not None:  # (a user without a number has no mail here)
                names[uid] = user
        ids = list({msg_id for msg_id, _ in wanted})
        uids = list(names)
        out: set[tuple[bytes, str]] = set()
        for i in range(0, len(ids), 400):
            for j in range(0, len(uids), 400):
                chunk_ids, chunk_uids = ids[i : i + 400], uids[j : j + 400]
                query = STORED_SQL.format(
                    ids=",".join("?" * len(chunk_ids)), users=",".join("?" * len(chunk_uids))
                )
                for msg_id, uid in self.db.execute(query, [*chunk_ids, *chunk_uids]):
                    if (key := (bytes(msg_id), names[uid])) in wanted:
                        out.add(key)
        return out

    def relay_users(self) -> list[str]:
        """Pseudo users ("@" + broker) holding messages in transit not yet passed on."""
        return [
            u
            for (u,) in self.db.execute(
                "SELECT u.name FROM users u WHERE u.name LIKE '@%' AND EXISTS (SELECT 1 FROM"
                " entries e WHERE e.uid = u.uid AND e.seq > coalesce((SELECT c.cursor FROM"
                " cursors c WHERE c.user = u.name), 0))"
            )
        ]

    def stats(self) -> dict[str, int]:
        (n,) = self.db.execute("SELECT count(*) FROM entries").fetchone()
        (b,) = self.db.execute("SELECT count(*) FROM bodies").fetchone()
        (d,) = self.db.execute("SELECT count(*) FROM cursors").fetchone()
        return {"stored": int(n), "bodies": int(b), "devices": int(d)}

    def close(self) -> None:
        self.db.close()


def migrate(db: sqlite3.Connection) -> None:
    """Create the schema, or bring an older mailbox to it: version 1 (env and body in every
    row) and 2 (users by name in every row), in one transaction each."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return  # nothing to write (a full disk must not stop a start)
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    columns = {row[1] for row in db.execute("PRAGMA table_info(mail)")}
    if "entries" not in tables and "body" in columns:
        _migrate_1_to_2(db)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    if "entries" not in tables and "bodies" in tables:
        _migrate_2_to_3(db)
        return
    db.executescript(SCHEMA)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _run(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.execute("ALTER TABLE mail RENAME TO mail_v1")
    db.execute("DROP INDEX IF EXISTS mail_user")
    db.execute("DROP INDEX IF EXISTS mail_id")
    _run(db, SCHEMA_2)
    db.execute("INSERT INTO bodies SELECT seq, seq, id, sender, ts, env, body FROM mail_v1")
    db.execute("INSERT OR IGNORE INTO mail SELECT user, seq, id, seq, ts, '' FROM mail_v1")
    db.execute("DROP TABLE mail_v1")
    db.execute("PRAGMA user_version=2")
    db.execute("COMMIT")


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.execute("ALTER TABLE mail RENAME TO mail_v2")
    db.execute("ALTER TABLE bodies RENAME TO bodies_v2")
    db.execute("DROP INDEX IF EXISTS mail_id_user")  # (index names are the schema's)
    _run(db, SCHEMA)
    db.execute(
        "INSERT INTO users(name) SELECT user FROM mail_v2 UNION SELECT sender FROM bodies_v2"
        " ORDER BY 1"
    )
    db.execute(
        "INSERT INTO bodies SELECT b.ref, b.last, b.id, u.uid, b.ts, b.env, b.body"
        " FROM bodies_v2 b JOIN users u ON u.name = b.sender"
    )
    db.execute(
        "INSERT INTO entries SELECT u.uid, m.seq, m.id, m.ref, m.skip"
        " FROM mail_v2 m JOIN users u ON u.name = m.user"
    )
    db.execute("DROP TABLE mail_v2")
    db.execute("DROP TABLE bodies_v2")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    db.execute("COMMIT")


def connect(path: Path, durability: str) -> sqlite3.Connection:
    if not path.exists():  # 0600 from the start (SQLite gives its -wal and -shm the same)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA wal_autocheckpoint=0")  # `Writer` checkpoints on a thread of its own
    db.execute("PRAGMA journal_size_limit=67108864")  # a reset WAL shrinks back to 64 MiB
    return db


# by id: SQLite otherwise picks mail_user and reads the users' whole mailboxes (the cloud
# benchmark's 3-hop rate fell by two thirds within three rounds)
STORED_SQL = (
    "SELECT id, uid FROM entries INDEXED BY mail_id_user WHERE id IN ({ids}) AND uid IN ({users})"
)

# what every device has acknowledged once it is older than keep_s, anything past max_age_s
PRUNE_SQL = (
    "DELETE FROM entries WHERE ref IN (SELECT ref FROM bodies WHERE ts < ?) OR ("
    "ref IN (SELECT ref FROM bodies WHERE ts < ?) AND seq <= (SELECT min(c.cursor) FROM"
    " cursors c WHERE c.user = (SELECT name FROM users WHERE uid = entries.uid)))"
)

_CHUNKS = (512, 128, 32, 8, 1)  # statement sizes, so few distinct statements are cached


@functools.cache
def _insert_sql(table: str, rows: int) -> str:
    if table == "bodies":
        return "INSERT INTO bodies VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * rows)
    # a message already in that mailbox (come by another path) stays as it is, once
    values = ",".join(["(?,?,?,?,?)"] * rows)
    return f"INSERT INTO entries VALUES {values} ON CONFLICT(id, uid) DO NOTHING"


@dataclass
class Job:
    """One group commit: new rows, cursor moves (cursor, user, device), devices to register
    (user, device); `token` is handed back untouched when the commit is done."""

    rows: Sequence[Row] = ()
    cursors: Sequence[tuple[int, str, str]] = ()
    devices: Sequence[tuple[str, str]] = ()
    prune: tuple[float, float, float] | None = None  # (now, keep_s, max_age_s)
    purges: Sequence[Purge] = ()  # unsends' (message id, sender): their rows go (purge.py)

    told: Sequence[tuple[str, str, int]] = ()  # gaps a login reported: (user, device, newest)
    token: Any = None
    error: BaseException | None = None
    pruned: int = 0
    purged: int = 0  # rows the purges deleted


class Writer:
    """Commits jobs in order on its own connection and thread. Jobs that queue up while a
    commit (and its fsync) is running are merged into the next transaction: the busier the
    broker, the bigger each group commit. `done` yields finished jobs in submission order,
    and `notify()` is called after each group (the broker wakes its poll loop with it)."""

    CHECKPOINT_S = 0.5

    def __init__(self, path: Path, durability: str, notify: Callable[[], None]) -> None:
        self.db = connect(path, durability)
        retention.ensure(self.db)
        self.notify = notify
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[Job] = queue.SimpleQueue()
        # WAL checkpoints run on their own connection and thread: copying a big WAL into the
        # database (and its fsync) must not hold up the commits behind it
        self._ckpt_db = connect(path, durability)
        # set when a commit failed (a full disk, most likely) and at start (what a crash left
        # in the WAL): the checkpoint thread then truncates the WAL as soon as it can, so the
        # space it holds comes back once there is room to copy it into the database
        self.shrink_wal = threading.Event()
        self.shrink_wal.set()
        self._ckpt_stop = threading.Event()
        self._ckpt = threading.Thread(target=self._checkpoints, name="titsd-ckpt", daemon=True)
        self._ckpt.start()
        self._uids: dict[str, int] = {}  # name → uid, of users numbered (committed) before
        self._new_users: list[str] = []  # numbered in the transaction under way
        self.stats: dict[str, float] = {"commits": 0, "seconds": 0.0, "rows": 0, "max_s": 0.0}
        self._thread = threading.Thread(target=self._run, name="titsd-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        """Finish every submitted job, checkpoint, close."""
        self.jobs.put(None)
        self._thread.join()
        self._ckpt_stop.set()
        self._ckpt.join()
        self._ckpt_db.close()
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            job = self.jobs.get()
            if job is None:
                break
            group = [job]
            while len(group) < 256:
                try:
                    nxt = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            t0 = time.perf_counter()
            self._commit(group)
            dt = time.perf_counter() - t0
            st = self.stats
            st["commits"] += 1
            st["seconds"] += dt
            st["rows"] += sum(len(j.rows) for j in group)
            st["max_s"] = max(st["max_s"], dt)
            for j in group:
                self.done.put(j)
            self.notify()

    def _commit(self, group: list[Job]) -> None:
        now = int(time.time())
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for job in group:
                if job.devices:
                    db.executemany(  # `seen`: a login is a sign of life (retention.gap)
                        "INSERT INTO cursors VALUES (?,?,0,?) "
                        "ON CONFLICT(user, device) DO UPDATE SET seen=excluded.seen",
                        [(u, d, now) for u, d in job.devices],
                    )
                if job.told:
                    db.executemany(retention.TOLD_SQL, job.told)
                if job.rows:
                    self._insert(job.rows)
                if job.purges:  # after the rows: the original may be in this very commit
                    job.purged = purge_rows(db, job.purges, now)
                if job.cursors:
                    db.executemany(
                        "INSERT INTO cursors VALUES (?,?,?,?) ON CONFLICT(user, device) "
                        "DO UPDATE SET cursor=max(cursor, excluded.cursor), seen=excluded.seen",
                        [(u, d, c, now) for c, u, d in job.cursors],
                    )
                if job.prune is not None:
                    t, keep_s, max_age_s = job.prune
                    retention.count(db, int(t - max_age_s))  # what devices lose, first
                    job.pruned = db.execute(
                        PRUNE_SQL, (int(t - max_age_s), int(t - keep_s))
                    ).rowcount
                    db.execute(PRUNE_PURGES_SQL, (int(t - max_age_s),))
                    db.execute(
                        "DELETE FROM bodies WHERE NOT EXISTS (SELECT 1 FROM entries"
                        " INDEXED BY mail_id_user WHERE entries.id = bodies.id)"
                    )
            db.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - reported per job; the writer lives on
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for name in self._new_users:  # numbered in the transaction rolled back
                self._uids.pop(name, None)
            for job in group:
                job.error = exc
            self.shrink_wal.set()
        self._new_users.clear()

    def _uid(self, name: str) -> int:
        """The user's number, given on their first row (in the open transaction)."""
        db = self.db
        row = db.execute("SELECT uid FROM users WHERE name=?", (name,)).fetchone()
        if row is not None:
            uid = int(row[0])
        else:
            uid = db.execute("INSERT INTO users(name) VALUES (?)", (name,)).lastrowid or 0
            self._new_users.append(name)
        if len(self._uids) >= UID_CACHE:
            self._uids.clear()
        self._uids[name] = uid
        return uid

    def _insert(self, rows: Sequence[Row]) -> None:
        """One `bodies` row per message (consecutive rows of one id sharing env and body
        objects), one `entries` row per recipient. Many rows per statement: each statement
        releases and retakes the GIL once, where `executemany` would per row. Parameters go
        straight into flat lists (a tuple per row, then flattening, was a fifth of a
        fan-out's commit)."""
        bodies: list[Any] = []
        entries: list[Any] = []
        add_entry = entries.extend
        uids = self._uids
        env = body = None
        ref = last = 0
        head: tuple[Any, ...] = (None,)
        for seq, user, msg_id, sender, e, b, ts, skip in rows:
            if e is not env or b is not body or seq != last + 1 or msg_id != head[0]:
                if env is not None:
                    bodies.extend((ref, last, *head, env, body))
                who = uids.get(sender)
                if who is None:
                    who = self._uid(sender)
                env, body, ref, head = e, b, seq, (msg_id, who, ts)
            last = seq
            uid = uids.get(user)
            if uid is None:
                uid = self._uid(user)
            add_entry((uid, seq, msg_id, ref, skip))
        if env is not None:
            bodies.extend((ref, last, *head, env, body))
        self._insert_flat("bodies", bodies, 7)
        self._insert_flat("entries", entries, 5)

    def _insert_flat(self, table: str, params: list[Any], width: int) -> None:
        i, n = 0, len(params) // width
        while i < n:
            k = next(size for size in _CHUNKS if size <= n - i)
            self.db.execute(_insert_sql(table, k), params[i * width : (i + k) * width])
            i += k

    def _checkpoints(self) -> None:
        while not self._ckpt_stop.wait(self.CHECKPOINT_S):
            mode = "TRUNCATE" if self.shrink_wal.is_set() else "PASSIVE"
            try:
                (busy, _, _) = self._ckpt_db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            except sqlite3.Error:
                continue
            if mode == "TRUNCATE" and not busy:
                self.shrink_wal.clear()
