"""The link-state database: newest advert wins, hostile adverts change nothing, two-way links."""

from __future__ import annotations

import hashlib
import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tits.errors import WireError
from tits.router.linkstate import MAX_LINKS, LinkStateDB, advert_problem
from tits.wire import ADVERT_DECODER, Advert, Link, encode


def known(db: LinkStateDB, broker: str) -> Advert:
    advert = db.get(broker)
    assert advert is not None, broker
    return advert


def fp(i: int) -> str:
    return hashlib.sha1(str(i).encode()).hexdigest().upper()


A, B, C, D = fp(1), fp(2), fp(3), fp(4)


def ad(broker: str, seq: int, *links: tuple[str, int], alive: bool = True) -> Advert:
    return Advert(
        broker=broker,
        address=f"tcp://{broker[:8].lower()}.example:5555",
        seq=seq,
        links=[Link(peer, cost) for peer, cost in links],
        alive=alive,
    )


def triangle() -> LinkStateDB:
    db = LinkStateDB()
    assert db.apply(ad(A, 1, (B, 100), (C, 300)), now=0)
    assert db.apply(ad(B, 1, (A, 200), (C, 100)), now=0)
    assert db.apply(ad(C, 1, (A, 300), (B, 100)), now=0)
    return db


def test_graph_counts_two_way_links_at_the_larger_cost() -> None:
    db = triangle()
    assert db.graph() == {
        A: {B: 200, C: 300},
        B: {A: 200, C: 100},
        C: {A: 300, B: 100},
    }
    assert db.alive() == sorted([A, B, C]) and len(db) == 3


def test_only_a_newer_sequence_number_replaces_an_advert() -> None:
    db = triangle()
    before = db.graph()
    assert not db.apply(ad(A, 1, (B, 5)), now=1)  # equal: a gossip repeat
    assert not db.apply(ad(A, 0, (B, 5)), now=1)  # older: delayed or replayed
    assert db.graph() == before and db.get(A) == ad(A, 1, (B, 100), (C, 300))
    assert db.apply(ad(A, 7, (B, 5)), now=1)
    assert db.graph()[A] == {B: 200}  # B still says 200; A dropped C
    assert C not in db.graph()[A] and A not in db.graph()[C]


def test_one_sided_and_unknown_links_are_kept_but_not_counted() -> None:
    db = LinkStateDB()
    assert db.apply(ad(A, 1, (B, 10), (D, 10)), now=0)  # D never advertised
    assert db.apply(ad(B, 1), now=0)  # B does not list A
    assert db.graph() == {A: {}, B: {}}
    assert [link.peer for link in known(db, A).links] == [B, D]
    assert db.apply(ad(B, 2, (A, 30)), now=0)
    assert db.graph() == {A: {B: 30}, B: {A: 30}}


@pytest.mark.parametrize(
    "advert, why",
    [
        (ad(A, 2, (A, 10), (B, 10)), "links to itself"),
        (ad(A, 2, (B, 10), (C, 10), (B, 20)), "twice"),
        (ad(A, 2, (B, 0)), "cost 0 out of range"),
        (ad(A, 2, (B, 60_000_001)), "out of range"),
        (ad(A, 2, *[(fp(100 + i), 10) for i in range(MAX_LINKS + 1)]), "over the limit"),
        (ad(A, 2, ("b" * 40, 10)), "not a fingerprint"),
        (ad("not-a-broker", 2), "broker id is not a fingerprint"),
        (ad(A, -1), "out of range"),
        (ad(A, 1 << 63), "out of range"),
    ],
)
def test_malformed_adverts_change_nothing(advert: Advert, why: str) -> None:
    db = triangle()
    before = db.snapshot()
    assert why in (advert_problem(advert) or "")
    assert not db.apply(advert, now=5)
    assert db.snapshot() == before


def test_graceful_leave_and_return() -> None:
    db = triangle()
    assert db.apply(ad(A, 2, alive=False), now=1)
    assert db.graph() == {B: {C: 100}, C: {B: 100}}  # B and C still list A: not counted
    assert not db.apply(ad(A, 1, (B, 100), (C, 300)), now=2)  # a late copy cannot revive A
    assert A not in db.graph()
    assert db.apply(ad(A, 3, (B, 100)), now=3)  # A really is back
    assert db.graph()[A] == {B: 200}


