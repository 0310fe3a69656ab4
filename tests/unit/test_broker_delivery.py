"""Delivery logic over a real SQLite store, with a recording fake for the socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tits.broker.delivery import Delivery, Device, SendResult
from tits.broker.store import Job, Store, Writer

ALICE, BOB = "A" * 40, "B" * 40


class Net:
    """Records sends; `result` decides what the next send returns."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.result = SendResult.OK

    def send(self, dev: Device, env: bytes, body: bytes) -> SendResult:
        if self.result is SendResult.OK:
            self.sent.append((dev.device, body))
        return self.result

    def take(self) -> list[tuple[str, bytes]]:
        out, self.sent = self.sent, []
        return out


class World:
    def __init__(self, path: Path, window: int = 1000) -> None:
        self.store = Store(path)
        self.writer = Writer(path, "normal", lambda: None)
        self.net = Net()
        self.delivery = Delivery(self.store, self.net.send, window=window, retry_s=5.0)

    def commit(self, job: Job) -> Job:
        self.writer.submit(job)
        done = self.writer.done.get(timeout=10)
        assert done is job and job.error is None
        return job

    def message(self, user: str, n: int) -> tuple[int, bytes]:
        """Store message `n` for `user` and tell delivery, as the broker does after a commit."""
        seq = self.store.allocate()
        msg_id = n.to_bytes(16, "big")
        body = b"body%d" % n
        self.commit(Job(rows=[(seq, user, msg_id, ALICE, b"env", body, 0, "")]))
        self.delivery.stored(user, seq, msg_id, b"env", body)
        return seq, msg_id

    def close(self) -> None:
        self.writer.close()
        self.store.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "mail.db")
    yield w
    w.close()


def test_live_delivery_and_cursor(world: World) -> None:
    dev = Device(BOB, "d1", b"route")
    assert world.delivery.attach(dev) == 0
    seq, msg_id = world.message(BOB, 1)
    assert world.net.take() == [("d1", b"body1")]
    assert dev.cursor == seq - 1  # sent, not yet acknowledged
    world.delivery.acked(dev, [msg_id])
    assert dev.cursor == seq
    assert world.delivery.cursor_moves() == [(seq, BOB, "d1")]
    assert world.delivery.cursor_moves() == []
    world.commit(Job(cursors=[(seq, BOB, "d1")]))
    assert world.store.device_cursor(BOB, "d1") == seq


def test_offline_mailbox_in_order_with_a_window(tmp_path: Path) -> None:
    world = World(tmp_path / "mail.db", window=2)
    ids = [world.message(BOB, n)[1] for n in range(5)]
    assert world.net.take() == []  # nobody online
    dev = Device(BOB, "d1", b"route")
    assert world.delivery.attach(dev) == 5
    world.delivery.pump()
    assert world.net.take() == [("d1", b"body0"), ("d1", b"body1")]
    world.delivery.pump()
    assert world.net.take() == []  # window full
    world.delivery.acked(dev, ids[:2])
    world.delivery.pump()
    assert world.net.take() == [("d1", b"body2"), ("d1", b"body3")]
    # a new message while behind waits its turn (no overtaking)
    world.message(BOB, 5)
    assert world.net.take() == []
    world.delivery.acked(dev, ids[2:4])
    world.delivery.pump()
    assert world.net.take() == [("d1", b"body4"), ("d1", b"body5")]
    world.close()


def test_every_device_gets_every_message_and_a_new_device_starts_at_zero(world: World) -> None:
    d1 = Device(BOB, "d1", b"r1")
    world.delivery.attach(d1)
    world.message(BOB, 1)
    world.message(ALICE, 2)  # someone else's mail is not Bob's
    d2 = Device(BOB, "d2", b"r2")
    assert world.delivery.attach(d2) == 1
    world.delivery.pump()
    world.message(BOB, 3)
    assert sorted(world.net.take()) == [
        ("d1", b"body1"),
        ("d1", b"body3"),
        ("d2", b"body1"),
        ("d2", b"body3"),
    ]


def test_full_queue_is_not_counted_as_sent(world: World) -> None:
    dev = Device(BOB, "d1", b"r")
    world.delivery.attach(dev)
    world.net.result = SendResult.FULL
    world.message(BOB, 1)
    assert world.net.take() == [] and dev.inflight == {} and dev.cursor == 0
    world.net.result = SendResult.OK
    world.delivery.pump(now=dev.stalled_until + 1)
    assert world.net.take() == [("d1", b"body1")]


