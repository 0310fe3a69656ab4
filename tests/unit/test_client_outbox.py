"""The outbox (`tits.client.outbox.Outbox`) without sockets: what was typed is durable at once;
an item is done only when a broker acknowledged every one of its frames; a transient refusal
keeps it pending with the reason, a final one fails it; resends follow the clock passed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tits import wire
from tits.client.model import Message, Prepared
from tits.client.outbox import RESEND_S, TRANSIENT, Done, Outbox
from tits.client.store import LocalStore

ME = "A" * 40
BOB = "B" * 40
CAROL = "C" * 40
GROUP = b"\x07" * 16


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path)
    yield s
    s.close()


def frames(n: int, first: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """n (envelope, body) pairs, each with its own message id (the last one `first`: the
    text, after the key or log messages, carries the item's id)."""
    out = []
    for i in range(n):
        msg_id = first if first is not None and i == n - 1 else wire.new_msg_id()
        send = wire.Send(id=msg_id, sender=ME, to=[BOB, CAROL], group=GROUP)
        out.append((wire.encode(send), b"body %d" % i))
    return out


def ids_of(fs: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [wire.CLIENT_DECODER.decode(env).id for env, _ in fs]


def add_prepared(box: Outbox, store: LocalStore, n: int, text: str = "早安") -> tuple[bytes, list]:
    item_id = box.add("#" + GROUP.hex(), "text", text.encode(), "text/plain")
    item = store.outbox_item(item_id)
    assert item is not None and item.prepared is None
    fs = frames(n, first=item_id)
    msg = Message(
        id=item_id, conv=GROUP, sender=ME, to=[BOB, CAROL], group=GROUP, kind="text",
        text=text, verified=True, ts=1, outgoing=True, read=True,
    )  # fmt: skip
    box.prepared(item, Prepared(frames=fs, message=msg))
    return item_id, fs


def test_an_added_item_is_in_the_store_before_anything_else(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    box = Outbox(store)
    item_id = box.add(BOB, "text", "斷線時打的字".encode(), "text/plain")
    assert [i.id for i in box.unprepared()] == [item_id]
    store.close()
    # another process (after a crash) finds it as it was typed
    again = LocalStore(tmp_path)
    (item,) = again.outbox("pending")
    assert (item.id, item.target, item.payload) == (item_id, BOB, "斷線時打的字".encode())
    assert item.prepared is None and item.state == "pending"
    again.close()


def test_done_only_when_every_frame_is_acked(store: LocalStore) -> None:
    box = Outbox(store)
    item_id, fs = add_prepared(box, store, 3)
    a, b, c = ids_of(fs)
    assert box.unprepared() == []
    assert box.due(100.0) == fs
    assert box.acked([a]) == []
    assert box.acked([a, b]) == []  # a repeated ack changes nothing
    assert box.waiting({item_id}) == {item_id}
    assert store.outbox_item(item_id) is not None and store.message(item_id) is None
    (done,) = box.acked([c])
    assert isinstance(done, Done) and done.item.id == item_id
    assert box.waiting({item_id}) == set()
    assert store.outbox_item(item_id) is None
    kept = store.message(item_id)
    assert kept is not None and kept.outgoing and kept.text == "早安" and kept.read
    # its sealed body is kept as a received one's is, for --share-history
    assert [(m.id, raw) for m, raw in store.raw_history(GROUP)] == [(item_id, fs[-1][1])]
    assert box.acked([c]) == []  # a late duplicate ack
    assert box.due(1000.0) == []


def test_acks_for_ids_we_never_sent_are_ignored(store: LocalStore) -> None:
    box = Outbox(store)
    item_id, _ = add_prepared(box, store, 1)
    assert box.acked([wire.new_msg_id()]) == []
    assert box.waiting({item_id}) == {item_id}


def test_resends_only_what_is_unacked_and_only_after_resend_s(store: LocalStore) -> None:
    box = Outbox(store)
    _, fs = add_prepared(box, store, 3)
    a, _, _ = ids_of(fs)
    t = 500.0
    assert box.due(t) == fs
    box.acked([a])
    assert box.due(t) == []
    assert box.due(t + RESEND_S - 0.01) == []
    assert box.due(t + RESEND_S) == fs[1:]  # byte-identical, without the acked frame
    assert box.due(t + RESEND_S + 1) == []
    box.resend_now()  # a (re)login: at once
    assert box.due(t + RESEND_S + 1) == fs[1:]


def test_a_transient_refusal_keeps_the_item_pending_with_the_reason(store: LocalStore) -> None:
    box = Outbox(store)
    item_id, fs = add_prepared(box, store, 2)
    a, b = ids_of(fs)
    box.due(0.0)
    for code in sorted(TRANSIENT):
        failed = box.refused(b, code, "try later")
        assert failed is not None and not failed.final and failed.code == code
        item = store.outbox_item(item_id)
        assert item is not None and item.state == "pending" and item.reason == f"{code}: try later"
    assert box.due(RESEND_S) == fs  # still resent
    box.acked([a, b])
    assert store.outbox_item(item_id) is None


def test_a_final_refusal_fails_the_item_and_stops_resending(store: LocalStore) -> None:
    box = Outbox(store)
    item_id, fs = add_prepared(box, store, 2)
    a, b = ids_of(fs)
    box.due(0.0)
    box.acked([a])
    failed = box.refused(b, "too-big", "body × recipients over the limit")
    assert failed is not None and failed.final and failed.item.id == item_id
    item = store.outbox_item(item_id)
    assert item is not None and item.state == "failed"
    assert item.reason == "too-big: body × recipients over the limit"
    assert box.due(1e6) == [] and box.waiting({item_id}) == set()
    assert box.acked([b]) == []  # a late ack does not revive it
    assert store.message(item_id) is None
    assert box.refused(b, "too-big", "again") is None  # no longer ours


def test_a_refusal_for_something_else_is_not_ours(store: LocalStore) -> None:
    box = Outbox(store)
    add_prepared(box, store, 1)
    assert box.refused(None, "bad-frame", "x") is None
    assert box.refused(wire.new_msg_id(), "bad-frame", "x") is None


def test_after_a_restart_prepared_items_are_resent_byte_identical(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    box = Outbox(store)
    item_id, fs = add_prepared(box, store, 2)
    box.due(0.0)
    box.acked(ids_of(fs)[:1])  # the ack of one frame; the process dies before the other
    store.close()

    store = LocalStore(tmp_path)
    again = Outbox(store)
    again.load()
    # what the store knows: the item and all its frames (which were acked was in memory;
    # the broker drops the copy it already has by id)
    assert again.due(0.0) == fs
    assert again.acked(ids_of(fs)) and store.outbox_item(item_id) is None
    store.close()


def test_items_are_independent(store: LocalStore) -> None:
    box = Outbox(store)
    one, f1 = add_prepared(box, store, 1, "one")
    two, f2 = add_prepared(box, store, 2, "two")
    assert box.due(0.0) == f1 + f2
    (done,) = box.acked(ids_of(f2))
    assert done.item.id == two
    assert box.waiting({one, two}) == {one}
    assert box.due(RESEND_S) == f1
