"""Uploads and downloads of media chunks over the client's broker connection.

An upload offers the manifest (`BlobOffer`); the broker answers with the chunks it still
lacks (`BlobHave`), and only those are sent, WINDOW at a time, each acknowledged
(`ChunkOk`). A connection lost, a broker restarted or silent: the transfer waits for the
link to be up again and offers again, so what arrived is never sent twice. A download asks
for each missing chunk (`ChunkGet`, naming the manifest's holder for the broker to fetch it
from the cloud), GET_WINDOW at a time, checks it against the signed manifest before writing
it (`Assembly`), and asks again on `not-found` until its deadline.

Disk reads and writes and hashing run on the media thread (`run_io`), never on the loop;
at most WINDOW (GET_WINDOW) chunks are in memory per upload (download), whatever the
file's size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tits import wire
from tits.errors import BrokerError, MediaError
from tits.media.assembly import Assembly, read_chunk
from tits.media.manifest import chunk_length

T = TypeVar("T")
WINDOW = 2  # chunks in flight per upload: 8 MiB (more showed no gain, and costs peak RSS)
# a download asks for more at once: a chunk its broker fetches from the cloud comes hops
# later (2 hops apart: 52 → 55 MB/s median against 2 at a time, 2 rounds each; noisy)
GET_WINDOW = 4
REPLY_S = 15.0  # a chunk unanswered this long: the link is presumed lost, offer again
BAD_CHUNK_TRIES = 3  # a chunk that came wrong this often from our broker: give up
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
_AGAIN = frozenset({"not-found", "busy", "rate-limited"})  # worth asking again, later
RunIO = Callable[..., Awaitable[Any]]


class _Lost(Exception):
    """The link went down, or a reply did not come: start the round again."""


class Transfers:
    def __init__(
        self,
        send: Callable[[list[bytes]], Awaitable[None]],
        ready: Callable[[float], Awaitable[None]],
        run_io: RunIO,
    ) -> None:
        self._send, self._ready, self._io = send, ready, run_io
        self._waiting: dict[tuple[Any, ...], list[asyncio.Future[Any]]] = {}
        self.sent_bytes = 0  # chunk bytes this client put on the wire (tests count them)
        self.got_bytes = 0

    # -- replies from the broker --------------------------------------------------------------

    def on_reply(self, msg: Any, body: bytes | None) -> None:
        if isinstance(msg, wire.BlobHave):
            self._resolve(("have", msg.sha256), msg)
        elif isinstance(msg, wire.ChunkOk):
            self._resolve(("ok", msg.sha256, msg.index), msg)
        elif isinstance(msg, wire.ChunkData):
            self._resolve(("data", msg.chunk, msg.index), body if body is not None else b"")
        elif isinstance(msg, wire.BlobError):
            exc = MediaError(msg.message or msg.code, code=msg.code)
            if msg.chunk is not None:
                self._resolve(("data", msg.chunk, msg.index), exc)
            if msg.sha256 is not None:
                self._resolve(("have", msg.sha256), exc)
                self._resolve(("ok", msg.sha256, msg.index), exc)

    def link_lost(self) -> None:
        for futs in self._waiting.values():
            for f in futs:
                if not f.done():
                    f.set_exception(_Lost())
        self._waiting.clear()

    def _resolve(self, key: tuple[Any, ...], value: Any) -> None:
        for f in self._waiting.pop(key, []):
            if not f.done():
                if isinstance(value, BaseException):
                    f.set_exception(value)
                else:
                    f.set_result(value)

    def _expect(self, key: tuple[Any, ...]) -> asyncio.Future[Any]:
        f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(f)
        return f

    def _forget(self, key: tuple[Any, ...], f: asyncio.Future[Any]) -> None:
        futs = self._waiting.get(key)
        if futs and f in futs:
            futs.remove(f)
            if not futs:
                del self._waiting[key]

    async def _wait(self, key: tuple[Any, ...], f: asyncio.Future[Any]) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(f), REPLY_S)
        except TimeoutError:
            raise _Lost() from None
        finally:
            self._forget(key, f)

    # -- upload -------------------------------------------------------------------------------

    async def upload(
        self, path: Path, m: wire.Manifest, *, timeout: float = 3600.0,
        progress: Progress | None = None, offered: Callable[[], Awaitable[None]] | None = None,
    ) -> int:  # fmt: skip
        """Until the broker has every chunk; returns the chunk bytes sent for it.
        `offered` runs once the broker first took the offer (the message can go then:
        receivers fetch while the rest is still being sent)."""
        deadline = time.monotonic() + timeout
        offer = [wire.encode(wire.BlobOffer(sha256=m.sha256)), wire.encode(m)]
        sent = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerError("the upload did not finish in time", code="timeout")
            await self._ready(left)
            key = ("have", m.sha256)
            f = self._expect(key)
            try:
                await self._send(offer)
                have: wire.BlobHave = await self._wait(key, f)
                missing = have.missing
                if offered is not None:
                    await offered()
                    offered = None
                if progress is not None:
                    progress(m.size - sum(chunk_length(m, i) for i in missing), m.size)
                if not missing:
                    return sent
                sent += await self._put_all(path, m, missing, progress)
            except _Lost:
                await asyncio.sleep(0.2)
            except MediaError as exc:
                if exc.code not in _AGAIN:
                    raise
                await asyncio.sleep(0.5)  # the broker is busy, or we went too fast

    async def _put_all(
        self, path: Path, m: wire.Manifest, missing: list[int], progress: Progress | None
    ) -> int:
        done = m.size - sum(chunk_length(m, i) for i in missing)
        sent = 0
        inflight: set[asyncio.Task[int]] = set()
        queue = list(reversed(missing))
        try:
            while queue or inflight:
                while queue and len(inflight) < WINDOW:
                    i = queue.pop()
                    data = await self._io(read_chunk, path, m, i)
                    key = ("ok", m.sha256, i)
                    f = self._expect(key)
                    await self._send([wire.encode(wire.ChunkPut(sha256=m.sha256, index=i)), data])
                    sent += len(data)
                    self.sent_bytes += len(data)
                    inflight.add(asyncio.ensure_future(self._acked(key, f, len(data))))
                finished, inflight = await asyncio.wait(
                    inflight, return_when=asyncio.FIRST_COMPLETED
                )
                for t in finished:
                    done += t.result()  # raises _Lost or MediaError for the whole round
                    if progress is not None:
                        progress(done, m.size)
        finally:
            for t in inflight:
                t.cancel()
        return sent

    async def _acked(self, key: tuple[Any, ...], f: asyncio.Future[Any], n: int) -> int:
        await self._wait(key, f)
        return n

    # -- download -----------------------------------------------------------------------------

    async def download(
        self, m: wire.Manifest, folder: Path, *, timeout: float = 3600.0,
        progress: Progress | None = None, sender: str = "",
    ) -> Path:  # fmt: skip
        """Every chunk checked against `m`, the file checked whole: HOME/media/<sha256>."""
        deadline = time.monotonic() + timeout
        asm: Assembly = await self._io(Assembly, folder, m)
        if asm.complete:
            return asm.final
        in_loop = True
        try:
            return await self._fetch_all(asm, m, deadline, progress, sender)
        except GeneratorExit:  # closed by the garbage collector, its loop gone: no await here
            in_loop = False
            raise
        finally:
            if in_loop:
                try:
                    await self._io(asm.close)  # after any write still on the media thread
                except RuntimeError:
                    pass  # that thread is shut down (the client closing)

    async def _fetch_all(
        self, asm: Assembly, m: wire.Manifest, deadline: float, progress: Progress | None,
        sender: str,
    ) -> Path:  # fmt: skip
        bad: dict[int, int] = {}
        while True:
            missing = asm.missing()
            if not missing:
                final: Path = await self._io(asm.finish)
                return final
            left = deadline - time.monotonic()
            if left <= 0:
                raise MediaError(
                    f"{len(missing)} chunks could not be fetched in time", code="not-found"
                )
            await self._ready(left)
            try:
                await self._get_all(asm, m, missing, bad, progress, sender)
            except _Lost:
                await asyncio.sleep(0.2)
            except MediaError as exc:
                if exc.code not in _AGAIN:
                    raise
                await asyncio.sleep(0.5)  # on its way through the cloud, or a path repaired

    async def _get_all(
        self, asm: Assembly, m: wire.Manifest, missing: list[int], bad: dict[int, int],
        progress: Progress | None, sender: str = "",
    ) -> None:  # fmt: skip
        inflight: dict[asyncio.Future[Any], int] = {}
        queue = list(reversed(missing))
        done = m.size - sum(chunk_length(m, i) for i in missing)

        async def ask() -> None:  # the window full again
            while queue and len(inflight) < GET_WINDOW:
                i = queue.pop()
                key = ("data", m.chunks[i], i)
                f = self._expect(key)
                get = wire.ChunkGet(chunk=m.chunks[i], index=i, holder=m.holder, sender=sender)
                await self._send([wire.encode(get)])
                inflight[asyncio.ensure_future(self._wait(key, f))] = i

        try:
            while queue or inflight:
                await ask()
                finished, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                got: list[tuple[int, bytes]] = []
                for t in finished:
                    i = inflight.pop(t)
                    got.append((i, t.result()))  # raises _Lost or MediaError for the round
                await ask()  # the next ones are asked for while these are checked and written
                for i, data in sorted(got):
                    self.got_bytes += len(data)
                    try:
                        await self._io(asm.put, i, data)
                    except MediaError:
                        bad[i] = bad.get(i, 0) + 1
                        if bad[i] >= BAD_CHUNK_TRIES:
                            raise MediaError(
                                f"chunk {i} came {bad[i]} times with the wrong bytes: "
                                "the broker is not to be trusted with this file",
                                code="bad-chunk",
                            ) from None
                        queue.append(i)
                        continue
                    done += len(data)
                    if progress is not None:
                        progress(done, m.size)
        finally:
            for t in inflight:
                t.cancel()
