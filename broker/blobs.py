"""The broker's media store: each chunk once, however many files, messages and users name it.

    DATA/blobs/ab/ab12…ef   one file per chunk, named by its SHA-256 (written to a temporary
                            name, then renamed: a kill -9 leaves no half chunk under its name)
    DATA/blobs.db           manifests (file hash → size, chunk list, who offered it, when last
                            offered or fetched), the chunks present, and who offered what

A file is offered (`offer`, with its manifest) before any chunk of it is taken; a chunk is
taken only if its bytes hash to what the manifest names at that index (`put`). Quotas count
the sizes of the distinct files a user offered within the retention period; `gc` forgets
manifests nobody offered or fetched for that long and deletes the chunks no manifest left
names (a chunk fetched from the cloud for a receiver counts as used when it was last served).

SQLite runs with synchronous=NORMAL (WAL): a crash loses at most the last rows, never the
database, and a chunk whose row was lost is simply asked for again.

Safe to call from several threads (the broker's media threads): the database and the caches
are behind one lock, while the slow parts (hashing a chunk, writing or reading its file)
run outside it. A chunk this store wrote or checked lately is served without hashing it
again as long as its file is the one it wrote (same inode, size and mtime: a file changed
since, by rot that a write shows or by hand, is hashed again); any other read is hashed.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tits import wire
from tits.errors import MediaError, WireError
from tits.media.manifest import check, chunk_length

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    sha BLOB PRIMARY KEY, size INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
    chunks BLOB NOT NULL, created REAL NOT NULL, touched REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners (
    user TEXT NOT NULL, sha BLOB NOT NULL, size INTEGER NOT NULL, touched REAL NOT NULL,
    PRIMARY KEY (user, sha)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    hash BLOB PRIMARY KEY, size INTEGER NOT NULL, used REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (
    hash BLOB NOT NULL, sha BLOB NOT NULL, PRIMARY KEY (hash, sha)
) WITHOUT ROWID;
"""


FRESH_S = 600.0  # a chunk checked this recently, its file unchanged, is not hashed again
FRESH_MAX = 8192  # chunks remembered as checked (about 100 bytes each)
_Stamp = tuple[int, int, int, float]  # (inode, size, mtime ns, when checked)


@dataclass(frozen=True)
class MediaLimits:
    """The broker config's [media] settings."""

    retention_s: float = 30 * 24 * 3600.0  # a file nobody offered or fetched this long goes
    quota_bytes: int = 2 << 30  # per user: the distinct files they offered, within retention
    max_size: int = 2 << 30  # one file
    max_chunks: int = wire.MAX_CHUNKS
    rate_bytes: float = 0.0  # chunk bytes per second per user, up and down (0: no limit)


@dataclass(frozen=True)
class Offered:
    missing: list[int]
    new: bool  # the first offer of this file here
    lacking: frozenset[bytes] = frozenset()  # the hashes of the chunks still missing


