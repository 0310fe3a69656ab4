"""The cloud benchmark's load: `bench.Load` (benchmarks/broker.py) that knows which ids it
sent, counts duplicates, and ends a run that stalls. Used by benchmarks/cloud.py."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import zmq
from _cloudfleet import bench  # noqa: E402 - benchmarks/ is on sys.path when this is loaded

from tits import wire

STALL_S = 12.0  # a run with no new delivery this long has lost messages (retry_s is 5 s)


class Stalled(Exception):
    pass


class CountingLoad(bench.Load):  # type: ignore[name-defined]  # loaded by path
    """`Load` that knows which ids it sent: it counts duplicates, ignores strays from an
    earlier run, and notes when the last new delivery came (for a run that stalls)."""

    def __init__(self, senders: list[zmq.Socket], receivers: list[zmq.Socket]) -> None:
        super().__init__(senders, receivers, "broker")
        self.expected: set[bytes] = set()
        self.seen: set[bytes] = set()
        self.dups = self.strays = self.acked = 0
        self.last_new = 0.0

    def _acks(self, frames: list[bytes]) -> list[bytes]:
        got = super()._acks(frames)
        self.acked += len(got)
        return got

    def _delivered(self, frames: list[bytes]) -> list[bytes]:
        out = []
        for got in super()._delivered(frames):  # a delivery frame may carry several
            if got not in self.expected:
                self.strays += 1
                continue
            if got in self.seen:
                self.dups += 1
            else:
                self.seen.add(got)
                self.last_new = time.perf_counter()
            out.append(got)
        return out

    def drain(self) -> None:
        """Take (and acknowledge) whatever earlier runs left on the sockets."""
        for sock in self.senders + self.receivers:
            ids = []
            while sock.poll(50 if sock in self.receivers else 0):
                frames = sock.recv_multipart()
                msg = wire.SERVER_DECODER.decode(frames[0])
                if isinstance(msg, wire.Deliver):
                    ids.append(msg.id)
            for k in range(0, len(ids), wire.RECEIVED_MAX):
                sock.send(wire.encode(wire.Received(ids=ids[k : k + wire.RECEIVED_MAX])))

    def measure(
        self,
        work: list[list[tuple[bytes, bytes, bytes]]],
        window: int,
        cpu: Callable[[], float],
        **kw: Any,
    ) -> dict[str, Any]:
        """`run`, except that a run with no new delivery for STALL_S ends as stalled. `cpu`:
        the brokers' CPU seconds so far, read at the start and at the last progress."""
        self.drain()
        self.expected = {m[0] for w in work for m in w}
        n = len(self.expected)
        cpu0 = cpu()
        state = {"seen": -1, "acked": -1, "since": time.monotonic(), "cpu": cpu0}

        def _check(signum: int, frame: object) -> None:
            now = time.monotonic()
            if (len(self.seen), self.acked) != (state["seen"], state["acked"]):
                state.update(seen=len(self.seen), acked=self.acked, since=now, cpu=cpu())
            elif now - state["since"] > STALL_S:
                raise Stalled

        old = signal.signal(signal.SIGALRM, _check)
        signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)
        start = time.perf_counter()
        stalled = False
        try:
            _, dt = self.run(work, window, **kw)
            cpu1 = cpu()
        except Stalled:
            stalled = True
            dt = self.last_new - start if self.seen else float("nan")
            cpu1 = state["cpu"]  # up to a second after the last progress
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        got = len(self.seen)
        return {
            "n": n, "got": got, "lost": n - got, "dt": dt, "rate": got / dt if dt > 0 else 0.0,
            "stalled": stalled, "cpu_us": (cpu1 - cpu0) / max(got, 1) * 1e6,
        }  # fmt: skip