def test_a_dead_broker_leaves_a_tombstone() -> None:
    db = triangle()
    assert db.apply(ad(D, 4), now=0, blob=b"signed-d")
    assert db.blob(D) == b"signed-d"
    assert db.remove(D) and not db.remove(D) and not db.remove(fp(99))
    assert D in db and known(db, D).alive is False and known(db, D).seq == 4
    assert db.blob(D) == b""  # never re-serve a signed "I am alive" for the dead
    assert D not in db.graph()
    assert not db.apply(ad(D, 4), now=1)
    assert db.apply(ad(D, 5), now=1)
    assert D in db.graph()


def test_expire_forgets_what_was_not_refreshed() -> None:
    db = triangle()
    assert db.apply(ad(A, 2, (B, 100), (C, 300)), now=50)
    db.remove(C)
    assert db.expire(now=60, max_age=30) == sorted([B, C])
    assert list(db) == [A] and db.graph() == {A: {}}
    assert db.expire(now=60, max_age=30) == []
    assert db.apply(ad(B, 1), now=61)  # forgotten, so any seq is new again


def test_snapshot_round_trip() -> None:
    db = triangle()
    db.apply(ad(D, 9, (A, 5)), now=0, blob=b"\x00sig")
    db.remove(C)
    restored = LinkStateDB.restore(db.snapshot(), now=1000.0)
    assert restored.graph() == db.graph()
    assert restored.snapshot() == db.snapshot()
    assert [restored.get(b) for b in sorted(db)] == [db.get(b) for b in sorted(db)]
    assert restored.blob(D) == b"\x00sig"
    assert not restored.apply(ad(C, 1), now=1000.0)  # the tombstone survived the restart
    assert restored.expire(now=1010.0, max_age=30) == []  # stamped with the restore time


def test_restore_refuses_a_snapshot_with_a_hostile_advert() -> None:
    bad = msgspec.msgpack.encode({"v": 1, "adverts": [[ad(A, 1, (A, 10)), b""]]})
    with pytest.raises(WireError, match="links to itself"):
        LinkStateDB.restore(bad, now=0)
    twice = msgspec.msgpack.encode({"v": 1, "adverts": [[ad(A, 1), b""], [ad(A, 2), b""]]})
    with pytest.raises(WireError, match="twice"):
        LinkStateDB.restore(twice, now=0)
    with pytest.raises(WireError, match="version"):
        LinkStateDB.restore(msgspec.msgpack.encode({"v": 99, "adverts": []}), now=0)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_restore_of_garbage_raises_only_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        LinkStateDB.restore(data, now=0)


@settings(max_examples=200, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1))
def test_restore_of_a_damaged_snapshot_raises_wire_error_or_loads(flips) -> None:
    data = bytearray(triangle().snapshot())
    for where, byte in flips:
        data[where % len(data)] = byte
    try:
        db = LinkStateDB.restore(bytes(data), now=0)
    except WireError:
        return
    for broker in db:  # whatever loaded passed the same checks as live adverts
        assert advert_problem(known(db, broker)) is None


def test_adverts_from_the_wire_decoder_apply() -> None:
    advert = ADVERT_DECODER.decode(encode(ad(A, 3, (B, 10))))
    db = LinkStateDB()
    assert db.apply(advert, now=0) and db.get(A) == advert


# -- gossip arrives in any order -----------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 1 << 32), count=st.integers(1, 40))
def test_arrival_order_does_not_matter(seed: int, count: int) -> None:
    rnd = random.Random(seed)
    brokers = [fp(i) for i in range(5)]

    def made(broker: str, seq: int) -> Advert:  # one content per (broker, seq), as if signed
        own = random.Random(f"{seed}{broker}{seq}")
        links = [(p, own.randint(1, 9)) for p in brokers if p != broker and own.random() < 0.5]
        return ad(broker, seq, *links, alive=own.random() < 0.8)

    adverts = [made(b, rnd.randint(0, 6)) for b in rnd.choices(brokers, k=count)]
    dbs = []
    for _ in range(2):
        rnd.shuffle(adverts)
        db = LinkStateDB()
        for advert in adverts:
            db.apply(advert, now=0)
        dbs.append(db)
    assert dbs[0].graph() == dbs[1].graph()
    for broker in brokers:
        newest = max((a.seq for a in adverts if a.broker == broker), default=None)
        assert (dbs[0].get(broker) or ad(broker, -1)).seq == (-1 if newest is None else newest)
