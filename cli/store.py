"""The client's local store, HOME/store.db (SQLite, 0600):

    seen(id)                          message ids already shown: a redelivery is dropped
    messages(id, sender, ..., text)   what was shown or sent, for history and `chat`
    keys(conversation, epoch, ...)    session keys (JSON as `SessionKey.to_json`), ours and
                                      the ones members sent us
    announced(conversation, epoch, member)  members our key has reached (acknowledged)
    certs(identity, device, cert, sig)      device certificates checked with GnuPG

A delivery is written here, in one transaction, before it is acknowledged to the broker: a
crash in between only means it is delivered again and then dropped as seen.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from tits.session import SessionKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (id BLOB PRIMARY KEY, ts INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id BLOB PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    grp BLOB,
    kind TEXT NOT NULL,
    text TEXT,
    verified INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    outgoing INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts);
CREATE TABLE IF NOT EXISTS keys (
    conversation BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    sender TEXT NOT NULL,
    key BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (conversation, epoch, sender)
);
CREATE TABLE IF NOT EXISTS announced (
    conversation BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (conversation, epoch, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS certs (
    identity TEXT NOT NULL,
    device TEXT NOT NULL,
    cert BLOB NOT NULL,
    sig TEXT NOT NULL,
    PRIMARY KEY (identity, device)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Shown:
    id: bytes
    sender: str
    recipients: list[str]
    group: bytes | None
    kind: str
    text: str | None
    verified: bool
    ts: int
    outgoing: bool = False


class LocalStore:
    def __init__(self, home: Path) -> None:
        path = home / "store.db"
        new = not path.exists()
        home.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        if new:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- seen and shown -----------------------------------------------------------------------

    def seen(self, msg_id: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM seen WHERE id=?", (msg_id,)).fetchone() is not None

    def record(self, items: list[Shown], seen_only: list[bytes] = ()) -> None:  # type: ignore[assignment]
        """Mark ids seen and keep what was shown, in one transaction."""
        now = int(time.time())
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO seen VALUES (?,?)",
                [(m.id, now) for m in items] + [(i, now) for i in seen_only],
            )
            db.executemany(
                "INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        m.id,
                        m.sender,
                        ",".join(m.recipients),
                        m.group,
                        m.kind,
                        m.text,
                        int(m.verified),
                        m.ts,
                        int(m.outgoing),
                    )
                    for m in items
                ],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def history(self, limit: int = 50, peer: str | None = None) -> list[Shown]:
        q = "SELECT id, sender, recipients, grp, kind, text, verified, ts, outgoing FROM messages"
        args: tuple[object, ...] = ()
        if peer:
            q += " WHERE sender=? OR recipients LIKE ?"
            args = (peer, f"%{peer}%")
        q += " ORDER BY ts DESC LIMIT ?"
        rows = self.db.execute(q, (*args, limit)).fetchall()
        return [
            Shown(
                bytes(r[0]),
                r[1],
                r[2].split(",") if r[2] else [],
                bytes(r[3]) if r[3] is not None else None,
                r[4],
                r[5],
                bool(r[6]),
                int(r[7]),
                bool(r[8]),
            )
            for r in reversed(rows)
        ]

    # -- session keys -------------------------------------------------------------------------

    def put_key(self, key: SessionKey, sender: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO keys VALUES (?,?,?,?,?)",
            (key.conversation, key.epoch, sender, key.to_json(), time.time()),
        )

    def key(self, conversation: bytes, epoch: int, sender: str) -> SessionKey | None:
        row = self.db.execute(
            "SELECT key FROM keys WHERE conversation=? AND epoch=? AND sender=?",
            (conversation, epoch, sender),
        ).fetchone()
        return SessionKey.from_json(row[0]) if row else None

    def sending_key(self, conversation: bytes, me: str) -> SessionKey | None:
        """Our newest usable key for a conversation."""
        for (data,) in self.db.execute(
            "SELECT key FROM keys WHERE conversation=? AND sender=? ORDER BY created DESC",
            (conversation, me),
        ):
            key = SessionKey.from_json(data)
            if not key.expired():
                return key
        return None

    def announced(self, conversation: bytes, epoch: int) -> set[str]:
        return {
            r[0]
            for r in self.db.execute(
                "SELECT member FROM announced WHERE conversation=? AND epoch=?",
                (conversation, epoch),
            )
        }

    def mark_announced(self, conversation: bytes, epoch: int, members: list[str]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO announced VALUES (?,?,?)",
            [(conversation, epoch, m) for m in members],
        )

    # -- device certificates ------------------------------------------------------------------

    def put_cert(self, identity: str, device: str, cert: bytes, sig: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO certs VALUES (?,?,?,?)", (identity, device, cert, sig)
        )

    def cert(self, identity: str, device: str) -> tuple[bytes, str] | None:
        row = self.db.execute(
            "SELECT cert, sig FROM certs WHERE identity=? AND device=?", (identity, device)
        ).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    def device_owner(self, device: str) -> str | None:
        row = self.db.execute("SELECT identity FROM certs WHERE device=?", (device,)).fetchone()
        return row[0] if row else None
