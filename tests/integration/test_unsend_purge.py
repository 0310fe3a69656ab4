"""收回 reaches the cloud: an unsend purges the copies of its message still waiting in brokers
(mailboxes, relays) for devices that were offline, so such a device, logging in later, never
receives the ciphertext; it receives the unsend and keeps a tombstone. Only the sender's own
messages are purged; a malformed purge is refused with a typed error and the broker serves on.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    connect,
    people_fixture,
    second_device,
    wait_for,
)
from tests.proc_cloud import ProcCloud
from tits import wire
from tits.client import Connection, Incoming
from tits.client.blocking import Message, Messenger

pytestmark = pytest.mark.timeout(240)


def rows_of(mailbox: Path, msg_id: bytes) -> tuple[int, int]:
    """(mailbox rows, bytes of stored body) of message `msg_id` in a broker's mailbox."""
    db = sqlite3.connect(f"file:{mailbox}?mode=ro", uri=True)
    try:
        (rows,) = db.execute("SELECT count(*) FROM entries WHERE id=?", (msg_id,)).fetchone()
        (size,) = db.execute(
            "SELECT coalesce(sum(length(body)), 0) FROM bodies WHERE id=?", (msg_id,)
        ).fetchone()
    finally:
        db.close()
    return int(rows), int(size)


def collect(conn: Connection, seconds: float, ack: bool = True) -> list[Incoming]:
    """Every delivery within `seconds` (acknowledged as it comes, unless told not to)."""
    got: list[Incoming] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        items = [x for x in conn.poll(0.2) if isinstance(x, Incoming)]
        if ack and items:
            conn.ack([x.envelope.id for x in items])
        got += items
    return got


def until_unsend(conn: Connection, target: bytes, timeout: float = 30) -> list[Incoming]:
    """Deliveries (acknowledged) until the unsend of `target` came."""
    got: list[Incoming] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [x for x in conn.poll(0.2) if isinstance(x, Incoming)]
        conn.ack([x.envelope.id for x in items])
        got += items
        if any(x.envelope.purge == target for x in got):
            return got
    raise AssertionError("the unsend never reached the online device")


