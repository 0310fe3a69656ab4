"""The login machine (`tits.client.link.Link`) without sockets: fed frames, the proof and the
clock, it must answer with exactly these actions (as magic-wormhole's test_machines.py does)."""

from __future__ import annotations

import os

import pytest

from tits import wire
from tits.client import Incoming
from tits.client.link import (
    Acked,
    BrokerRefusal,
    Delivered,
    Down,
    Link,
    Prove,
    State,
    Transmit,
    Up,
)

ME = "A" * 40
OTHER = "B" * 40
BROKER = "C" * 40
DEVICE = "0123456789abcdef"
T0 = 1000.0


def enc(msg: object) -> list[bytes]:
    return [wire.encode(msg)]


def challenge(broker: str = BROKER) -> wire.Challenge:
    return wire.Challenge(nonce=os.urandom(32), broker=broker, expires=1 << 40, key=b"")


def welcome(fp: str = ME, broker: str = BROKER, pending: int = 0) -> wire.Welcome:
    return wire.Welcome(fingerprint=fp, device=DEVICE, broker=broker, pending=pending)


def a_login() -> wire.Login:
    return wire.Login(blob=b"signed and sealed", fingerprint=ME)


def ready_link(now: float = T0) -> tuple[Link, wire.Welcome]:
    link = Link(ME, answer_s=4.0)
    link.start(now)
    link.received(enc(challenge()), now + 0.1)
    link.proved(a_login(), now + 0.2)
    w = welcome()
    assert link.received(enc(w), now + 0.3) == [Up(w)]
    return link, w


def test_happy_path_hello_challenge_prove_login_welcome() -> None:
    link = Link(ME, answer_s=4.0)
    assert link.state is State.IDLE
    assert link.start(T0) == [Transmit(wire.Hello())]
    assert link.state is State.HELLO

    ch = challenge()
    assert link.received(enc(ch), T0 + 0.1) == [Prove(ch)]
    assert link.state is State.PROVING and link.broker == BROKER

    login = a_login()
    assert link.proved(login, T0 + 0.2) == [Transmit(login)]
    assert link.state is State.LOGIN

    w = welcome(pending=3)
    assert link.received(enc(w), T0 + 0.3) == [Up(w)]
    assert link.state is State.READY and link.welcome == w

    # once up: a delivery, an acknowledgement, our own frames on the wire
    deliver = wire.Deliver(id=b"\x01" * 16, sender=OTHER, to=[ME], ts=1)
    assert link.received([wire.encode(deliver), b"body"], T0 + 1) == [
        Delivered([Incoming(deliver, b"body")])
    ]
    acc = wire.Accepted(id=b"\x02" * 16, ids=[b"\x03" * 16])
    assert link.received(enc(acc), T0 + 1) == [Acked([b"\x02" * 16, b"\x03" * 16])]
    rec = wire.Received(ids=[b"\x01" * 16])
    assert link.transmit(rec) == [Transmit(rec)]
    assert link.close() == [Transmit(wire.Bye())]
    assert link.state is State.CLOSED


def test_nothing_before_hello_and_frames_out_of_turn_are_ignored() -> None:
    link = Link(ME)
    assert link.received(enc(challenge()), T0) == []  # IDLE: not asked yet
    link.start(T0)
    assert link.received(enc(welcome()), T0) == []  # a welcome before any challenge
    assert link.received([b"\xc1 not msgpack"], T0) == []  # garbage: nothing to act on
    assert link.received([], T0) == []
    assert link.proved(a_login(), T0) == []  # no challenge to prove
    assert link.transmit(wire.Received(ids=[])) == []  # not up: the outbox keeps it
    assert link.state is State.HELLO


def test_a_silent_broker_is_unreachable_after_answer_s() -> None:
    link = Link(ME, answer_s=4.0)
    link.start(T0)
    assert link.tick(T0 + 3.9) == []
    assert link.tick(T0 + 4.0) == [Down("unreachable", "no answer in 4 s")]
    assert link.state is State.CLOSED
    assert link.tick(T0 + 100) == []  # said once
    assert link.received(enc(challenge()), T0 + 5) == []  # too late: closed


def test_silent_after_the_login_is_sent_is_unreachable_too() -> None:
    link = Link(ME, answer_s=2.0, prove_s=60.0)
    link.start(T0)
    link.received(enc(challenge()), T0 + 1)
    assert link.tick(T0 + 30) == []  # gpg may take its time: prove_s, not answer_s
    assert link.tick(T0 + 61) == [Down("unreachable", "no answer in 60 s")]

    link = Link(ME, answer_s=2.0)
    link.start(T0)
    link.received(enc(challenge()), T0 + 1)
    link.proved(a_login(), T0 + 1.5)
    assert link.tick(T0 + 3.4) == []
    assert link.tick(T0 + 3.5) == [Down("unreachable", "no answer in 2 s")]


def test_a_refused_login_is_down_refused_with_the_brokers_code() -> None:
    link = Link(ME)
    link.start(T0)
    link.received(enc(challenge()), T0 + 0.1)
    link.proved(a_login(), T0 + 0.2)
    err = wire.Error(code="login-refused", message="the signature is not Alice's")
    assert link.received(enc(err), T0 + 0.3) == [
        Down("refused", "the signature is not Alice's", "login-refused")
    ]
    assert link.state is State.CLOSED
    assert link.tick(T0 + 100) == []