class BlobStore:
    def __init__(self, data: Path, limits: MediaLimits | None = None) -> None:
        self.limits = limits or MediaLimits()
        self.root = data / "blobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(data / "blobs.db", isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._manifests: dict[bytes, wire.Manifest] = {}  # small cache: chunk lists by file
        self._lacking: dict[bytes, set[bytes]] = {}  # file → chunk hashes not yet here
        self._folders: set[str] = set()  # blobs/<xx> folders known to exist
        self._fresh: OrderedDict[bytes, _Stamp] = OrderedDict()  # chunks checked lately
        self._lock = threading.RLock()  # the database and the dicts above

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def path_of(self, chunk: bytes) -> Path:
        h = chunk.hex()
        return self.root / h[:2] / h

    # -- uploads -------------------------------------------------------------------------------

    def offer(self, user: str, body: bytes, sha: bytes, now: float | None = None) -> Offered:
        """Register a file `user` will upload (its manifest encoded in `body`); the chunk
        indexes still missing here. MediaError with a `wire.MediaErrorCode` otherwise."""
        now = time.time() if now is None else now
        try:
            m: wire.Manifest = wire.MANIFEST_DECODER.decode(body)
        except WireError as exc:
            raise MediaError(exc.message, code="bad-manifest") from None
        if m.sha256 != sha:
            raise MediaError("the manifest names another file", code="bad-manifest")
        lim = self.limits
        if len(m.chunks) > lim.max_chunks:
            raise MediaError(
                f"{len(m.chunks)} chunks is over the {lim.max_chunks} limit", code="too-many-chunks"
            )
        check(m, max_size=lim.max_size)
        with self._lock:
            return self._record_offer(user, m, sha, now)

    def _record_offer(self, user: str, m: wire.Manifest, sha: bytes, now: float) -> Offered:
        lim, db = self.limits, self.db
        owned = db.execute("SELECT 1 FROM owners WHERE user=? AND sha=?", (user, sha)).fetchone()
        if owned is None and self.usage(user, now) + m.size > lim.quota_bytes:
            raise MediaError(
                f"your media here would pass your quota of {lim.quota_bytes} bytes", code="quota"
            )
        row = db.execute("SELECT 1 FROM manifests WHERE sha=?", (sha,)).fetchone()
        db.execute("BEGIN")
        try:
            if row is None:
                db.execute(
                    "INSERT INTO manifests VALUES (?,?,?,?,?,?)",
                    (sha, m.size, m.chunk_size, b"".join(m.chunks), now, now),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO refs VALUES (?,?)", [(c, sha) for c in set(m.chunks)]
                )
            else:
                db.execute("UPDATE manifests SET touched=? WHERE sha=?", (now, sha))
            db.execute(
                "INSERT INTO owners VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET touched=?",
                (user, sha, m.size, now, now),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._manifests[sha] = m
        missing = self.missing(m)
        lacking = self._lacking[sha] = {m.chunks[i] for i in missing}
        return Offered(missing, new=row is None, lacking=frozenset(lacking))

    def missing(self, m: wire.Manifest) -> list[int]:
        with self._lock:
            present = self._present(set(m.chunks))
        return [i for i, c in enumerate(m.chunks) if c not in present]

    def _present(self, hashes: set[bytes]) -> set[bytes]:
        out: set[bytes] = set()
        items = list(hashes)
        for i in range(0, len(items), 500):
            part = items[i : i + 500]
            q = f"SELECT hash FROM chunks WHERE hash IN ({','.join('?' * len(part))})"
            out.update(bytes(r[0]) for r in self.db.execute(q, part))
        return out

    def manifest(self, sha: bytes) -> wire.Manifest | None:
        m = self._manifests.get(sha)
        if m is not None:
            return m
        with self._lock:
            return self._load_manifest(sha)

    def chunk_of(self, sha: bytes, index: int) -> bytes | None:
        """Chunk `index` of an offered file, if its manifest is at hand (no disk read)."""
        m = self._manifests.get(sha)
        return m.chunks[index] if m is not None and 0 <= index < len(m.chunks) else None

    def _load_manifest(self, sha: bytes) -> wire.Manifest | None:
        row = self.db.execute(
            "SELECT size, chunk_size, chunks FROM manifests WHERE sha=?", (sha,)
        ).fetchone()
        if row is None:
            return None
        raw = bytes(row[2])
        chunks = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        m = wire.Manifest(sha256=sha, size=int(row[0]), chunk_size=int(row[1]), chunks=chunks)
        if len(self._manifests) > 1024:
            self._manifests.clear()
            self._lacking.clear()
        self._manifests[sha] = m
        return m

    def put(self, sha: bytes, index: int, data: bytes | memoryview) -> bool:
        """Store chunk `index` of the offered file `sha`; True when the file is complete."""
        m = self.manifest(sha)
        if m is None:
            raise MediaError("no manifest offered for this file", code="unknown-manifest")
        if index >= len(m.chunks):
            raise MediaError(f"chunk {index} is not in this file", code="bad-chunk")
        if len(data) != chunk_length(m, index):
            raise MediaError(f"chunk {index} has the wrong length", code="bad-chunk")
        chunk = m.chunks[index]
        if hashlib.sha256(data).digest() != chunk:
            raise MediaError(f"chunk {index} does not match its hash", code="bad-chunk")
        with self._lock:
            lacking = self._lacking.get(sha)
            if lacking is None:
                lacking = self._lacking[sha] = {m.chunks[i] for i in self.missing(m)}
            needed = chunk in lacking  # else: here already (a resend, or another file's chunk)
        if needed:
            self._write(chunk, data, time.time())  # a resend at the same time writes it too
        with self._lock:
            lacking.discard(chunk)
            return not lacking

    def store(self, chunk: bytes, data: bytes | memoryview, now: float | None = None) -> None:
        """Keep a chunk whose hash the caller checked (an upload, or one from the cloud)."""
        now = time.time() if now is None else now
        if self.has(chunk):
            self.touch(chunk, now)
            return
        self._write(chunk, data, now)

    def _write(self, chunk: bytes, data: bytes | memoryview, now: float) -> None:
        path = self.path_of(chunk)
        folder = path.parent
        if folder.name not in self._folders:
            folder.mkdir(exist_ok=True)
            self._folders.add(folder.name)
        tmp = folder / f".{path.name}.{threading.get_ident()}.tmp"  # one per writing thread
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                st = os.fstat(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise MediaError(
                f"the broker could not store it: {exc.strerror}", code="storage"
            ) from None
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO chunks VALUES (?,?,?)", (chunk, len(data), now))
            self._checked(chunk, st)

    # -- downloads -----------------------------------------------------------------------------

    def has(self, chunk: bytes) -> bool:
        with self._lock:
            row = self.db.execute("SELECT 1 FROM chunks WHERE hash=?", (chunk,)).fetchone()
        return row is not None

    def read(self, chunk: bytes) -> bytes | None:
        """A chunk's bytes, checked again (a disk can rot) unless this store wrote or checked
        that very file lately; None when absent or rotten."""
        path = self.path_of(chunk)
        try:
            with path.open("rb", buffering=0) as fh:
                st = os.fstat(fh.fileno())
                data = fh.read()
        except OSError:
            return None
        if self._is_fresh(chunk, st) and len(data) == st.st_size:
            return data
        if hashlib.sha256(data).digest() != chunk:
            with self._lock:
                self.db.execute("DELETE FROM chunks WHERE hash=?", (chunk,))
                self._fresh.pop(chunk, None)
            path.unlink(missing_ok=True)
            return None
        with self._lock:
            self._checked(chunk, st)
        return data

    def _checked(self, chunk: bytes, st: os.stat_result) -> None:
        """Remember that this file of `chunk` hashed right just now (under the lock)."""
        fresh = self._fresh
        fresh[chunk] = (st.st_ino, st.st_size, st.st_mtime_ns, time.monotonic())
        fresh.move_to_end(chunk)
        while len(fresh) > FRESH_MAX:
            fresh.popitem(last=False)

    def _is_fresh(self, chunk: bytes, st: os.stat_result) -> bool:
        stamp = self._fresh.get(chunk)
        return (
            stamp is not None
            and stamp[:3] == (st.st_ino, st.st_size, st.st_mtime_ns)
            and time.monotonic() - stamp[3] < FRESH_S
        )

    def touch(self, chunk: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self.db.execute("UPDATE chunks SET used=? WHERE hash=?", (now, chunk))

    # -- accounting ----------------------------------------------------------------------------

    def usage(self, user: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            row = self.db.execute(
                "SELECT coalesce(sum(size), 0) FROM owners WHERE user=? AND touched>=?",
                (user, now - self.limits.retention_s),
            ).fetchone()
        return int(row[0])

    def gc(self, now: float | None = None) -> tuple[int, int]:
        """Forget what retention let go; delete the chunks nothing names. (files, chunks)"""
        now = time.time() if now is None else now
        cutoff = now - self.limits.retention_s
        with self._lock:  # the files too: a chunk written anew meanwhile is not lost
            old, gone = self._forget(cutoff)
            for h in gone:
                self.path_of(h).unlink(missing_ok=True)
        return len(old), len(gone)

    def _forget(self, cutoff: float) -> tuple[list[bytes], list[bytes]]:
        db = self.db
        db.execute("BEGIN")
        try:
            old = [bytes(r[0]) for r in db.execute("SELECT sha FROM manifests WHERE touched<?",
                                                    (cutoff,))]  # fmt: skip
            db.executemany("DELETE FROM manifests WHERE sha=?", [(s,) for s in old])
            db.executemany("DELETE FROM refs WHERE sha=?", [(s,) for s in old])
            db.execute("DELETE FROM owners WHERE touched<?", (cutoff,))
            gone = [
                bytes(r[0])
                for r in db.execute(
                    "SELECT hash FROM chunks WHERE used<? AND hash NOT IN (SELECT hash FROM refs)",
                    (cutoff,),
                )
            ]
            db.executemany("DELETE FROM chunks WHERE hash=?", [(h,) for h in gone])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for s in old:
            self._manifests.pop(s, None)
            self._lacking.pop(s, None)
        for h in gone:
            self._fresh.pop(h, None)
        return old, gone

    def counts(self) -> dict[str, int]:
        with self._lock:
            return self._counts()

    def _counts(self) -> dict[str, int]:
        db = self.db
        return {
            "files": int(db.execute("SELECT count(*) FROM manifests").fetchone()[0]),
            "chunks": int(db.execute("SELECT count(*) FROM chunks").fetchone()[0]),
            "bytes": int(db.execute("SELECT coalesce(sum(size),0) FROM chunks").fetchone()[0]),
        }