def drain(m: Messenger, timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []
    m.receive(got.append, timeout=timeout)
    return got


def test_an_offline_device_never_receives_what_was_taken_back(
    broker: BrokerProc, people: People
) -> None:
    a, b = people.alice, people.bob
    tablet = second_device(b, people.root / "bob2", "bob-tablet")
    mailbox = broker.data / "mailbox.db"
    phone = connect(b, broker.url)  # Bob's phone is online, his tablet is not
    alice = Messenger(a, broker=broker.url)
    try:
        kept = alice.send_text([b.fingerprint], "晚上見")
        secret = alice.send_text([b.fingerprint], "密碼是 1234")
        assert rows_of(mailbox, secret)[0] == 2  # Bob's mailbox and Alice's (her other devices)
        alice.unsend(secret)
        got = until_unsend(phone, secret)
        assert secret in {x.envelope.id for x in got}  # the phone had it: it drops it itself
        unsend_id = next(x.envelope.id for x in got if x.envelope.purge == secret)
        # gone from the broker: no row, and the ciphertext blanked on disk
        assert rows_of(mailbox, secret) == (0, 0)
        assert rows_of(mailbox, kept)[0] == 2
        wait_for(lambda: broker.status()["counters"].get("purged", 0) >= 2, 10, "counted")

        raw = connect(tablet, broker.url)  # the tablet comes online: what reaches its socket
        try:
            delivered = collect(raw, 3.0, ack=False)
        finally:
            raw.close()
        ids = [x.envelope.id for x in delivered]
        assert secret not in ids and kept in ids and unsend_id in ids
        assert all(secret not in x.body for x in delivered)

        bob_tablet = Messenger(tablet, broker=broker.url)  # and what its store keeps
        try:
            texts = [m.text for m in drain(bob_tablet)]
            assert texts == ["晚上見"]
            placeholder = bob_tablet.store.message(secret)  # "Alice 已收回訊息", no text
            assert placeholder is not None and placeholder.unsent and placeholder.text is None
            assert placeholder.sender == a.fingerprint
            assert bob_tablet.store.tombstoned(secret, a.fingerprint)
        finally:
            bob_tablet.close()
    finally:
        alice.close()
        phone.close()


def test_only_the_sender_purges_and_garbage_is_refused(broker: BrokerProc, people: People) -> None:
    a, b, mal = people.alice, people.bob, people.mallory
    mailbox = broker.data / "mailbox.db"
    alice = connect(a, broker.url)
    mallory = connect(mal, broker.url)
    try:
        theirs = wire.Send(id=wire.new_msg_id(), sender=a.fingerprint, to=[b.fingerprint])
        assert alice.send_and_wait([(theirs, b"sealed")]) == [theirs.id]
        # Mallory names Alice's message in an unsend of her own: stored, purges nothing
        forged = wire.Send(
            id=wire.new_msg_id(), sender=mal.fingerprint, to=[b.fingerprint], purge=theirs.id
        )
        assert mallory.send_and_wait([(forged, b"sealed")]) == [forged.id]
        rows, size = rows_of(mailbox, theirs.id)
        assert rows == 2 and size > 0
        # a purge that is not a message id: the whole Send is refused, typed
        bad_send = wire.Send(id=wire.new_msg_id(), sender=mal.fingerprint, to=[b.fingerprint])
        bad_send.purge = b"\x01" * 5
        mallory.send(bad_send, b"x")
        err = wait_error(mallory)
        assert err.code == "bad-frame" and "purge" in err.message
        # an unsend naming itself
        selfish = wire.Send(id=wire.new_msg_id(), sender=mal.fingerprint, to=[b.fingerprint])
        selfish.purge = selfish.id
        mallory.send(selfish, b"x")
        err = wait_error(mallory)
        assert err.code == "bad-request" and err.ref == selfish.id
        # the broker serves on: Bob's device gets Alice's message and Mallory's two
        bob = connect(b, broker.url)
        try:
            ids = {x.envelope.id for x in collect(bob, 3.0)}
        finally:
            bob.close()
        assert theirs.id in ids and forged.id in ids
        assert broker.status()["counters"].get("purged", 0) == 0
    finally:
        alice.close()
        mallory.close()


def wait_error(conn: Connection, timeout: float = 10) -> wire.Error:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = conn.recv(0.5)
        if isinstance(msg, wire.Error):
            return msg
    raise AssertionError("no error came")


@pytest.fixture(scope="module")
def cloud3() -> Iterator[ProcCloud]:
    cloud = ProcCloud(3)
    yield cloud
    cloud.close()


def test_across_the_cloud_the_waiting_copies_are_purged(cloud3: ProcCloud, people: People) -> None:
    """Alice at broker 0, Bob's phone at broker 2 (so the text is stored at 0 and forwarded to
    2), his tablet offline; it logs in at broker 1 after the unsend, and both 0 and 2 would
    send it what they hold for Bob."""
    a, b = people.alice, people.bob
    tablet = second_device(b, people.root / "bob2", "bob-tablet")
    boxes = [Path(cloud3.local.data) / f"broker{i}" / "mailbox.db" for i in range(3)]
    phone = connect(b, cloud3.url(2))
    wait_for(lambda: cloud3.where(0, b.fingerprint) != set(), 30, "Bob's presence at broker 0")
    alice = Messenger(a, broker=cloud3.url(0))
    try:
        kept = alice.send_text([b.fingerprint], "晚上見")
        secret = alice.send_text([b.fingerprint], "密碼是 1234")
        first = until_unsend_or(phone, secret)
        assert secret in {x.envelope.id for x in first}
        assert rows_of(boxes[2], secret)[0] >= 1  # forwarded and stored for Bob at 2
        alice.unsend(secret)
        until_unsend(phone, secret)
        for i in (0, 2):
            wait_for(
                partial(lambda n: rows_of(boxes[n], secret) == (0, 0), i), 20, f"purged at {i}"
            )
        assert rows_of(boxes[2], kept)[0] >= 1
        for i in (0, 2):  # (the status page is refreshed twice a second)
            wait_for(partial(lambda n: cloud3.counters(n).get("purged", 0) >= 1, i), 10,
                     f"counted at {i}")  # fmt: skip

        raw = connect(tablet, cloud3.url(1))
        try:
            settle = (raw.welcome.settle_ms if raw.welcome else 0) / 1000
            delivered = collect(raw, max(6.0, settle + 4.0))
        finally:
            raw.close()
        ids = [x.envelope.id for x in delivered]
        assert kept in ids and any(x.envelope.purge == secret for x in delivered)
        assert secret not in ids
        assert all(rows_of(box, secret)[0] == 0 for box in boxes)
    finally:
        alice.close()
        phone.close()


def until_unsend_or(conn: Connection, msg_id: bytes, timeout: float = 30) -> list[Incoming]:
    """Deliveries (acknowledged) until `msg_id` came."""
    got: list[Incoming] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [x for x in conn.poll(0.2) if isinstance(x, Incoming)]
        conn.ack([x.envelope.id for x in items])
        got += items
        if msg_id in {x.envelope.id for x in got}:
            return got
    raise AssertionError("the message never reached the online device")
