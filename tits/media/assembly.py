"""A receiver's file under construction: HOME/media/.partial/<sha256>.part, each chunk
checked against the signed manifest before it is written at its offset, the chunks done
remembered beside it (so a broken download resumes), the whole file's SHA-256 checked
before it is moved to HOME/media/<sha256>. A broker that swaps a chunk cannot make a
receiver keep or show the wrong bytes: they never reach the file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tits import wire
from tits.errors import MediaError

from .manifest import chunk_length

READ_BLOCK = 1 << 20


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
        finally:
            os.close(fd)

    @property
    def complete(self) -> bool:
        return self.final.exists()

    def missing(self) -> list[int]:
        return [i for i in range(len(self.m.chunks)) if i not in self.done]

    def put(self, index: int, data: bytes) -> None:
        """Write chunk `index` if its bytes are the ones the manifest names."""
        if not 0 <= index < len(self.m.chunks):
            raise MediaError(f"chunk {index} is not in this file", code="bad-chunk")
        if len(data) != chunk_length(self.m, index):
            raise MediaError(f"chunk {index} has the wrong length", code="bad-chunk")
        if hashlib.sha256(data).digest() != self.m.chunks[index]:
            raise MediaError(f"chunk {index} does not match its hash", code="bad-chunk")
        if index in self.done:
            return
        fd = os.open(self.part, os.O_WRONLY)
        try:
            os.pwrite(fd, data, index * self.m.chunk_size)
        finally:
            os.close(fd)
        with self.done_path.open("ab") as fh:
            fh.write(index.to_bytes(4, "big"))
        self.done.add(index)

    def finish(self) -> Path:
        """Check the whole file and move it into place; MediaError (and start over) if the
        chunks, though each matched, do not make the signed file."""
        if self.final.exists():
            return self.final
        if self.missing():
            raise MediaError(f"{len(self.missing())} chunks still missing", code="not-found")
        h = hashlib.sha256()
        with self.part.open("rb") as fh:
            while block := fh.read(READ_BLOCK):
                h.update(block)
        if h.digest() != self.m.sha256:
            self.discard()
            raise MediaError("the chunks do not make the signed file", code="bad-chunk")
        os.chmod(self.part, 0o600)
        self.part.replace(self.final)
        self.done_path.unlink(missing_ok=True)
        return self.final

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.done_path.unlink(missing_ok=True)
        self.done.clear()


def read_chunk(path: Path, m: wire.Manifest, index: int) -> bytes:
    """Chunk `index` of a local file (the sender's), read alone: bounded memory."""
    with path.open("rb") as fh:
        fh.seek(index * m.chunk_size)
        return fh.read(chunk_length(m, index))
