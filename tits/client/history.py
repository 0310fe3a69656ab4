"""The history a linking device hands a new one: its chats, session keys, group logs,
contacts and confirmations, as one archive sent in chunks under the pairing channel.

    archive = make_archive(home, "30d", workdir)   # a tar file on disk (none | 30d | all)
    for i, data in chunks(archive): ...            # CHUNK_BYTES each, read from disk
    Receiver(path, total, size, sha256)            # writes chunks where they belong, any order
    install(archive, home, me)                     # checks, then moves the files in

Memory stays bounded by the chunk size, never the history's: the archive is built on disk
(an SQLite online backup, then the rows the choice leaves out are deleted), read a chunk at a
time, and written by the receiver at each chunk's offset. The receiver applies nothing until
the whole archive matches the SHA-256 the sealed bundle named, every file in it is one it
expects, the store passes SQLite's integrity check, and every direct message in it is to or
from the account being joined (an archive that names another user's conversations is refused).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import TitsError
from ..identity import Identity

CHUNK_BYTES = 192 << 10  # inside one pairing message (`tits.pairing.MAX_BUNDLE`)
CHOICES = ("none", "30d", "all")
FILES = ("store.db", "contacts.toml", "revoked-devices.json", "keys.asc")  # all it may hold
_DAY_MS = 24 * 3600 * 1000


class HistoryError(TitsError):
    """A history archive that does not check: nothing from it was applied."""


def make_archive(home: Path, choice: str, workdir: Path, public_keys: str = "") -> Path:
    """A tar of the store (as `choice` leaves it), the contacts and the public keys of
    the people in them, in `workdir`."""
    if choice not in CHOICES:
        raise HistoryError(f"--history takes none, 30d or all, not {choice!r}")
    stage = workdir / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    src_db = home / "store.db"
    if src_db.exists():
        dst = stage / "store.db"
        src = sqlite3.connect(src_db)
        out = sqlite3.connect(dst)
        try:
            src.backup(out)  # a consistent copy while the client may be writing
            out.execute("PRAGMA journal_mode=DELETE")
            # this device's own business: what it has yet to send, deliveries it holds
            out.execute("DELETE FROM outbox")
            out.execute("DELETE FROM held")
            if choice == "none":
                out.execute("DELETE FROM messages")
                out.execute("DELETE FROM receipts")
            elif choice == "30d":
                cut = int(time.time() * 1000) - 30 * _DAY_MS
                out.execute("DELETE FROM messages WHERE ts < ?", (cut,))
            out.commit()
            out.execute("VACUUM")
        finally:
            out.close()
            src.close()
    for name in FILES[1:3]:
        if (home / name).exists():
            shutil.copyfile(home / name, stage / name)
    if public_keys:
        (stage / "keys.asc").write_text(public_keys)
    archive = workdir / "history.tar"
    with tarfile.open(archive, "w") as tar:
        for name in FILES:
            if (stage / name).exists():
                tar.add(stage / name, arcname=name, recursive=False)
    shutil.rmtree(stage, ignore_errors=True)
    return archive


def digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.digest()


def chunk_count(size: int) -> int:
    return max(1, -(-size // CHUNK_BYTES))


def read_chunk(path: Path, index: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(index * CHUNK_BYTES)
        return fh.read(CHUNK_BYTES)


def chunks(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        i = 0
        while True:
            data = fh.read(CHUNK_BYTES)
            if not data and i:
                return
            yield i, data
            i += 1
            if len(data) < CHUNK_BYTES:
                return


class Receiver:
    """Chunks into a file at their offsets, in any order, each once; `missing` says what
    to ask for again (a resumed transfer asks only for those)."""

    def __init__(
        self, path: Path, total: int, size: int, sha256: bytes,
        hashes: bytes = b"", have: set[int] | None = None,
    ) -> None:  # fmt: skip
        """`hashes`: each chunk's SHA-256 (from the sealed bundle), checked as it comes;
        `have`: chunks already in the file (checked against them: `resume.Partial`)."""
        if total != chunk_count(size):
            raise HistoryError("the history's size and chunk count disagree")
        if hashes and len(hashes) != 32 * total:
            raise HistoryError("the history's chunk list and chunk count disagree")
        self.path, self.total, self.size, self.sha256 = path, total, size, sha256
        self.hashes = hashes
        self.have: set[int] = set(have or ())
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, size)
        os.close(fd)

    def add(self, index: int, data: bytes) -> bool:
        """False for a chunk already had; raises for one that cannot be ours."""
        if not 0 <= index < self.total:
            raise HistoryError(f"history chunk {index} of {self.total}")
        want = min(CHUNK_BYTES, self.size - index * CHUNK_BYTES)
        if len(data) != want:
            raise HistoryError(f"history chunk {index} is {len(data)} bytes, not {want}")
        if index in self.have:
            return False
        if (
            self.hashes
            and hashlib.sha256(data).digest() != self.hashes[32 * index : 32 * index + 32]
        ):
            raise HistoryError(f"history chunk {index} is not the one the bundle named")
        with self.path.open("r+b") as fh:
            fh.seek(index * CHUNK_BYTES)
            fh.write(data)
        self.have.add(index)
        return True

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.total) if i not in self.have]

    @property
    def complete(self) -> bool:
        return len(self.have) == self.total

    def finish(self) -> Path:
        if not self.complete:
            raise HistoryError(f"the history is truncated ({len(self.have)} of {self.total})")
        if digest(self.path) != self.sha256:
            raise HistoryError("the history does not match what the linking device sealed")
        return self.path


def install(archive: Path, home: Path, me: str, identity: Identity | None = None) -> int:
    """Check the archive, then move its files into the (new) home and the public keys into
    `identity` (third-party signatures dropped, secret keys refused); messages taken in."""
    stage = archive.parent / "unpacked"
    stage.mkdir(exist_ok=True)
    try:
        with tarfile.open(archive, "r") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            if len(set(names)) != len(names) or not set(names) <= set(FILES):
                raise HistoryError("the history holds files it should not")
            if not all(m.isfile() for m in members):
                raise HistoryError("the history holds something that is not a file")
            tar.extractall(stage, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise HistoryError(f"the history archive is unusable ({exc})") from None
    count = 0
    db_path = stage / "store.db"
    if db_path.exists():
        count = _check_store(db_path, me)
        _rehome_media(db_path, home)
    keys = stage / "keys.asc"
    if keys.exists():
        text = keys.read_text("utf-8", "replace")
        keys.unlink()
        if identity is not None and text.strip():
            try:
                identity.import_public(text)
            except TitsError as exc:
                raise HistoryError(f"the history's public keys: {exc.message}") from None
    for name in FILES:
        if (stage / name).exists():
            dest = home / name
            if dest.exists() and name == "store.db":
                raise HistoryError("this home already has a store; history goes to a new one")
            os.replace(stage / name, dest)
            os.chmod(dest, 0o600)
    shutil.rmtree(stage, ignore_errors=True)
    return count


def _rehome_media(path: Path, home: Path) -> None:
    """Media is fetched on demand, not archived: a picture's row named where the linking
    device kept it; it now names where this home will (HOME/media/<sha256 hex>)."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(
                "UPDATE messages SET file = ? || substr(file, -64) "
                "WHERE file IS NOT NULL AND length(file) >= 64",
                (str(home / "media") + os.sep,),
            )
    finally:
        db.close()


def _check_store(path: Path, me: str) -> int:
    try:
        db = sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise HistoryError(f"the history's store does not open ({exc})") from None
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()
        if not ok or ok[0] != "ok":
            raise HistoryError("the history's store is damaged")
        foreign = db.execute(
            "SELECT count(*) FROM messages WHERE grp IS NULL AND sender != ? "
            "AND instr(recipients, ?) = 0",
            (me, me),
        ).fetchone()[0]
        if foreign:
            raise HistoryError(
                f"the history names {foreign} conversations of another user: refused"
            )
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    except sqlite3.Error as exc:
        raise HistoryError(f"the history's store is unusable ({exc})") from None
    finally:
        db.close()
