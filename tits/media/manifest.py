"""A file read once into a `wire.Manifest` (bounded memory: one chunk at a time), and the
checks every receiver and broker applies to a manifest before trusting any of it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from tits import wire
from tits.errors import MediaError

from .names import safe_name
from .sniff import SNIFF_BYTES, is_picture, sniff
from .thumb import make_thumbnail

Progress = Callable[[int], None]  # bytes done so far


def chunk_count(size: int, chunk_size: int) -> int:
    return (size + chunk_size - 1) // chunk_size


def scan(
    path: Path,
    *,
    name: str | None = None,
    chunk_size: int = wire.CHUNK_SIZE,
    thumbnail: bool = True,
    progress: Progress | None = None,
) -> wire.Manifest:
    """Hash `path` whole and chunk by chunk; the MIME type from its first bytes."""
    whole = hashlib.sha256()
    chunks: list[bytes] = []
    head = b""
    size = 0
    try:
        with path.open("rb") as fh:
            while block := fh.read(chunk_size):
                if not head:
                    head = block[:SNIFF_BYTES]
                whole.update(block)
                chunks.append(hashlib.sha256(block).digest())
                size += len(block)
                if len(chunks) > wire.MAX_CHUNKS:
                    raise MediaError(f"{path.name}: bigger than {wire.MAX_MEDIA_SIZE >> 30} GiB")
                if progress is not None:
                    progress(size)
    except OSError as exc:
        raise MediaError(f"{path}: {exc.strerror or exc}") from None
    mime = sniff(head)
    m = wire.Manifest(
        sha256=whole.digest(), size=size, chunk_size=chunk_size, chunks=chunks, mime=mime,
        name=safe_name(name if name is not None else path.name),
    )  # fmt: skip
    if thumbnail and is_picture(mime):
        t = make_thumbnail(path)
        if t is not None:
            m.thumb, m.thumb_mime, m.width, m.height = t.data, t.mime, t.width, t.height
    return m


def check(m: wire.Manifest, *, max_size: int = wire.MAX_MEDIA_SIZE) -> None:
    """What the types cannot say: the chunk list fits the size, the size fits the limit."""
    if m.size > max_size:
        raise MediaError(f"{m.size} bytes is over the {max_size} limit", code="too-big")
    if len(m.chunks) != chunk_count(m.size, m.chunk_size):
        raise MediaError(
            f"{len(m.chunks)} chunks do not make {m.size} bytes of {m.chunk_size}",
            code="bad-manifest",
        )
    if m.size == 0 and m.sha256 != hashlib.sha256(b"").digest():
        raise MediaError("an empty file with another file's hash", code="bad-manifest")


def chunk_length(m: wire.Manifest, index: int) -> int:
    """How long chunk `index` must be: `chunk_size`, the last one what is left."""
    if index == len(m.chunks) - 1:
        return m.size - index * m.chunk_size
    return m.chunk_size


def decode(payload: bytes) -> wire.Manifest:
    """A manifest from a media message's payload, checked; MediaError otherwise."""
    from tits.errors import WireError

    try:
        m: wire.Manifest = wire.MANIFEST_DECODER.decode(payload)
    except WireError as exc:
        raise MediaError(exc.message, code="bad-manifest") from None
    check(m)
    return m
