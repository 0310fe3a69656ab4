"""keyd's SQLite store (WAL): keys as served, their lookup rows, device certificates.

Everything a lookup needs is computed at upload time, so `op=get` is one primary-key read of
stored ASCII armor and `op=index` is one read of stored rows: no gpg call ever serves a lookup.

Tables:
    keys          fingerprint → armored and binary key, pub-row fields, uid rows, vindex text
    keyids        long key id (primary and subkeys) → fingerprint
    uids          fingerprint, user id, lower-case email, case-folded user id (for searches)
    devices       (identity, device) → certificate bytes, armored signature, created, expires,
                  proof of possession (NULL for rows stored before proofs were required)
    revocations   (identity, device) → revocation bytes, armored signature, revoked time
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .validate import ValidatedKey, pub_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    fingerprint TEXT PRIMARY KEY,
    armored     TEXT NOT NULL,
    binary      BLOB NOT NULL,
    algo        INTEGER NOT NULL,
    bits        INTEGER NOT NULL,
    created     INTEGER,
    expires     INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0,
    uid_rows    TEXT NOT NULL,
    vindex      TEXT NOT NULL,
    source      TEXT NOT NULL,
    updated     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keyids (
    keyid       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (keyid, fingerprint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uids (
    fingerprint TEXT NOT NULL,
    uid         TEXT NOT NULL,
    email       TEXT NOT NULL,
    folded      TEXT NOT NULL,
    PRIMARY KEY (fingerprint, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uids_email ON uids (email);
CREATE TABLE IF NOT EXISTS devices (
    identity    TEXT NOT NULL,
    device      TEXT NOT NULL,
    certificate BLOB NOT NULL,
    signature   TEXT NOT NULL,
    name        TEXT NOT NULL,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    published   INTEGER NOT NULL,
    proof       BLOB,
    PRIMARY KEY (identity, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revocations (
    identity    TEXT NOT NULL,
    device      TEXT NOT NULL,
    revocation  BLOB NOT NULL,
    signature   TEXT NOT NULL,
    revoked     INTEGER NOT NULL,
    PRIMARY KEY (identity, device)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class DeviceRow:
    identity: str
    device: str
    certificate: bytes
    signature: str
    name: str
    created: int
    expires: int
    proof: bytes | None
    revocation: bytes | None
    revocation_signature: str | None
    revoked_at: int | None


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Store:
    """One SQLite connection, used from the server's event loop thread only."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(devices)")}
        if "proof" not in columns:  # a store from before proofs of possession
            self.db.execute("ALTER TABLE devices ADD COLUMN proof BLOB")

    def close(self) -> None:
        self.db.close()

    # -- keys ------------------------------------------------------------------------------

    def armored(self, fingerprint: str) -> str | None:
        row = self.db.execute(
            "SELECT armored FROM keys WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return row[0] if row else None

    def binary(self, fingerprint: str) -> bytes | None:
        row = self.db.execute(
            "SELECT binary FROM keys WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return row[0] if row else None

    def by_keyid(self, keyid: str) -> list[str]:
        rows = self.db.execute(
            "SELECT fingerprint FROM keyids WHERE keyid = ? ORDER BY fingerprint LIMIT 100",
            (keyid,),
        )
        return [r[0] for r in rows]

    def by_email(self, email: str, limit: int = 100) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT fingerprint FROM uids WHERE email = ? ORDER BY fingerprint LIMIT ?",
            (email.lower(), limit),
        )
        return [r[0] for r in rows]

    def by_text(self, text: str, limit: int = 100) -> list[str]:
        """Keys with a user id containing `text` (case-insensitive)."""
        rows = self.db.execute(
            "SELECT DISTINCT fingerprint FROM uids WHERE folded LIKE ? ESCAPE '\\' "
            "ORDER BY fingerprint LIMIT ?",
            (f"%{like_escape(text.casefold())}%", limit),
        )
        return [r[0] for r in rows]

    def index_rows(self, fingerprints: list[str], now: float | None = None) -> list[str]:
        out = []
        for fp in fingerprints:
            row = self.db.execute(
                "SELECT algo, bits, created, expires, revoked, uid_rows FROM keys "
                "WHERE fingerprint = ?",
                (fp,),
            ).fetchone()
            if row:
                algo, bits, created, expires, revoked, uid_rows = row
                out.append(pub_row(fp, algo, bits, created, expires, bool(revoked), now) + uid_rows)
        return out

    def vindex(self, fingerprint: str) -> str | None:
        row = self.db.execute(
            "SELECT vindex FROM keys WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return row[0] if row else None

    def put_key(self, key: ValidatedKey, source: str) -> None:
        fp = key.fingerprint
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO keys (fingerprint, armored, binary, algo, bits, created, "
                "expires, revoked, uid_rows, vindex, source, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fp, key.armored, key.binary, key.algo, key.bits, key.created, key.expires,
                 int(key.revoked), key.uid_rows, key.vindex, source, int(time.time())),
            )  # fmt: skip
            self.db.execute("DELETE FROM keyids WHERE fingerprint = ?", (fp,))
            self.db.executemany(
                "INSERT OR IGNORE INTO keyids (keyid, fingerprint) VALUES (?, ?)",
                [(kid, fp) for kid in key.keyids],
            )
            self.db.execute("DELETE FROM uids WHERE fingerprint = ?", (fp,))
            self.db.executemany(
                "INSERT OR IGNORE INTO uids (fingerprint, uid, email, folded) VALUES (?, ?, ?, ?)",
                [(fp, u.uid, u.email, u.uid.casefold()) for u in key.uids],
            )

    def key_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM keys").fetchone()[0])

    # -- device certificates -----------------------------------------------------------------

    def put_device(
        self,
        identity: str,
        device: str,
        certificate: bytes,
        signature: str,
        name: str,
        created: int,
        expires: int,
        proof: bytes,
    ) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO devices (identity, device, certificate, signature, name, "
                "created, expires, published, proof) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (identity, device, certificate, signature, name, created, expires,
                 int(time.time()), proof),
            )  # fmt: skip

    def device_created(self, identity: str, device: str) -> int | None:
        row = self.db.execute(
            "SELECT created FROM devices WHERE identity = ? AND device = ?", (identity, device)
        ).fetchone()
        return int(row[0]) if row else None

    def device_count(self, identity: str) -> int:
        return int(
            self.db.execute(
                "SELECT count(*) FROM devices WHERE identity = ?", (identity,)
            ).fetchone()[0]
        )

    def put_revocation(
        self, identity: str, device: str, revocation: bytes, signature: str, revoked: int
    ) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR IGNORE INTO revocations (identity, device, revocation, signature, "
                "revoked) VALUES (?, ?, ?, ?, ?)",
                (identity, device, revocation, signature, revoked),
            )

    def is_revoked(self, identity: str, device: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM revocations WHERE identity = ? AND device = ?", (identity, device)
        ).fetchone()
        return row is not None

    def revocations_since(self, since: int, limit: int) -> list[tuple[str, str, bytes, str, int]]:
        """(identity, device, revocation, signature, revoked) of revocations dated `since` or
        later, oldest first (brokers watch them to end a revoked device's session)."""
        rows = self.db.execute(
            "SELECT identity, device, revocation, signature, revoked FROM revocations "
            "WHERE revoked >= ? ORDER BY revoked, identity, device LIMIT ?",
            (since, limit),
        )
        return [(str(a), str(b), bytes(c), str(d), int(e)) for a, b, c, d, e in rows]

    def revocation_count(self, identity: str) -> int:
        return int(
            self.db.execute(
                "SELECT count(*) FROM revocations WHERE identity = ?", (identity,)
            ).fetchone()[0]
        )

    def devices(self, identity: str) -> list[DeviceRow]:
        rows = self.db.execute(
            "SELECT d.identity, d.device, d.certificate, d.signature, d.name, d.created, "
            "d.expires, d.proof, r.revocation, r.signature, r.revoked FROM devices d "
            "LEFT JOIN revocations r ON r.identity = d.identity AND r.device = d.device "
            "WHERE d.identity = ? ORDER BY d.created, d.device",
            (identity,),
        )
        return [DeviceRow(*r) for r in rows]

    def stats(self) -> dict[str, int]:
        q = self.db.execute
        return {
            "keys": int(q("SELECT count(*) FROM keys").fetchone()[0]),
            "devices": int(q("SELECT count(*) FROM devices").fetchone()[0]),
            "revocations": int(q("SELECT count(*) FROM revocations").fetchone()[0]),
        }
