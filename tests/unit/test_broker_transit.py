"""Forwards passing through a relay from memory: sent on at once, acknowledged upstream only
when the next hop acknowledges, and handed back for storing when it does not."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tits import wire
from tits.broker.cloud import Route
from tits.broker.delivery import Delivery, SendResult
from tits.broker.relay import Relay
from tits.broker.store import Store
from tits.broker.transit import ACK_WAIT_S, Transit

from .test_broker_relay import ME, PREV, TARGET, Committer, forward

NEXT = "D" * 40  # the hop after this relay


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Wire:
    """The two sides of a relay: what went on downstream, what went back upstream."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.sent: list[wire.Forward] = []
        self.acks: list[tuple[str, bytes, bytes]] = []

    def send_on(self, fwd: wire.Forward, body: bytes) -> str | None:
        if self.accept:
            self.sent.append(fwd)
        return NEXT if self.accept else None

    def ack(self, peer: str, msg_id: bytes, token: bytes) -> None:
        self.acks.append((peer, msg_id, token))


def make(limit: int = 100) -> tuple[Transit, Wire, Clock]:
    w, clock = Wire(), Clock()
    return Transit(w.send_on, w.ack, limit=limit, clock=clock), w, clock


def test_passed_on_with_one_hop_less_and_acknowledged_upstream_when_downstream_is() -> None:
    transit, w, _ = make()
    assert transit.pass_on(PREV, forward(token=b"upstream"), b"body")
    (out,) = w.sent
    assert out.hops == 4 and out.token != b"upstream" and Transit.owns(out.token)
    assert w.acks == []  # nothing is acknowledged before the next hop does
    transit.acked(PREV, out.id, out.token)  # not from the hop it went to: does not count
    assert w.acks == []
    transit.acked(NEXT, out.id, out.token)
    assert w.acks == [(PREV, out.id, b"upstream")] and transit.passed == 1 and not len(transit)
    transit.acked(NEXT, out.id, out.token)  # a repeated acknowledgement
    assert len(w.acks) == 1


def test_an_acknowledgement_must_name_the_message_it_was_given_for() -> None:
    transit, w, _ = make()
    transit.pass_on(PREV, forward(), b"body")
    token = w.sent[0].token
    transit.acked(NEXT, b"x" * 16, token)  # another message's id with this token
    transit.acked(NEXT, w.sent[0].id, token[:-1] + b"\x99")  # a token never handed out
    assert w.acks == [] and len(transit) == 1


def test_what_cannot_go_on_now_is_left_to_the_caller() -> None:
    transit, w, _ = make(limit=1)
    w.accept = False  # no route, or the next hop's queue is full
    assert not transit.pass_on(PREV, forward(), b"body")
    w.accept = True
    assert not transit.pass_on(PREV, forward(hops=0), b"body")  # out of hops
    assert transit.pass_on(PREV, forward(), b"body")
    assert not transit.pass_on(PREV, forward(id=b"j" * 16), b"body")  # the table is full
    assert len(w.sent) == 1


def test_unacknowledged_forwards_come_back_oldest_first_once_overdue() -> None:
    transit, w, clock = make()
    transit.pass_on(PREV, forward(id=b"1" * 16), b"one")
    clock.now += 1.0
    transit.pass_on(PREV, forward(id=b"2" * 16), b"two")
    clock.now += ACK_WAIT_S - 0.5
    assert [p.fwd.id for p in transit.overdue()] == [b"1" * 16]
    assert len(transit) == 1
    first = w.sent[0]
    transit.acked(NEXT, first.id, first.token)  # its late acknowledgement: ours to keep now
    assert w.acks == []
    clock.now += 1.0
    (late,) = transit.overdue()
    assert late.upstream == PREV and late.body == b"two" and late.fwd.hops == 5


class FakeCloud:
    def __init__(self) -> None:
        self.route = Route.OK
        self.sent: list[wire.Forward] = []
        self.acks: list[tuple[str, bytes, bytes]] = []

    def send_forward(self, fwd: wire.Forward, body: bytes) -> Route:
        if self.route is Route.OK:
            self.sent.append(fwd)
        return self.route

    def forward_via(self, fwd: wire.Forward, body: bytes) -> str | None:
        return NEXT if self.send_forward(fwd, body) is Route.OK else None

    def ack(self, peer: str, msg_id: bytes, token: bytes) -> None:
        self.acks.append((peer, msg_id, token))

    def where(self, fp: str) -> dict[str, list[str]]:
        return {}


