"""Your own devices see what you send: a message from Alice's device is delivered to her other
devices too (wherever in the cloud they log in, now or later; never back to the device it came
from), with `sender` Alice and `to` the original recipients, and stored once."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    People,
    connect,
    people_fixture,
    second_device,
    wait_for,
)
from tests.proc_cloud import ProcCloud
from tits import wire
from tits.client import Connection, Incoming

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cloud3() -> Iterator[ProcCloud]:
    cloud = ProcCloud(3)
    yield cloud
    cloud.close()


def collect(conn: Connection, n: int, timeout: float = 15) -> list[Incoming]:
    """Deliveries until `n` came (acknowledged as they come), or `timeout`."""
    got: list[Incoming] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        items = [x for x in conn.poll(0.2) if isinstance(x, Incoming)]
        conn.ack([x.envelope.id for x in items])
        got += items
    return got


def quiet(conn: Connection, wait: float = 1.5) -> list[Incoming]:
    """What arrives within `wait` (nothing, when nothing should)."""
    return collect(conn, 1_000_000, wait)


def send(conn: Connection, to: list[str], body: bytes, group: bytes | None = None) -> bytes:
    msg = wire.Send(id=wire.new_msg_id(), sender=conn.fingerprint, to=to, group=group)
    assert conn.send_and_wait([(msg, body)]) == [msg.id]
    return msg.id


def rows_and_bodies(cloud: ProcCloud, i: int, msg_id: bytes) -> tuple[list[str], int]:
    path = Path(cloud.local.data) / f"broker{i}" / "mailbox.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        users = [u for (u,) in db.execute("SELECT user FROM mail WHERE id=?", (msg_id,))]
        (bodies,) = db.execute(
            "SELECT count(DISTINCT ref) FROM mail WHERE id=?", (msg_id,)
        ).fetchone()
    finally:
        db.close()
    return users, bodies


def test_a_send_reaches_the_senders_other_devices_across_the_cloud(
    cloud3: ProcCloud, people: People
) -> None:
    alice, bob, mallory = people.alice, people.bob, people.mallory
    phone2 = second_device(alice, people.root / "alice2", "alice-tablet")
    phone3 = second_device(alice, people.root / "alice3", "alice-laptop")
    a1 = connect(alice, cloud3.url(0))
    a2 = connect(phone2, cloud3.url(1))  # Alice's second device, on another broker
    b = connect(bob, cloud3.url(0))
    m = connect(mallory, cloud3.url(2))
    try:
        wait_for(lambda: cloud3.brokers[1]["id"] in cloud3.where(0, alice.fingerprint), 15,
                 "broker 0 to see Alice's tablet at broker 1")  # fmt: skip
        one = send(a1, [bob.fingerprint], b"1:1 from the phone")
        gid = wire.new_group_id()
        group = send(a1, [bob.fingerprint, mallory.fingerprint], b"to the group", gid)

        got = collect(a2, 2)
        assert [x.envelope.id for x in got] == [one, group]
        first, second = (x.envelope for x in got)
        assert first.sender == alice.fingerprint and first.to == [bob.fingerprint]
        assert second.to == [bob.fingerprint, mallory.fingerprint] and second.group == gid
        assert first.device == a1.welcome.device  # type: ignore[union-attr]
        assert [x.body for x in got] == [b"1:1 from the phone", b"to the group"]
        assert [x.envelope.id for x in collect(b, 2)] == [one, group]
        assert [x.envelope.id for x in collect(m, 1)] == [group]
        assert quiet(a1) == []  # never back to the device it came from
        assert quiet(a2, 0.5) == []  # once

        # one body for the message at the sender's broker; a row per mailbox
        users, bodies = rows_and_bodies(cloud3, 0, group)
        assert sorted(users) == sorted([bob.fingerprint, mallory.fingerprint, alice.fingerprint])
        assert bodies == 1

        # a device that logs in later, at yet another broker, gets what Alice sent meanwhile
        a3 = connect(phone3, cloud3.url(2))
        try:
            got3 = collect(a3, 2, 20)
            assert sorted(x.envelope.id for x in got3) == sorted([one, group])
            assert all(x.envelope.sender == alice.fingerprint for x in got3)
        finally:
            a3.close()

        # and the other way: the tablet's message reaches the phone, not the tablet
        back = send(a2, [bob.fingerprint], b"from the tablet")
        assert [x.envelope.id for x in collect(a1, 1)] == [back]
        assert [x.envelope.id for x in collect(b, 1)] == [back]
        assert quiet(a2) == []
    finally:
        for c in (a1, a2, b, m):
            c.close()

    # the sending device logs in again: nothing of its own is pending or sent back
    again = connect(alice, cloud3.url(0))
    try:
        assert again.welcome is not None and again.welcome.pending == 0
        assert quiet(again) == []
    finally:
        again.close()
