"""A history transfer that resumes across pairings: what each end keeps between two of them.

A transfer can break off anywhere: the connection lost, `device join` killed, the laptop shut.
Running `device link` and `device join` again (a fresh code, a new pairing) then moves only
the chunks the new device does not already hold whole:

- The **linking device** keeps the archive it made (`Snapshots`, HOME/history-out/<sha256>.tar,
  0600, for `KEEP_S`) and, asked for it by its SHA-256 in the new pairing's sealed
  confirmation, sends that same archive again, less the chunks the new device says it holds.
  Only an archive of our own making is ever named this way (a file name from the hash's hex,
  in our own folder), and only for the same `--history` choice.
- The **new device** keeps what arrived (`Partial`, NEW/.history-partial/: the archive written
  at each chunk's offset, and `resume.json` naming the archive's SHA-256, size and the SHA-256
  of each chunk, as the earlier pairing's sealed bundle gave them). Chunks are content
  addressed: at the next join a chunk counts as held only if its bytes hash to what the *new*
  sealed bundle names for it, and the whole archive must still match the bundle's SHA-256
  before anything is installed. Nothing on disk is trusted: `resume.json` only says which
  chunks to offer; the new pairing's bundle decides what they must be.

A snapshot is kept an hour at most: past that a new one is made (mail newer than an old
snapshot reaches the new device from the brokers' mailbox, which keeps delivered mail
`keep_s` for devices still to come — longer than an hour on any sane broker).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .history import CHUNK_BYTES, Receiver, chunk_count, digest

KEEP_S = 3600.0  # a snapshot older than this is made again (and removed)
MAX_HASHED = 4096  # chunks whose hashes the bundle can carry (768 MiB): beyond, no resume
SNAPSHOTS = "history-out"
PARTIAL = ".history-partial"


def chunk_hashes(path: Path) -> bytes:
    """The SHA-256 of each chunk, concatenated; b"" for an archive too big to list them."""
    size = path.stat().st_size
    if chunk_count(size) > MAX_HASHED:
        return b""
    out = bytearray()
    with path.open("rb") as fh:
        for _ in range(chunk_count(size)):
            out += hashlib.sha256(fh.read(CHUNK_BYTES)).digest()
    return bytes(out)


def ranges(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """[0, 1, 2, 5] → [(0, 3), (5, 6)]: what a confirmation says it holds, compactly."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def expand(spans: Iterable[tuple[int, int]], total: int) -> set[int]:
    """The indexes in `spans` that exist in an archive of `total` chunks."""
    held: set[int] = set()
    for a, b in spans:
        held.update(range(max(0, a), min(b, total)))
    return held


def held(path: Path, hashes: bytes, size: int) -> set[int]:
    """The chunks of the file at `path` whose bytes hash to their entry in `hashes`."""
    total = chunk_count(size)
    if len(hashes) != 32 * total or not path.exists() or path.stat().st_size != size:
        return set()
    good = set()
    with path.open("rb") as fh:
        for i in range(total):
            data = fh.read(CHUNK_BYTES)
            if hashlib.sha256(data).digest() == hashes[32 * i : 32 * i + 32]:
                good.add(i)
    return good


