"""A receiver's file under construction: HOME/media/.partial/<sha256>.part, each chunk
checked against the signed manifest before it is written at its offset, the chunks done
remembered beside it (so a broken download resumes), the whole file's SHA-256 checked
before it is moved to HOME/media/<sha256>. A broker that swaps a chunk cannot make a
receiver keep or show the wrong bytes: they never reach the file.

The whole file's hash is taken as the chunks come, in order (a chunk that came early is
read back from the file when the ones before it are in), so `finish` does not read the
file again; the part file and the list of chunks done stay open while it is built."""

from __future__ import annotations

import hashlib
import os
import weakref
from pathlib import Path

from tits import wire
from tits.errors import MediaError

from .manifest import chunk_length


class Assembly:
    def __init__(self, folder: Path, manifest: wire.Manifest) -> None:
        self.m = manifest
        self.hex = manifest.sha256.hex()
        self.final = folder / self.hex
        partial = folder / ".partial"
        partial.mkdir(parents=True, exist_ok=True)
        self.part = partial / f"{self.hex}.part"
        self.done_path = partial / f"{self.hex}.done"
        self.done: set[int] = set()
        self._whole = hashlib.sha256()
        self._hashed = 0  # chunks 0.._hashed-1 are in `_whole`
        # [the part file (read and written), the chunks done (appended to)]; whatever is
        # still open when the assembly is dropped unclosed is closed then
        self._fds: list[int | None] = [None, None]
        weakref.finalize(self, _close_fds, self._fds)
        if self.final.exists():
            self.done = set(range(len(manifest.chunks)))
            return
        if self.part.exists() and self.done_path.exists():
            raw = self.done_path.read_bytes()
            n = len(manifest.chunks)
            self.done = {i for i in (int.from_bytes(raw[j : j + 4], "big")
                                     for j in range(0, len(raw) - 3, 4)) if i < n}  # fmt: skip
        else:
            self.done_path.write_bytes(b"")
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, manifest.size)
        except BaseException:
            os.close(fd)
            raise
        self._fds[0] = fd

    @property
    def complete(self) -> bool:
        return self.final.exists()

    def missing(self) -> list[int]:
        return [i for i in range(len(self.m.chunks)) if i not in self.done]

    def put(self, index: int, data: bytes | memoryview) -> None:
        """Write chunk `index` if its bytes are the ones the manifest names."""
        if not 0 <= index < len(self.m.chunks):
            raise MediaError(f"chunk {index} is not in this file", code="bad-chunk")
        if len(data) != chunk_length(self.m, index):
            raise MediaError(f"chunk {index} has the wrong length", code="bad-chunk")
        if hashlib.sha256(data).digest() != self.m.chunks[index]:
            raise MediaError(f"chunk {index} does not match its hash", code="bad-chunk")
        if index in self.done:
            return
        os.pwrite(self._part_fd(), data, index * self.m.chunk_size)
        done_fd = self._fds[1]
        if done_fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            done_fd = self._fds[1] = os.open(self.done_path, flags, 0o600)
        os.write(done_fd, index.to_bytes(4, "big"))
        self.done.add(index)
        self._fold(index, data)

    def _part_fd(self) -> int:
        fd = self._fds[0]
        if fd is None:
            fd = self._fds[0] = os.open(self.part, os.O_RDWR)
        return fd

    def _fold(self, index: int = -1, data: bytes | memoryview = b"") -> None:
        """Take the chunks done, in order, into the whole file's hash: chunk `index` from
        `data`, the others read back from the part file."""
        n = len(self.m.chunks)
        while self._hashed < n and self._hashed in self.done:
            i = self._hashed
            if i == index:
                self._whole.update(data)
            else:
                length = chunk_length(self.m, i)
                block = os.pread(self._part_fd(), length, i * self.m.chunk_size)
                if len(block) != length:
                    raise MediaError(f"chunk {i} is short in the partial file", code="storage")
                self._whole.update(block)
            self._hashed += 1

    def close(self) -> None:
        _close_fds(self._fds)

    def finish(self) -> Path:
        """Check the whole file and move it into place; MediaError (and start over) if the
        chunks, though each matched, do not make the signed file."""
        if self.final.exists():
            self.close()
            return self.final
        if self.missing():
            raise MediaError(f"{len(self.missing())} chunks still missing", code="not-found")
        self._fold()
        self.close()
        if self._whole.digest() != self.m.sha256:
            self.discard()
            raise MediaError("the chunks do not make the signed file", code="bad-chunk")
        os.chmod(self.part, 0o600)
        self.part.replace(self.final)
        self.done_path.unlink(missing_ok=True)
        return self.final

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)
        self.done_path.unlink(missing_ok=True)
        self.done.clear()
        self._whole, self._hashed = hashlib.sha256(), 0


def _close_fds(fds: list[int | None]) -> None:
    for i, fd in enumerate(fds):
        if fd is not None:
            fds[i] = None
            os.close(fd)


def read_chunk(path: Path, m: wire.Manifest, index: int) -> bytes:
    """Chunk `index` of a local file (the sender's), read alone: bounded memory."""
    with path.open("rb") as fh:
        fh.seek(index * m.chunk_size)
        return fh.read(chunk_length(m, index))
