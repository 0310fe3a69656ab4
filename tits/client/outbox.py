"""What the user typed, from the moment they pressed Enter until a broker stored it.

An item is written to the local store (`outbox` table, synchronous=FULL) before anything
else happens — before keys are looked up, before any broker is asked — so neither a dead
broker nor a crash loses it. Once prepared (sealed; key or log messages in front) its frames
are kept too, so every resend is byte-identical and a broker that already stored it drops the
copy by id. An item leaves the outbox when a broker acknowledged every frame of it; a refusal
for good marks it failed with the broker's own reason; a transient one (`storage`, `busy`,
`rate-limited`) keeps it pending and says why (issue 14: the reason was hidden).

Sans-IO: the driver feeds it acknowledgements, refusals and the clock, and sends what `due`
returns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tits import wire

from .model import Message, Prepared, SendOptions
from .store import LocalStore, OutboxItem

RESEND_S = 3.0
TRANSIENT = frozenset({"rate-limited", "busy", "storage", "not-logged-in", "timeout"})


@dataclass(frozen=True)
class Done:
    item: OutboxItem


@dataclass(frozen=True)
class Failed:
    item: OutboxItem
    code: str
    reason: str
    final: bool


class Outbox:
    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self._owner: dict[bytes, bytes] = {}  # message id → item id
        self._waiting: dict[bytes, set[bytes]] = {}  # item id → message ids not yet acked
        self._items: dict[bytes, OutboxItem] = {}
        self._sent_at: dict[bytes, float] = {}
        # the event loop asks what is due while the worker thread files what was prepared
        self._lock = threading.RLock()

    def add(
        self,
        target: str,
        kind: str,
        payload: bytes,
        mime: str,
        reply_to: bytes | None = None,
        options: SendOptions | None = None,
    ) -> bytes:
        item_id = wire.new_msg_id()
        self.store.outbox_add(item_id, target, kind, payload, mime, reply_to, options)
        return item_id

    def pending(self) -> list[OutboxItem]:
        return self.store.outbox("pending")

    def unprepared(self) -> list[OutboxItem]:
        return [i for i in self.pending() if i.prepared is None]

    def prepared(self, item: OutboxItem, prepared: Prepared) -> None:
        self.store.outbox_prepared(item.id, prepared)
        fresh = self.store.outbox_item(item.id)
        if fresh is not None:
            self._track_unlocked(fresh)

    def _track_unlocked(self, item: OutboxItem) -> None:
        """Follow a prepared item's frames (after a restart: those still in the store)."""
        if item.prepared is None or item.id in self._items:
            return
        ids = {wire.CLIENT_DECODER.decode(env).id for env, _ in item.prepared.frames}
        self._items[item.id] = item
        self._waiting[item.id] = ids
        for i in ids:
            self._owner[i] = item.id

    def load(self) -> None:
        for item in self.pending():
            self._track_unlocked(item)

    def _due_unlocked(self, now: float) -> list[tuple[bytes, bytes]]:
        """Frames to (re)send: those of items not sent in the last RESEND_S."""
        out: list[tuple[bytes, bytes]] = []
        for item_id, item in self._items.items():
            if now - self._sent_at.get(item_id, -1e9) < RESEND_S or item.prepared is None:
                continue
            self._sent_at[item_id] = now
            waiting = self._waiting[item_id]
            for env, body in item.prepared.frames:
                if wire.CLIENT_DECODER.decode(env).id in waiting:
                    out.append((env, body))
        return out

    def _resend_now_unlocked(self) -> None:
        """After a (re)login: everything waiting goes out at once, not after RESEND_S."""
        self._sent_at.clear()

    def _acked_unlocked(self, ids: list[bytes]) -> list[Done]:
        done: list[Done] = []
        for i in ids:
            item_id = self._owner.pop(i, None)
            if item_id is None:
                continue
            waiting = self._waiting.get(item_id)
            if waiting is None:
                continue
            waiting.discard(i)
            if not waiting:
                item = self._items.pop(item_id)
                del self._waiting[item_id]
                self._sent_at.pop(item_id, None)
                message = item.prepared.message if item.prepared else None
                self.store.outbox_done(item.id, message, _sealed_body(item, message))
                done.append(Done(item))
        return done

    def _refused_unlocked(self, ref: bytes | None, code: str, reason: str) -> Failed | None:
        item_id = self._owner.get(ref) if ref is not None else None
        if item_id is None:
            return None
        item = self._items[item_id]
        final = code not in TRANSIENT
        self.store.outbox_note(item_id, "failed" if final else "pending", f"{code}: {reason}")
        if final:
            for i in self._waiting.pop(item_id, set()):
                self._owner.pop(i, None)
            self._items.pop(item_id, None)
        return Failed(item, code, reason, final)

    def _waiting_unlocked(self, item_ids: set[bytes]) -> set[bytes]:
        """Which of these items are still in flight (tracked, not yet stored)."""
        return {i for i in item_ids if i in self._items}

    # -- the same, under the lock ------------------------------------------------------------

    def track(self, item: OutboxItem) -> None:
        with self._lock:
            return self._track_unlocked(item)

    def due(self, now: float) -> list[tuple[bytes, bytes]]:
        with self._lock:
            return self._due_unlocked(now)

    def resend_now(self) -> None:
        with self._lock:
            return self._resend_now_unlocked()

    def acked(self, ids: list[bytes]) -> list[Done]:
        with self._lock:
            return self._acked_unlocked(ids)

    def refused(self, ref: bytes | None, code: str, reason: str) -> Failed | None:
        with self._lock:
            return self._refused_unlocked(ref, code, reason)

    def waiting(self, item_ids: set[bytes]) -> set[bytes]:
        with self._lock:
            return self._waiting_unlocked(item_ids)


def _sealed_body(item: OutboxItem, message: Message | None) -> bytes | None:
    """A group text's sealed body as the members got it, kept like a received one's so
    `--share-history` can pass on what we sent too (the first part carries the item's id)."""
    if message is None or message.group is None or message.kind != "text" or not item.prepared:
        return None
    for env, body in item.prepared.frames:
        if wire.CLIENT_DECODER.decode(env).id == message.id:
            return body
    return None
