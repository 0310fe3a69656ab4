"""The client's transfers against a recording fake broker (no sockets): a broker that swaps
a chunk cannot make the receiver keep the wrong bytes, and an upload sends only what the
broker says it lacks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tits import wire
from tits.client.transfer import Transfers
from tits.errors import MediaError
from tits.media.assembly import read_chunk
from tits.media.manifest import scan


class FakeBroker:
    """Answers as a broker would, from `src`; `swap` chunk indexes are served wrong that many
    times (a hostile broker)."""

    def __init__(self, src: Path, m: wire.Manifest, swap: dict[int, int], have: list[int]):
        self.src, self.m, self.swap, self.have = src, m, swap, have
        self.t: Transfers | None = None
        self.sent: list[Any] = []

    async def send(self, frames: list[bytes]) -> None:
        msg = wire.CLIENT_DECODER.decode(frames[0])
        self.sent.append(msg)
        assert self.t is not None
        loop = asyncio.get_running_loop()
        if isinstance(msg, wire.ChunkGet):
            data = read_chunk(self.src, self.m, msg.index)
            if self.swap.get(msg.index, 0) > 0:
                self.swap[msg.index] -= 1
                data = os.urandom(len(data))
            reply = wire.ChunkData(chunk=msg.chunk, index=msg.index)
            loop.call_soon(self.t.on_reply, reply, data)
        elif isinstance(msg, wire.BlobOffer):
            missing = [i for i in range(len(self.m.chunks)) if i not in self.have]
            loop.call_soon(self.t.on_reply, wire.BlobHave(sha256=msg.sha256, missing=missing), None)
        elif isinstance(msg, wire.ChunkPut):
            self.have.append(msg.index)
            loop.call_soon(self.t.on_reply, wire.ChunkOk(sha256=msg.sha256, index=msg.index), None)


def transfers(fake: FakeBroker) -> Transfers:
    async def ready(_timeout: float) -> None:
        return None

    async def run_io(fn: Any, *args: Any) -> Any:
        return fn(*args)

    t = Transfers(fake.send, ready, run_io)
    fake.t = t
    return t


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, wire.Manifest]:
    src = tmp_path / "photo.bin"
    src.write_bytes(os.urandom(3 * wire.CHUNK_SIZE + 99))
    return src, scan(src)


def test_a_swapped_chunk_is_asked_again_and_the_file_arrives_intact(
    source: tuple[Path, wire.Manifest], tmp_path: Path
) -> None:
    src, m = source
    fake = FakeBroker(src, m, swap={1: 2}, have=[])
    path = asyncio.run(transfers(fake).download(m, tmp_path / "media"))
    assert path.read_bytes() == src.read_bytes()
    assert [g.index for g in fake.sent].count(1) == 3


def test_a_broker_that_keeps_swapping_gets_nothing_saved(
    source: tuple[Path, wire.Manifest], tmp_path: Path
) -> None:
    src, m = source
    fake = FakeBroker(src, m, swap={2: 99}, have=[])
    with pytest.raises(MediaError) as err:
        asyncio.run(transfers(fake).download(m, tmp_path / "media"))
    assert err.value.code == "bad-chunk"
    assert not (tmp_path / "media" / m.sha256.hex()).exists()
    part = (tmp_path / "media" / ".partial" / f"{m.sha256.hex()}.part").read_bytes()
    assert part[2 * m.chunk_size : 3 * m.chunk_size] == bytes(m.chunk_size)


def test_an_upload_sends_only_what_the_broker_lacks(
    source: tuple[Path, wire.Manifest],
) -> None:
    src, m = source
    fake = FakeBroker(src, m, swap={}, have=[0, 2])
    t = transfers(fake)
    sent = asyncio.run(t.upload(src, m))
    assert [p.index for p in fake.sent if isinstance(p, wire.ChunkPut)] == [1, 3]
    assert sent == m.chunk_size + 99