def test_gone_peer_is_detached_and_keeps_its_mail(world: World) -> None:
    gone: list[Device] = []
    world.delivery.on_gone = gone.append
    dev = Device(BOB, "d1", b"r")
    world.delivery.attach(dev)
    world.net.result = SendResult.GONE
    world.message(BOB, 1)
    assert gone == [dev] and world.delivery.device(BOB, "d1") is None
    world.net.result = SendResult.OK
    again = Device(BOB, "d1", b"r2")
    assert world.delivery.attach(again) == 1
    world.delivery.pump()
    assert world.net.take() == [("d1", b"body1")]


def test_unacknowledged_deliveries_are_resent(world: World) -> None:
    dev = Device(BOB, "d1", b"r")
    world.delivery.attach(dev)
    _, msg_id = world.message(BOB, 1)
    world.net.take()
    sent_at = dev.inflight[dev.ids[msg_id]][1]
    assert world.delivery.retry(now=sent_at + 1) == 0
    assert world.delivery.retry(now=sent_at + 6) == 1
    assert world.net.take() == [("d1", b"body1")]
    world.delivery.acked(dev, [msg_id])
    assert world.delivery.retry(now=sent_at + 60) == 0


def test_same_device_logging_in_again_replaces_the_old_session(world: World) -> None:
    old = Device(BOB, "d1", b"old")
    world.delivery.attach(old)
    world.message(BOB, 1)
    new = Device(BOB, "d1", b"new")
    assert world.delivery.attach(new) == 1  # not acknowledged by the old session
    world.delivery.pump()
    assert world.delivery.device(BOB, "d1") is new
    assert world.net.take()[-1] == ("d1", b"body1")


def test_a_commit_reported_after_a_login_is_not_sent_twice(world: World) -> None:
    seq = world.store.allocate()
    msg_id = (7).to_bytes(16, "big")
    world.commit(Job(rows=[(seq, BOB, msg_id, ALICE, b"env", b"body7", 0, "")]))
    dev = Device(BOB, "d1", b"r")
    assert world.delivery.attach(dev) == 1  # the store already shows it
    world.delivery.pump()
    world.delivery.stored(BOB, seq, msg_id, b"env", b"body7")  # the broker learns late
    assert world.net.take() == [("d1", b"body7")]
    assert dev.sent_upto == seq


def test_bodies_in_flight_are_bounded_in_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window of 1,000 messages is 1 GiB of pictures: bytes in flight are bounded too."""
    monkeypatch.setattr("tits.broker.delivery.WINDOW_BYTES", 12)
    world = World(tmp_path / "mail.db")
    ids = [world.message(BOB, n)[1] for n in range(5)]  # 5-byte bodies
    dev = Device(BOB, "d1", b"route")
    world.delivery.attach(dev)
    world.delivery.pump()
    assert world.net.take() == [("d1", b"body0"), ("d1", b"body1"), ("d1", b"body2")]
    world.delivery.acked(dev, ids[:2])
    assert dev.inflight_bytes == 5
    world.delivery.pump()
    assert world.net.take() == [("d1", b"body3"), ("d1", b"body4")]
    world.close()


def test_retry_at_once_for_the_devices_picked(world: World) -> None:
    """A link went down: what relay devices have in flight goes again now, not in 5 s."""
    phone, relay = Device(BOB, "d1", b"route"), Device(BOB, "@far", b"")
    world.delivery.attach(phone)
    world.delivery.attach(relay)
    world.message(BOB, 1)
    assert sorted(world.net.take()) == [("@far", b"body1"), ("d1", b"body1")]
    assert world.delivery.retry() == 0  # nothing has waited retry_s yet
    assert world.delivery.retry(wait_s=0.0, only=lambda d: d.device.startswith("@")) == 1
    assert world.net.take() == [("@far", b"body1")]


def own(world: World, n: int, skip: str) -> tuple[int, bytes]:
    """Alice's message `n`, stored in her own mailbox as sent from device `skip`."""
    seq = world.store.allocate()
    msg_id = n.to_bytes(16, "big")
    world.commit(Job(rows=[(seq, ALICE, msg_id, ALICE, b"env", b"own%d" % n, 0, skip)]))
    world.delivery.stored(ALICE, seq, msg_id, b"env", b"own%d" % n, skip)
    return seq, msg_id