class Snapshots:
    """The linking device's archives, by SHA-256, for a transfer to resume."""

    def __init__(self, home: Path) -> None:
        self.dir = home / SNAPSHOTS

    def archive_for(self, sha: bytes, choice: str, make: Callable[[], Path]) -> tuple[Path, bool]:
        """The snapshot `sha` names, if we keep it for `choice`; else a new one (`make()`,
        then kept). True when it is the one asked for."""
        self.sweep()
        if len(sha) == 32:
            path = self.dir / f"{sha.hex()}.tar"
            meta = self._meta(sha)
            if path.exists() and meta.get("choice") == choice:
                return path, True
        return self.keep(make(), choice), False

    def workdir(self) -> Path:
        """Where a link builds its archive: on the snapshots' file system (the caller
        removes it; `sweep` removes one a killed process left)."""
        self.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="making-", dir=self.dir))

    def keep(self, archive: Path, choice: str) -> Path:
        self.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        sha = digest(archive)
        path = self.dir / f"{sha.hex()}.tar"
        meta = self.dir / f"{sha.hex()}.json"  # first: `sweep` removes a tar without one
        meta.write_text(json.dumps({"choice": choice, "made": time.time()}))
        os.chmod(meta, 0o600)
        shutil.move(archive, path)  # a rename when on one file system
        os.chmod(path, 0o600)
        return path

    def drop(self, archive: Path) -> None:
        archive.unlink(missing_ok=True)
        archive.with_suffix(".json").unlink(missing_ok=True)

    def sweep(self, now: float | None = None) -> None:
        """Remove what is older than KEEP_S (and what lost its other half)."""
        if not self.dir.exists():
            return
        now = time.time() if now is None else now
        for meta in self.dir.glob("*.json"):
            try:
                made = float(json.loads(meta.read_text()).get("made", 0))
            except (OSError, ValueError, AttributeError):
                made = 0.0
            if now - made > KEEP_S:
                self.drop(meta.with_suffix(".tar"))
        for tar in self.dir.glob("*.tar"):
            if not tar.with_suffix(".json").exists():
                tar.unlink(missing_ok=True)
        for work in self.dir.glob("making-*"):
            try:
                stale = now - work.stat().st_mtime > KEEP_S
            except OSError:
                continue
            if stale:
                shutil.rmtree(work, ignore_errors=True)

    def _meta(self, sha: bytes) -> dict[str, object]:
        try:
            meta = json.loads((self.dir / f"{sha.hex()}.json").read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(meta, dict) or time.time() - float(meta.get("made", 0)) > KEEP_S:
            return {}
        return meta


class Partial:
    """The new device's side: a transfer's chunks kept across pairings (see the module)."""

    def __init__(self, home: Path) -> None:
        self.dir = home / PARTIAL
        self.archive = self.dir / "history.tar"
        self.manifest = self.dir / "resume.json"

    def offer(self, user: str) -> tuple[bytes, list[tuple[int, int]]]:
        """(archive SHA-256, chunks held whole) to name in the confirmation; (b"", []) when
        nothing usable is kept (or it was for another account)."""
        m = self._read()
        if m is None or m.get("user") != user:
            return b"", []
        try:
            sha = bytes.fromhex(str(m["sha256"]))
            hashes = bytes.fromhex(str(m["chunks"]))
            size = int(str(m["size"]))
        except (KeyError, ValueError, TypeError):
            return b"", []
        got = held(self.archive, hashes, size)
        return (sha, ranges(got)) if got and len(sha) == 32 else (b"", [])

    def receiver(
        self, user: str, total: int, size: int, sha: bytes, hashes: bytes
    ) -> tuple[Receiver, int]:
        """Where this bundle's chunks go, and how many of them are already here (checked
        against the bundle's own chunk hashes). Anything kept for another archive goes."""
        m = self._read() or {}
        same = (
            m.get("user") == user and m.get("sha256") == sha.hex()
            and m.get("size") == size and len(hashes) == 32 * total
        )  # fmt: skip
        if not same:
            self.clear()
        self.dir.parent.mkdir(parents=True, mode=0o700, exist_ok=True)  # the new home
        self.dir.mkdir(mode=0o700, exist_ok=True)
        had = held(self.archive, hashes, size) if same else set()
        if hashes:  # only a bundle that lists its chunks can be resumed from
            tmp = self.manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps({"user": user, "sha256": sha.hex(), "size": size,
                                       "chunks": hashes.hex()}))  # fmt: skip
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.manifest)
        got = Receiver(self.archive, total, size, sha, hashes=hashes, have=had)
        return got, len(had)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _read(self) -> dict[str, object] | None:
        try:
            m = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None
        return m if isinstance(m, dict) else None
