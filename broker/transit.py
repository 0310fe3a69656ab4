"""Forwards passing through this broker: sent on from memory, acknowledged upstream once the
next hop acknowledges them.

DESIGN allows a broker to acknowledge a message "only after it is durably stored or
acknowledged by the next hop". Storing (and fsyncing) every forward at every relay made a
message three hops away cost about nine times the broker CPU of a local one (the cloud
benchmark: 290 µs against 31 µs), so a relay now stores nothing on the happy path. Nothing is
lost by that: the broker that accepted the message keeps it durably until the chain of
acknowledgements, which starts only at the target's commit, reaches it, and retries on
another route if it does not; receivers drop the duplicates a retry may make.

A forward is kept the old way (stored, then acknowledged upstream; `Relay` does that) when
it cannot be sent on at once (no route yet, the next hop's queue full), when too many are
already passing, or when the next hop has not acknowledged it within `ACK_WAIT_S` (it died,
or is swamped): from then on this broker is the one that retries it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from tits import wire

ACK_WAIT_S = 2.0  # well under the upstream's own retry (5 s): a stuck forward is ours to keep
MAX_PASSING = 50_000  # forwards in memory awaiting the next hop; beyond this they are stored
MAX_PASSING_BYTES = 256 << 20  # ... or beyond this many bytes of bodies
TOKEN_PREFIX = b"\x00transit"  # never the msgpack (user, device) of a relay device's token

SendOn = Callable[[wire.Forward, bytes], str | None]  # the next hop it was queued to
AckUp = Callable[[str, bytes, bytes], None]


@dataclass(slots=True)
class Passing:
    upstream: str  # the peer that sent it to us, to acknowledge
    downstream: str  # the peer we sent it on to: only its acknowledgement counts
    fwd: wire.Forward  # as it came (its token is the upstream's)
    body: bytes
    sent: float


class Transit:
    def __init__(
        self,
        send_on: SendOn,
        ack_up: AckUp,
        limit: int = MAX_PASSING,
        clock: Callable[[], float] = time.monotonic,
        limit_bytes: int = MAX_PASSING_BYTES,
    ) -> None:
        self._send_on, self._ack_up = send_on, ack_up
        self.limit, self.limit_bytes, self._clock = limit, limit_bytes, clock
        self._bytes = 0
        self._passing: dict[bytes, Passing] = {}  # our token → forward; oldest first
        self._counter = itertools.count(1)
        self.passed = 0  # acknowledged by the next hop, and so upstream

    def __len__(self) -> int:
        return len(self._passing)

    def pass_on(self, upstream: str, fwd: wire.Forward, body: bytes) -> bool:
        """Send `fwd` one hop on at once. False: not sent, the caller stores it."""
        if len(self._passing) >= self.limit or self._bytes >= self.limit_bytes or fwd.hops <= 0:
            return False
        token = TOKEN_PREFIX + next(self._counter).to_bytes(8, "big")
        hop = self._send_on(msgspec.structs.replace(fwd, hops=fwd.hops - 1, token=token), body)
        if hop is None:
            return False
        self._passing[token] = Passing(upstream, hop, fwd, body, self._clock())
        self._bytes += len(body)
        return True

    @staticmethod
    def owns(token: bytes) -> bool:
        return token.startswith(TOKEN_PREFIX)

    def acked(self, peer: str, msg_id: bytes, token: bytes) -> None:
        """The next hop has it (stored, or acknowledged by the hop after): so does upstream."""
        passing = self._passing.get(token)
        if passing is None or passing.fwd.id != msg_id or passing.downstream != peer:
            return  # late (already kept by us), another peer's guess, or garbage
        del self._passing[token]
        self._bytes -= len(passing.body)
        self.passed += 1
        self._ack_up(passing.upstream, msg_id, passing.fwd.token)

    def lost(self, peer: str) -> list[Passing]:
        """The forwards sent on to `peer`, whose link just went down, taken out of the table
        (the caller stores them: it need not wait ACK_WAIT_S to know)."""
        tokens = [t for t, p in self._passing.items() if p.downstream == peer]
        taken = [self._passing.pop(t) for t in tokens]
        self._bytes -= sum(len(p.body) for p in taken)
        return taken

    def overdue(self) -> list[Passing]:
        """Forwards the next hop has left unacknowledged for `ACK_WAIT_S`, taken out of the
        table: the caller stores them (a late acknowledgement is then ignored)."""
        limit = self._clock() - ACK_WAIT_S
        out = []
        for token, passing in self._passing.items():  # oldest first: stop at the first young
            if passing.sent > limit:
                break
            out.append(token)
        taken = [self._passing.pop(token) for token in out]
        self._bytes -= sum(len(p.body) for p in taken)
        return taken