def test_a_proof_that_cannot_be_built_is_refused() -> None:
    link = Link(ME)
    link.start(T0)
    link.received(enc(challenge()), T0)
    assert link.prove_failed("the broker's key does not match") == [
        Down("refused", "the broker's key does not match", "login-refused")
    ]
    assert link.state is State.CLOSED


def test_not_logged_in_while_ready_logs_in_again() -> None:
    link, _ = ready_link()
    err = wire.Error(code="not-logged-in", message="log in first")
    assert link.received(enc(err), T0 + 5) == [Transmit(wire.Hello())]
    assert link.state is State.HELLO and link.welcome is None
    # the new login runs its course on the same socket
    ch = challenge()
    assert link.received(enc(ch), T0 + 5.1) == [Prove(ch)]
    login = a_login()
    assert link.proved(login, T0 + 5.2) == [Transmit(login)]
    w = welcome()
    assert link.received(enc(w), T0 + 5.3) == [Up(w)]
    # and a relogin that gets no answer is unreachable after answer_s from the relogin
    link.received(enc(err), T0 + 10)
    assert link.tick(T0 + 13.9) == []
    assert link.tick(T0 + 14.0) == [Down("unreachable", "no answer in 4 s")]


def test_a_pong_without_a_user_logs_in_again_and_with_one_does_not() -> None:
    link, _ = ready_link()
    assert link.received(enc(wire.Pong(t=1, user=ME)), T0 + 1) == []
    assert link.state is State.READY
    assert link.received(enc(wire.Pong(t=2)), T0 + 2) == [Transmit(wire.Hello())]
    assert link.state is State.HELLO and link.welcome is None


def test_a_welcome_for_someone_else_is_down() -> None:
    link = Link(ME)
    link.start(T0)
    link.received(enc(challenge()), T0)
    link.proved(a_login(), T0)
    assert link.received(enc(welcome(fp=OTHER)), T0 + 0.1) == [
        Down("refused", "the broker welcomed someone else", "login-refused")
    ]
    assert link.state is State.CLOSED and link.welcome is None


def test_a_welcome_from_another_broker_than_the_challenge_is_down() -> None:
    link = Link(ME)
    link.start(T0)
    link.received(enc(challenge(BROKER)), T0)
    link.proved(a_login(), T0)
    assert link.received(enc(welcome(broker=OTHER)), T0 + 0.1) == [
        Down("refused", "the broker welcomed someone else", "login-refused")
    ]


def test_ready_pings_when_idle_and_is_down_when_the_broker_falls_silent() -> None:
    link, _ = ready_link(T0)  # Up at T0 + 0.3
    assert link.tick(T0 + 10) == []
    out = link.tick(T0 + 15.5)
    assert len(out) == 1 and isinstance(out[0], Transmit) and isinstance(out[0].msg, wire.Ping)
    assert out[0].msg.t == int((T0 + 15.5) * 1000)
    assert link.tick(T0 + 16) == []  # once per ping_s
    # heard from: the silence restarts
    link.received(enc(wire.Pong(t=1, user=ME)), T0 + 16)
    later = T0 + 34.9  # 18.9 s silent: a ping, not yet down
    assert link.tick(later) == [Transmit(wire.Ping(t=int(later * 1000)))]
    assert link.tick(T0 + 35) == [Down("unreachable", "silent for 19 s")]
    assert link.state is State.CLOSED


def test_errors_while_ready_are_refusals_of_what_we_sent() -> None:
    link, _ = ready_link()
    ref = b"\x09" * 16
    err = wire.Error(code="rate-limited", message="slow down", ref=ref)
    assert link.received(enc(err), T0 + 1) == [BrokerRefusal(ref, "rate-limited", "slow down")]
    bare = wire.Error(code="too-big")
    assert link.received(enc(bare), T0 + 1) == [BrokerRefusal(None, "too-big", "too-big")]
    assert link.state is State.READY


def test_a_delivery_without_its_body_is_dropped() -> None:
    link, _ = ready_link()
    deliver = wire.Deliver(id=b"\x01" * 16, sender=OTHER, to=[ME], ts=1)
    assert link.received([wire.encode(deliver)], T0 + 1) == []
    assert link.received([wire.encode(deliver), b"a", b"b"], T0 + 1) == []


def test_a_batch_of_deliveries_is_one_delivered_in_order_and_a_short_one_dropped() -> None:
    """The client logs in with `batch`: a `Deliveries` is its envelopes, then one body each."""
    link, _ = ready_link()
    items = [wire.Deliver(id=bytes([n]) * 16, sender=OTHER, to=[ME], ts=n) for n in (1, 2, 3)]
    frames = [wire.encode(wire.Deliveries(items=items)), b"b1", b"b2", b"b3"]
    assert link.received(frames, T0 + 1) == [
        Delivered([Incoming(d, b) for d, b in zip(items, frames[1:], strict=True)])
    ]
    assert link.received(frames[:3], T0 + 1) == []  # a body missing: none of them is taken


@pytest.mark.parametrize("code", ["version", "busy", "login-unavailable"])
def test_an_error_before_ready_closes_with_its_code(code: str) -> None:
    link = Link(ME)
    link.start(T0)
    assert link.received(enc(wire.Error(code=code)), T0) == [Down("refused", code, code)]  # type: ignore[arg-type]
