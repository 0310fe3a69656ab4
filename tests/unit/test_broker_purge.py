"""收回 at the broker (broker/purge.py): a purge deletes its sender's rows of the message in
every mailbox (relays' too) and blanks the body, never another sender's, never past the
window; deliveries in flight are dropped; copies that come later are not stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tits import wire
from tits.broker.delivery import Delivery, Device, SendResult
from tits.broker.purge import Purged, sent_by, valid
from tits.broker.relay import Fanout, Relay
from tits.broker.store import Job, Row, Store, Writer

ALICE, BOB, MAL = "A" * 40, "B" * 40, "C" * 40
RELAY_USER = "@" + "D" * 40 + "/0123456789abcdef"


def commit(writer: Writer, job: Job) -> Job:
    writer.submit(job)
    done = writer.done.get(timeout=10)
    assert done.error is None
    return done


def message(store: Store, msg_id: bytes, sender: str, users: list[str], ts: int) -> list[Row]:
    env = wire.encode(
        wire.Deliver(id=msg_id, sender=sender, to=[BOB], ts=ts * 1000)
    )  # one env and body object for all its rows, as the broker stores them
    body = b"ciphertext of " + msg_id
    return [(store.allocate(), u, msg_id, sender, env, body, ts, "") for u in users]


def count(store: Store, msg_id: bytes) -> tuple[int, int]:
    (rows,) = store.db.execute("SELECT count(*) FROM entries WHERE id=?", (msg_id,)).fetchone()
    (size,) = store.db.execute(
        "SELECT coalesce(sum(length(body)), 0) FROM bodies WHERE id=?", (msg_id,)
    ).fetchone()
    return int(rows), int(size)


def test_a_purge_takes_only_its_senders_rows_within_the_window(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    writer = Writer(path, "normal", lambda: None)
    now = int(time.time())
    x, y, old = wire.new_msg_id(), wire.new_msg_id(), wire.new_msg_id()
    rows = message(store, x, ALICE, [BOB, ALICE, RELAY_USER], now)
    rows += message(store, y, ALICE, [BOB, ALICE], now)
    rows += message(store, old, ALICE, [BOB], now - wire.PURGE_WINDOW_S - 60)
    commit(writer, Job(rows=rows))

    assert commit(writer, Job(purges=[(x, MAL), (x, "E" * 40)])).purged == 0  # not theirs
    assert count(store, x)[0] == 3
    done = commit(writer, Job(purges=[(x, ALICE), (old, ALICE)]))
    assert done.purged == 3  # Bob's, Alice's own (her other devices) and the relay's
    assert count(store, x) == (0, 0)  # the ciphertext is not kept either
    assert count(store, y)[0] == 2 and count(store, old)[0] == 1  # others, and past the window
    assert store.fetch(BOB, 0, 10)[0][1] == y  # delivery reads on past the hole
    writer.close()
    store.close()

    again = Store(path)  # purges are remembered across a restart
    purged = Purged(again.db)
    # (Mallory's is kept too: it blocks only copies of x that Mallory would send)
    assert purged.hit(x, ALICE) and not purged.hit(x, BOB) and not purged.hit(y, ALICE)
    again.close()


def test_garbage_purges_are_not_applied() -> None:
    now = time.time()
    own = wire.new_msg_id()
    assert valid(wire.new_msg_id(), ALICE, own, now)
    assert not valid(own, ALICE, own, now)  # itself
    assert not valid(b"\x01" * 5, ALICE, own, now)
    assert not valid(wire.new_msg_id(), "not a fingerprint", own, now)
    ancient = (1000).to_bytes(6, "big") + b"\x00" * 10
    assert not valid(ancient, ALICE, own, now)  # its id dates it past the window


def test_deliveries_in_flight_are_dropped_and_the_cursor_passes(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    sent: list[bytes] = []

    def send(dev: Device, env: bytes, body: bytes) -> SendResult:
        sent.append(body)
        return SendResult.OK

    delivery = Delivery(store, send, retry_s=0.0)
    dev = Device(BOB, "0123456789abcdef", b"r")
    delivery.attach(dev)
    x, y = wire.new_msg_id(), wire.new_msg_id()
    now = int(time.time())
    for seq, msg_id in ((1, x), (2, y)):
        env = wire.encode(wire.Deliver(id=msg_id, sender=ALICE, to=[BOB], ts=now))
        delivery.last.setdefault(BOB, 0)
        delivery.stored(BOB, seq, msg_id, env, b"body %d" % seq)
    assert dev.cursor == 0 and len(dev.inflight) == 2
    assert delivery.drop(x, lambda env: sent_by(env, MAL)) == 0  # not Mallory's to purge
    assert delivery.drop(x, lambda env: sent_by(env, ALICE)) == 1
    assert x not in dev.ids and dev.cursor == 1  # past a row that is gone
    sent.clear()
    delivery.retry(now=time.monotonic() + 10)
    assert sent == [b"body 2"]  # what is retried is only what was not taken back
    store.close()


class _Committer:
    def __init__(self) -> None:
        self.jobs: list[tuple[list[Row], Fanout, list[tuple[bytes, str]]]] = []

    def submit_relay(
        self, rows: list[Row], fanout: Fanout, done: Callable[[bool], None],
        purges: list[tuple[bytes, str]] | None = None,
    ) -> None:  # fmt: skip
        self.jobs.append((rows, fanout, purges or []))

    def register_device(self, user: str, device: str) -> None:
        pass


def forward(msg_id: bytes, sender: str, target: str, purge: bytes | None = None) -> wire.Forward:
    return wire.Forward(
        id=msg_id, origin="E" * 40, sender=sender, to=[BOB], target=target,
        deliver_to=[BOB], ts=int(time.time() * 1000), purge=purge,
    )  # fmt: skip


def test_a_relay_purges_and_never_keeps_a_later_copy(tmp_path: Path) -> None:
    me = "F" * 40
    store = Store(tmp_path / "m.db")
    delivery = Delivery(store, lambda d, e, b: SendResult.OK)
    committer = _Committer()
    relay = Relay(me, store, delivery, committer)
    x, unsend, other = wire.new_msg_id(), wire.new_msg_id(), wire.new_msg_id()
    # the unsend overtook its message (another route): for a user here, and passing through
    relay.cloud_forward_arrived("p1", forward(unsend, ALICE, me, purge=x), b"u")
    relay.cloud_forward_arrived("p1", forward(x, ALICE, me), b"secret")
    relay.cloud_forward_arrived("p2", forward(x, ALICE, "D" * 40), b"secret")
    relay.cloud_forward_arrived("p1", forward(other, ALICE, me), b"kept")
    # Mallory's "unsend" of Alice's message, and a purge that is no id, change nothing more
    relay.cloud_forward_arrived("p1", forward(wire.new_msg_id(), MAL, me, purge=other), b"m")
    relay.cloud_forward_arrived("p1", forward(wire.new_msg_id(), MAL, me, purge=b"xx"), b"m")
    relay._pending.acks.clear()  # (no cloud to acknowledge to in this test)
    relay.flush()
    (rows, fanout, purges) = committer.jobs[-1]
    stored = {(row[2], row[1]) for row in rows}
    assert (x, BOB) not in stored and not any(row[2] == x for row in rows)
    assert (unsend, BOB) in stored and (other, BOB) in stored
    assert len(fanout) == len(rows)
    assert purges == [(x, ALICE), (other, MAL)]  # the writer purges only Mallory's own rows
    envs = [wire.SERVER_DECODER.decode(row[4]) for row in rows if row[2] == unsend]
    assert envs[0].purge == x  # carried on in what this broker delivers or relays
    store.close()
