"""Hostile frames: typed errors or a dropped connection, and the broker keeps serving others."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    RawClient,
    broker_fixture,
    connect,
    people_fixture,
    short_tmpdir,
)
from tits import wire
from tits.broker.config import Limits
from tits.client.blocking import Message, Messenger


def still_serves(broker: BrokerProc, people: People, text: str = "still here") -> None:
    alice = Messenger(people.alice, broker=broker.url)
    alice.send_text([people.bob.fingerprint], text)
    alice.close()
    bob = Messenger(people.bob, broker=broker.url)
    try:
        got: list[Message] = []
        bob.receive(got.append, timeout=30)  # drained at once; the margin is for a loaded machine
        assert [(m.text, m.verified) for m in got][-1] == (text, True)
    finally:
        bob.close()


def test_bad_frames_get_typed_errors(broker: BrokerProc, people: People) -> None:
    with RawClient(broker.url) as raw:
        raw.send(os.urandom(200))
        assert raw.expect(wire.Error).code == "bad-frame"
        raw.send(msgspec.msgpack.encode({"k": "launch-missiles", "v": 1}))
        assert raw.expect(wire.Error).code == "bad-frame"
        raw.send(wire.encode(wire.Hello()), b"extra", b"frames")
        err = raw.expect(wire.Error)
        assert err.code == "bad-frame" and "frames" in err.message
        raw.send(b"")
        assert raw.expect(wire.Error).code == "bad-frame"
        # a server kind sent to the server
        raw.send(wire.encode(wire.Pong(t=0)))
        assert raw.expect(wire.Error).code in ("bad-frame", "bad-kind")
        # commands before login
        send = wire.Send(id=wire.new_msg_id(), sender=people.alice.fingerprint, to=["A" * 40])
        raw.send(wire.encode(send), b"body")
        err = raw.expect(wire.Error)
        assert err.code == "not-logged-in" and err.ref == send.id
        raw.send(wire.encode(wire.Received(ids=[send.id])))
        assert raw.expect(wire.Error).code == "not-logged-in"
        raw.send(wire.encode(wire.Login(blob=b"x", fingerprint=people.alice.fingerprint)))
        assert raw.expect(wire.Error).code == "no-challenge"
        # a malformed field: a recipient that is not a fingerprint
        raw.send(msgspec.msgpack.encode({"k": "send", "id": b"1" * 16, "to": ["bob"]}), b"b")
        err = raw.expect(wire.Error)
        assert err.code == "bad-frame" and "$.to" in err.message
    # a logged-in client: Send without a body, or with one too many frames
    conn = connect(people.alice, broker.url)
    send = wire.Send(id=wire.new_msg_id(), sender=people.alice.fingerprint, to=["B" * 40])
    conn.sock.send_multipart([wire.encode(send)])
    err = conn.recv(5)
    assert isinstance(err, wire.Error) and err.code == "bad-frame"
    conn.close()
    still_serves(broker, people)


def test_another_protocol_version_gets_a_version_error(broker: BrokerProc, people: People) -> None:
    with RawClient(broker.url) as raw:
        for _ in range(40):  # more than the garbage budget: a newer client is not banned
            raw.send(msgspec.msgpack.encode({"k": "hello", "v": 2}))
            err = raw.expect(wire.Error)
            assert err.code in ("version", "rate-limited")
        raw.send_msg(wire.Hello())
        assert isinstance(raw.recv_msg(), wire.Challenge | wire.Error)
    with RawClient(broker.url) as raw:
        raw.send(msgspec.msgpack.encode({"k": "send", "v": 9, "id": "new shape"}), b"body")
        err = raw.expect(wire.Error)
        assert err.code == "version" and "protocol version 9" in err.message
    still_serves(broker, people)


def test_oversized_frame_drops_only_that_connection(broker: BrokerProc, people: People) -> None:
    with RawClient(broker.url) as raw:
        raw.send_msg(wire.Hello())
        raw.expect(wire.Challenge)
        raw.send(wire.encode(wire.Ping(t=0)), b"\0" * (Limits().max_frame + 1))
        # libzmq closes a connection whose frame is over ZMQ_MAXMSGSIZE: no answer comes
        assert raw.recv(0.5) is None
    still_serves(broker, people)


def test_a_body_over_the_limit_is_refused_though_a_chunk_frame_is_bigger(
    broker: BrokerProc, people: People
) -> None:
    """The socket lets a 4 MiB media chunk in; a message body is still held to 1 MiB, so no
    mailbox stores more per message than before the chunks grew."""
    assert Limits().max_frame > wire.MAX_BODY_FRAME + (1 << 20)
    conn = connect(people.alice, broker.url)
    try:
        send = wire.Send(id=wire.new_msg_id(), sender=people.alice.fingerprint,
                         to=[people.bob.fingerprint])  # fmt: skip
        conn.sock.send_multipart([wire.encode(send), b"\0" * (wire.MAX_BODY_FRAME + 1)])
        err = conn.recv(10)
        assert isinstance(err, wire.Error) and err.code == "too-big" and err.ref == send.id
    finally:
        conn.close()
    alice = Messenger(people.alice, broker=broker.url)
    alice.send_text([people.bob.fingerprint], "after the big one")
    alice.close()
    with Messenger(people.bob, broker=broker.url) as bob:
        got: list[Message] = []
        bob.receive(got.append, timeout=30)
        assert got and got[-1].text == "after the big one" and got[-1].verified
        assert send.id not in {m.id for m in got}  # the big one was never stored


@pytest.mark.parametrize("mechanism", ["null", "plain"])
def test_null_and_plain_clients_get_nothing(
    broker: BrokerProc, people: People, mechanism: str
) -> None:
    with RawClient(broker.url, mechanism=mechanism) as raw:
        raw.send_msg(wire.Hello())
        raw.send_msg(wire.Ping(t=1))
        assert raw.recv(0.5) is None
    still_serves(broker, people)


def test_garbage_budget_drops_the_connection(broker: BrokerProc, people: People) -> None:
    with RawClient(broker.url) as raw:
        codes = []
        for _ in range(40):
            raw.send(os.urandom(64))
        while (msg := raw.recv_msg(0.5)) is not None:
            codes.append(msg.code)
        assert codes[-1] == "dropped" and set(codes[:-1]) == {"bad-frame"}
        assert len(codes) == 17  # the budget: 16 refusals, then "dropped"
        raw.send_msg(wire.Hello())  # ignored from now on
        assert raw.recv(0.5) is None
    still_serves(broker, people)


def test_rate_limit_per_session(people: People) -> None:
    root = short_tmpdir("tb")
    cfg = Path(root / "titsd.toml")
    cfg.write_text("[limits]\nrate = 5.0\nburst = 10.0\n")
    b = BrokerProc(root / "broker", "--config", str(cfg)).start()
    try:
        with RawClient(b.url) as raw:
            for i in range(30):
                raw.send_msg(wire.Ping(t=i))
            kinds = []
            while (msg := raw.recv_msg(0.5)) is not None:
                kinds.append(type(msg).__name__ if not isinstance(msg, wire.Error) else msg.code)
            assert kinds.count("Pong") == 10
            assert kinds.count("rate-limited") == 20
        still_serves(b, people)
    finally:
        b.cleanup()