def test_a_device_is_not_sent_its_own_message_and_its_cursor_passes_it(world: World) -> None:
    phone, tablet = Device(ALICE, "phone", b"r1"), Device(ALICE, "tablet", b"r2")
    world.delivery.attach(phone)
    world.delivery.attach(tablet)
    seq, msg_id = own(world, 1, "phone")
    assert world.net.take() == [("tablet", b"own1")]
    assert phone.cursor == seq and tablet.cursor == seq - 1
    world.delivery.acked(tablet, [msg_id])
    assert tablet.cursor == seq


def test_from_the_store_too_a_device_skips_what_it_sent(world: World) -> None:
    own(world, 1, "phone")
    own(world, 2, "tablet")
    phone = Device(ALICE, "phone", b"r1")
    assert world.delivery.attach(phone) == 1  # pending counts only what it did not send
    world.delivery.pump()
    assert world.net.take() == [("phone", b"own2")]
    world.delivery.acked(phone, [(2).to_bytes(16, "big")])
    assert phone.cursor == 2
    laptop = Device(ALICE, "laptop", b"r3")
    assert world.delivery.attach(laptop) == 2


def test_a_second_copy_of_a_message_never_lets_the_cursor_pass_unacknowledged_rows(
    world: World,
) -> None:
    """Issue 14 hole 1: keyed by id, a later copy took the first's place and the cursor
    jumped past the rows between, which nobody had acknowledged."""
    dev = Device(BOB, "d1", b"r")
    world.delivery.attach(dev)
    first, dup_id = world.message(BOB, 1)
    world.message(BOB, 2)
    world.message(BOB, 3)
    seq = world.store.allocate()  # message 1 again, at a later seq (as a late forward was)
    world.delivery.stored(BOB, seq, dup_id, b"env", b"body1")
    assert dev.cursor == first  # rows 2 and 3 are in flight: the cursor stays before them
    world.delivery.acked(dev, [dup_id])
    assert dev.cursor == first
    world.delivery.acked(dev, [(2).to_bytes(16, "big"), (3).to_bytes(16, "big")])
    assert dev.cursor == seq


class BatchNet(Net):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[bytes]] = []

    def send_many(self, dev: Device, envs: list[bytes], bodies: list[bytes]) -> SendResult:
        if self.result is SendResult.OK:
            self.batches.append(bodies)
        return self.result


def test_a_batching_device_gets_one_message_a_pass_and_a_full_queue_takes_them_back(
    tmp_path: Path,
) -> None:
    net = BatchNet()
    store = Store(tmp_path / "b.db")
    writer = Writer(tmp_path / "b.db", "normal", lambda: None)
    delivery = Delivery(store, net.send, send_many=net.send_many)
    dev = Device(BOB, "d1", b"r", batch=True)
    delivery.attach(dev)
    rows = [(store.allocate(), BOB, n.to_bytes(16, "big"), ALICE, b"e", b"b%d" % n, 0, "")
            for n in range(100)]  # fmt: skip
    writer.submit(Job(rows=rows))
    assert writer.done.get(timeout=10).error is None
    delivery.stored_many([(u, s, i, e, b, k) for s, u, i, _, e, b, _, k in rows])
    assert [len(b) for b in net.batches] == [64, 36] and net.sent == []
    assert dev.cursor == 0 and len(dev.inflight) == 100
    delivery.acked(dev, [r[2] for r in rows])
    assert dev.cursor == 100
    # a full queue: nothing is counted as sent, the cursor stays, the store refills it later
    more = [(store.allocate(), BOB, n.to_bytes(16, "big"), ALICE, b"e", b"m", 0, "")
            for n in range(100, 110)]  # fmt: skip
    writer.submit(Job(rows=more))
    assert writer.done.get(timeout=10).error is None
    net.result = SendResult.FULL
    delivery.stored_many([(u, s, i, e, b, k) for s, u, i, _, e, b, _, k in more])
    assert dev.inflight == {} and dev.sent_upto == 100 and dev in delivery.behind
    net.result = SendResult.OK
    delivery.pump(now=10**9)
    assert [len(b) for b in net.batches[2:]] == [10] and dev.sent_upto == 110
    writer.close()
    store.close()
