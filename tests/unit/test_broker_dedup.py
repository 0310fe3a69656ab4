"""`Dedup` on its own: verdicts, forgetting by age and by count (raising the floor), the
store's word for old ids, and the memory bound per id."""

from __future__ import annotations

import os
import tracemalloc

from tits import wire
from tits.broker.dedup import Dedup, Seen

A, B = "A" * 40, "B" * 40


def mid(ms: int) -> bytes:
    return ms.to_bytes(6, "big") + os.urandom(10)


def test_verdicts() -> None:
    d = Dedup(keep_s=3600)
    d.load([], None, now_s=10_000.0)  # the floor: ids of 6,400 s (in ms) and older
    new = mid(9_000_000)
    assert d.check(new, A) is Seen.NEW
    d.remember(new, A)
    assert d.check(new, A) is Seen.DUPLICATE and d.check(new, B) is Seen.CONFLICT
    assert d.check(mid(1), A) is Seen.OLD  # older than the floor: ask the store
    d.forget(new)  # its commit failed
    assert d.check(new, A) is Seen.NEW


def test_admit_is_check_and_remember_in_one_and_the_floor_is_exact() -> None:
    d = Dedup(keep_s=3600)
    d.load([], None, now_s=10_000.0)
    new = mid(9_000_000)
    assert d.admit(new, A, 1.0) is Seen.NEW and new in d
    assert d.admit(new, A, 1.0) is Seen.DUPLICATE and d.admit(new, B, 1.0) is Seen.CONFLICT
    at_floor, above = mid(d.floor_ms), mid(d.floor_ms + 1)  # (compared as bytes, not ints)
    assert d.admit(at_floor, A, 1.0) is Seen.OLD and at_floor not in d  # the store decides
    assert d.admit(above, A, 1.0) is Seen.NEW


def test_forgets_by_age_and_raises_the_floor() -> None:
    d = Dedup(keep_s=10)
    ids = [mid(5_000_000 + k) for k in range(5)]
    for k, i in enumerate(ids):
        d.remember(i, A, now=100.0 + k * 2)  # at 100, 102, ..., 108
    assert d.prune(now=111.0, now_s=0.0) == 1  # remembered at 100: more than 10 s ago
    assert len(d) == 4 and d.floor_ms == wire.msg_id_time_ms(ids[0])
    assert d.check(ids[0], A) is Seen.OLD  # forgotten, not taken as new: the store decides
    assert d.prune(now=200.0, now_s=0.0) == 4 and len(d) == 0


def test_never_holds_more_than_max_ids() -> None:
    d = Dedup(keep_s=3600, max_ids=100)
    ids = [mid(7_000_000 + k) for k in range(150)]
    for i in ids:
        d.remember(i, A, now=1.0)
    d.prune(now=2.0, now_s=0.0)
    assert len(d) == 100 and d.floor_ms == wire.msg_id_time_ms(ids[49])
    assert ids[49] not in d and ids[50] in d


def test_old_ids_are_settled_by_the_store() -> None:
    d = Dedup(keep_s=3600)
    stored_a, stored_b, fresh = mid(1), mid(2), mid(3)
    verdicts = d.resolve_old(
        [(stored_a, A), (stored_b, A), (fresh, A)], lambda ids: {stored_a: A, stored_b: B}
    )
    assert verdicts == [Seen.DUPLICATE, Seen.CONFLICT, Seen.NEW]
    assert fresh in d and stored_a in d


def test_memory_per_remembered_id_is_bounded() -> None:
    """The stated bound: about 100 bytes an id (16-byte key object and a dict slot; senders
    shared, times per second), so 2 million ids are ~200 MB at most."""
    n = 200_000
    ids = [mid(9_000_000 + k) for k in range(n)]  # made before measuring: the keys are the
    senders = [f"{k % 50:040X}" for k in range(n)]  # message's own, the senders new strings
    d = Dedup(keep_s=3600)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for k in range(n):
        d.remember(ids[k], senders[k], now=float(k // 10_000))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_id = (used + 49 * n) / n  # the keys' own bytes objects count too
    assert per_id < 150, per_id
