"""Duplicate message ids: the recent ones in memory, older ones checked in the store.

A mixin of `Broker`: `recent` maps each accepted id to (sender, when); ids at or below
`dedup_floor_ms` (their first 48 bits are milliseconds) may have been forgotten, so a message
with such an id is looked up in the store before it is taken as new.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tits import wire

if TYPE_CHECKING:
    from .server import Broker
    from .sessions import Conn

MAX_RECENT = 2_000_000  # accepted ids remembered in memory at most (and for cfg.dedup_s)


class Dedup:
    def _check_old(
        self: Broker,
        old: list[tuple[Conn, wire.Send, bytes]],
        batch: list[tuple[Conn, wire.Send, bytes]],
        dups: list[tuple[Conn, bytes]],
    ) -> None:
        """Ids older than the in-memory window: look them up in the store."""
        known = self.store.senders_of([m.id for _, m, _ in old])
        now = time.monotonic()
        for conn, msg, body in old:
            sender = known.get(msg.id) or self.recent.get(msg.id, (None,))[0]
            if sender is None:
                self.recent[msg.id] = (msg.sender, now)
                batch.append((conn, msg, body))
            elif sender == msg.sender:
                self.recent.setdefault(msg.id, (sender, now))  # stored: remember it again
                dups.append((conn, msg.id))
            else:
                self._error(conn, "id-conflict", "message id already used", msg.id)

    def _forget_ids(self: Broker, now: float) -> None:
        """Drop ids accepted more than dedup_s ago, or beyond MAX_RECENT, raising the floor."""
        limit = now - self.cfg.dedup_s
        recent = self.recent
        floor = self.dedup_floor_ms
        while recent:
            first = next(iter(recent))
            if recent[first][1] >= limit and len(recent) <= MAX_RECENT:
                break
            del recent[first]
            floor = max(floor, wire.msg_id_time_ms(first))
        self.dedup_floor_ms = max(floor, int((time.time() - self.cfg.dedup_s) * 1000))