def relay_with(tmp_path: Path) -> tuple[Relay, Committer, FakeCloud]:
    store = Store(tmp_path / "mail.db")
    committer, cloud = Committer(), FakeCloud()
    relay = Relay(ME, store, Delivery(store, lambda dev, env, body: SendResult.OK), committer)
    relay.start(cloud)  # type: ignore[arg-type]
    return relay, committer, cloud


def test_a_relay_stores_nothing_on_the_way_and_acknowledges_when_the_next_hop_does(
    tmp_path: Path,
) -> None:
    relay, committer, cloud = relay_with(tmp_path)
    relay.cloud_forward_arrived(PREV, forward(), b"body")
    relay.flush()
    assert committer.rows == [] and cloud.acks == []
    (out,) = cloud.sent
    assert out.target == TARGET
    relay.cloud_forward_acked(NEXT, out.id, out.token)
    assert cloud.acks == [(PREV, out.id, b"t")]


def test_a_relay_stores_what_cannot_go_on_or_is_not_acknowledged_in_time(tmp_path: Path) -> None:
    relay, committer, cloud = relay_with(tmp_path)
    cloud.route = Route.NO_ROUTE
    relay.cloud_forward_arrived(PREV, forward(id=b"1" * 16), b"body")
    relay.flush()
    assert committer.rows[0][1].startswith("@" + TARGET + "/")  # kept, then acknowledged
    assert cloud.acks == [(PREV, b"1" * 16, b"t")]
    cloud.route = Route.OK
    assert relay.transit is not None
    relay.transit._clock = lambda: 0.0  # sent long ago: its next hop never answered
    relay.cloud_forward_arrived(PREV, forward(id=b"2" * 16, token=b"u2"), b"body")
    relay.transit._clock = lambda: 10.0
    relay.tick()
    assert len(committer.rows) == 2 and committer.rows[1][2] == b"2" * 16
    stored = wire.PEER_DECODER.decode(committer.rows[1][4])
    assert isinstance(stored, wire.Forward) and stored.hops == 4
    assert cloud.acks[-1] == (PREV, b"2" * 16, b"u2")
    assert msgspec.structs.replace(stored, hops=5, token=b"u2") == forward(
        id=b"2" * 16, token=b"u2"
    )


def test_bodies_in_memory_are_bounded_in_bytes_too() -> None:
    w = Wire()
    transit = Transit(w.send_on, w.ack, limit_bytes=1000)
    assert transit.pass_on(PREV, forward(id=b"1" * 16), b"x" * 600)
    assert transit.pass_on(PREV, forward(id=b"2" * 16), b"x" * 600)  # under the bound before
    assert not transit.pass_on(PREV, forward(id=b"3" * 16), b"x")  # over it now: stored
    first = w.sent[0]
    transit.acked(NEXT, first.id, first.token)
    assert transit.pass_on(PREV, forward(id=b"3" * 16), b"x")  # room again


def test_when_a_link_goes_down_its_forwards_come_back_at_once() -> None:
    sent_to: list[str] = []
    hops = iter(["D" * 40, "E" * 40, "D" * 40])

    def send_on(fwd: wire.Forward, body: bytes) -> str:
        sent_to.append(next(hops))
        return sent_to[-1]

    w = Wire()
    transit = Transit(send_on, w.ack)
    for n in (1, 2, 3):
        transit.pass_on(PREV, forward(id=bytes([n]) * 16), b"x" * 10)
    lost = transit.lost("D" * 40)
    assert sorted(p.fwd.id[0] for p in lost) == [1, 3] and len(transit) == 1
    assert transit.lost("D" * 40) == []
    assert transit._bytes == 10  # only the one still passing over E


def test_a_relay_keeps_what_was_passing_over_a_link_that_went_down(tmp_path: Path) -> None:
    relay, committer, cloud = relay_with(tmp_path)
    relay.cloud_forward_arrived(PREV, forward(token=b"up"), b"body")
    assert committer.rows == [] and len(cloud.sent) == 1
    relay.cloud_link_down(NEXT)
    assert len(committer.rows) == 1  # kept: this broker retries it from now on
    assert cloud.acks == [(PREV, b"i" * 16, b"up")]
    out = cloud.sent[0]
    relay.cloud_forward_acked(NEXT, out.id, out.token)  # the late ack changes nothing
    assert len(cloud.acks) == 1
