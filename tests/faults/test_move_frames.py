"""Issue 14 hole 2: a user who moves to another broker is sent the mail they have not read,
not their whole mailbox again. On main, a relay device's cursor started at 0: Bob, having read
everything at broker 0, was sent all of it again at broker 1 (2,002 deliveries, 0 new)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker_fixtures import People, connect, people_fixture, wait_for  # noqa: F401
from tests.integration.test_broker_own_devices import collect, quiet
from tests.proc_cloud import ProcCloud
from tits import wire

pytestmark = pytest.mark.timeout(180)
N = 300


@pytest.fixture(scope="module")
def cloud3() -> Iterator[ProcCloud]:
    cloud = ProcCloud(3)
    yield cloud
    cloud.close()


def test_a_move_costs_frames_in_proportion_to_the_unread_mail(
    cloud3: ProcCloud, people: People
) -> None:
    alice, bob = people.alice, people.bob
    a = connect(alice, cloud3.url(0))
    b = connect(bob, cloud3.url(0))
    sends = [
        (wire.Send(id=wire.new_msg_id(), sender=alice.fingerprint, to=[bob.fingerprint]), b"m")
        for _ in range(N)
    ]
    a.send_and_wait(sends)
    assert len(collect(b, N, 30)) == N  # read (and acknowledged) at broker 0
    b.close()
    before = cloud3.counters(0).get("forwarded", 0)

    moved = connect(bob, cloud3.url(1))  # a broker Bob has never used
    try:
        wait_for(lambda: cloud3.brokers[1]["id"] in cloud3.where(0, bob.fingerprint), 15,
                 "broker 0 to see Bob at broker 1")  # fmt: skip
        assert quiet(moved, 3.0) == []  # nothing he has read comes again
        unread = [
            wire.Send(id=wire.new_msg_id(), sender=alice.fingerprint, to=[bob.fingerprint])
            for _ in range(5)
        ]
        a.send_and_wait([(s, b"new") for s in unread])
        got = collect(moved, 5, 20)
        assert [x.envelope.id for x in got] == [s.id for s in unread]
        assert quiet(moved, 1.0) == []
        # frames crossing the cloud: the unread mail (and Alice's own copies, which have no
        # device elsewhere to go to), not the mailbox
        assert cloud3.counters(0).get("forwarded", 0) - before <= 5 + 5
    finally:
        moved.close()
        a.close()
