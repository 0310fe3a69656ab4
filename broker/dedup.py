"""Duplicate message ids: the recent ones in memory, older ones checked in the store.

`Dedup` remembers each accepted id with its sender for `keep_s` (an hour), at most `max_ids`
(2 million). Ids whose time (their first 48 bits are milliseconds) is at or below `floor_ms`
may have been forgotten, so a message with such an id is looked up in the store before it is
taken as new (`resolve_old`).

Memory bound: an id costs its 16-byte key (a 49-byte `bytes`) and a dict slot; the sender is
one shared string per user (`_senders`), and times are kept per second, not per id (`_marks`).
About 100 bytes an id, so the 2 million at most are ~200 MB (tests/unit/test_broker_dedup.py
measures it); was ~0.3 KiB an id with a (sender, time) tuple each.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from enum import Enum

from tits import wire

MAX_RECENT = 2_000_000  # accepted ids remembered in memory at most (and for keep_s)
MAX_SENDERS = 1_000_000


class Seen(Enum):
    NEW = 0  # take it
    DUPLICATE = 1  # the same sender's again: acknowledge, do not store
    CONFLICT = 2  # another sender's id: refuse
    OLD = 3  # older than memory: ask the store (`resolve_old`)


class Dedup:
    def __init__(self, keep_s: float, max_ids: int = MAX_RECENT) -> None:
        self.keep_s = keep_s
        self.max_ids = max_ids
        self._ids: dict[bytes, str] = {}  # msg id → sender, oldest first
        self._marks: deque[tuple[float, int]] = deque()  # (monotonic time, ids added by then)
        self._added = 0  # ids ever added (the count the marks refer to)
        self._dropped = 0  # ids ever forgotten
        self._senders: dict[str, str] = {}  # one string object per sender
        # ids whose time is at or below this were, or may have been, forgotten
        self._floor_ms = 0
        self._floor_head = bytes(6)  # floor_ms as an id's first 6 bytes (compared as bytes)

    @property
    def floor_ms(self) -> int:
        return self._floor_ms

    @floor_ms.setter
    def floor_ms(self, ms: int) -> None:
        self._floor_ms = ms
        self._floor_head = min(ms, (1 << 48) - 1).to_bytes(6, "big")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._ids

    def load(self, ids: Sequence[tuple[bytes, str]], left_out: bytes | None, now_s: float) -> None:
        """Start from the store: the ids accepted within keep_s (oldest first) and the highest
        id among the stored ones left out."""
        for msg_id, sender in ids:
            self.remember(msg_id, sender)
        self.floor_ms = max(
            int((now_s - self.keep_s) * 1000), wire.msg_id_time_ms(left_out) if left_out else 0
        )

    def check(self, msg_id: bytes, sender: str) -> Seen:
        prev = self._ids.get(msg_id)
        if prev is not None:
            return Seen.DUPLICATE if prev == sender else Seen.CONFLICT
        # big-endian milliseconds compare as bytes do (a call fewer than msg_id_time_ms)
        if msg_id[:6] <= self._floor_head:
            return Seen.OLD
        return Seen.NEW

    def admit(self, msg_id: bytes, sender: str, now: float) -> Seen:
        """`check`, and a NEW id remembered at once (one call a message on the send path)."""
        prev = self._ids.get(msg_id)
        if prev is not None:
            return Seen.DUPLICATE if prev == sender else Seen.CONFLICT
        if msg_id[:6] <= self._floor_head:
            return Seen.OLD
        self.remember(msg_id, sender, now)
        return Seen.NEW

    def remember(self, msg_id: bytes, sender: str, now: float | None = None) -> None:
        if msg_id in self._ids:
            return
        shared = self._senders.get(sender)
        if shared is None:
            if len(self._senders) >= MAX_SENDERS:
                self._senders.clear()
            shared = self._senders[sender] = sender
        self._ids[msg_id] = shared
        self._added += 1
        now = time.monotonic() if now is None else now
        if not self._marks or now - self._marks[-1][0] >= 1.0:
            self._marks.append((now, self._added))
        else:
            self._marks[-1] = (self._marks[-1][0], self._added)

    def forget(self, msg_id: bytes) -> None:
        """Its commit failed: it was never accepted (the floor stays as it is)."""
        self._ids.pop(msg_id, None)

    def resolve_old(
        self, ids: Sequence[tuple[bytes, str]], stored: Callable[[list[bytes]], Mapping[bytes, str]]
    ) -> list[Seen]:
        """For ids older than memory: NEW, DUPLICATE or CONFLICT, by the store's `stored`
        (id → sender); the new and the stored ones are remembered (again)."""
        known = stored([i for i, _ in ids])
        out = []
        for msg_id, sender in ids:
            prev = known.get(msg_id) or self._ids.get(msg_id)
            if prev is None:
                self.remember(msg_id, sender)
                out.append(Seen.NEW)
            elif prev == sender:
                self.remember(msg_id, sender)
                out.append(Seen.DUPLICATE)
            else:
                out.append(Seen.CONFLICT)
        return out

    def prune(self, now: float, now_s: float | None = None) -> int:
        """Forget ids remembered more than keep_s ago, or beyond max_ids, raising the floor;
        returns how many were forgotten."""
        limit = now - self.keep_s
        ids, marks = self._ids, self._marks
        drop = 0  # how many of the oldest to forget
        while marks and marks[0][0] < limit:
            drop = marks.popleft()[1] - self._dropped
        drop = max(drop, len(ids) - self.max_ids)
        floor = self.floor_ms
        gone = 0
        for _ in range(min(drop, len(ids))):
            first = next(iter(ids))
            del ids[first]
            floor = max(floor, wire.msg_id_time_ms(first))
            gone += 1
        self._dropped += drop
        now_s = time.time() if now_s is None else now_s
        self.floor_ms = max(floor, int((now_s - self.keep_s) * 1000))
        return gone
