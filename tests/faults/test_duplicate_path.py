"""Issue 14 hole 1: a message that reaches one broker twice (forwarded, then resent there by a
client failing over) is one row of its mailbox, and the receiver's cursor never passes rows
nobody acknowledged. On main, broker 1 held #1 twice; after one login that dropped before
acknowledging, Bob never got #2 and #3."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_fixtures import People, connect, people_fixture, wait_for  # noqa: F401
from tests.integration.test_broker_own_devices import collect, quiet
from tests.proc_cloud import ProcCloud
from tits import wire
from tits.client import Incoming

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cloud3() -> Iterator[ProcCloud]:
    cloud = ProcCloud(3)
    yield cloud
    cloud.close()


def unacked(conn, n: int) -> list[bytes]:  # noqa: ANN001
    got: list[Incoming] = []
    for _ in range(100):
        got += [x for x in conn.poll(0.2) if isinstance(x, Incoming)]
        if len(got) >= n:
            break
    return [x.envelope.id for x in got]


def test_a_copy_by_another_path_is_one_row_and_nothing_is_skipped(
    cloud3: ProcCloud, people: People
) -> None:
    alice, bob = people.alice, people.bob
    b = connect(bob, cloud3.url(1))
    wait_for(lambda: cloud3.brokers[1]["id"] in cloud3.where(0, bob.fingerprint), 15,
             "broker 0 to see Bob at broker 1")  # fmt: skip
    a = connect(alice, cloud3.url(0))
    sends = [
        wire.Send(id=wire.new_msg_id(), sender=alice.fingerprint, to=[bob.fingerprint])
        for _ in range(3)
    ]
    ids = [s.id for s in sends]
    assert a.send_and_wait([(s, b"#%d" % k) for k, s in enumerate(sends, 1)]) == ids
    assert unacked(b, 3) == ids  # forwarded and delivered, never acknowledged
    b.close()
    a.close()

    # Alice's client fails over to broker 1 and sends #1 again there
    a1 = connect(alice, cloud3.url(1))
    assert a1.send_and_wait([(sends[0], b"#1")]) == [ids[0]]
    a1.close()

    path = Path(cloud3.local.data) / "broker1" / "mailbox.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (copies,) = db.execute(
        "SELECT count(*) FROM mail WHERE id=? AND user=?", (ids[0], bob.fingerprint)
    ).fetchone()
    db.close()
    assert copies == 1

    # Bob logs in, drops before acknowledging anything, logs in again
    b2 = connect(bob, cloud3.url(1))
    assert sorted(unacked(b2, 3)) == sorted(ids)
    b2.close(bye=False)
    b3 = connect(bob, cloud3.url(1))
    try:
        got = [x.envelope.id for x in collect(b3, 3)]
        assert sorted(set(got)) == sorted(ids)
        assert quiet(b3, 1.0) == []
    finally:
        b3.close()
