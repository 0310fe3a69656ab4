"""`Sessions` and `ClientPort` on their own: a real store and `Delivery`, recorded replies,
logins checked by a stand-in, frames as plain objects (no sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest
import zmq

from tits import wire
from tits.broker.clientport import ClientPort
from tits.broker.config import Limits
from tits.broker.dedup import Dedup
from tits.broker.delivery import Delivery, Device, SendResult
from tits.broker.login import LoginOk
from tits.broker.sessions import Conn, Sessions
from tits.broker.store import Store

ALICE, BOB = "A" * 40, "B" * 40
K1, K2 = (zmq.curve_keypair()[0].decode() for _ in range(2))  # CURVE keys, z85


class Inline(Executor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


class Frame:
    """What `ClientPort` reads of a zmq.Frame."""

    def __init__(self, data: bytes, curve: str = "", fd: int = 0, more: bool = False) -> None:
        self.bytes, self.buffer, self.more = data, memoryview(data), more
        self._props = {"User-Id": curve, 2: fd}

    def get(self, key: Any) -> Any:
        return self._props[key]


class World:
    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        self.replies: list[tuple[bytes, Any]] = []
        self.sent: list[tuple[bytes, bytes]] = []
        self.delivery = Delivery(self.store, self.send)
        self.users: dict[str, tuple[str, str]] = {}  # curve → (user, device) its login proves
        self.committed: list[tuple[list, list]] = []
        self.limits = Limits(garbage=5, rate=1000.0, burst=10.0)
        self.sessions = Sessions(
            fingerprint="F" * 40, armored=b"key", limits=self.limits, session_timeout=10.0,
            reply=self.reply, delivery=self.delivery, register_device=lambda u, d: None,
            verify=self.verify, pool=Inline(), wake=lambda: None,
        )  # fmt: skip
        self.port = ClientPort(
            None, None, limits=self.limits, sessions=self.sessions,  # type: ignore[arg-type]
            dedup=Dedup(3600), delivery=self.delivery,
            commit=lambda b, d: self.committed.append((b, d)), senders_of=lambda ids: {},
        )  # fmt: skip

    def reply(self, route: bytes, msg: Any) -> bool:
        self.replies.append((route, msg))
        return True

    def send(self, dev: Device, env: bytes, body: bytes) -> SendResult:
        self.sent.append((dev.route, body))
        return SendResult.OK

    def verify(self, msg: wire.Login, nonce: bytes, curve: bytes) -> LoginOk:
        return LoginOk(msg.fingerprint, "0123456789abcdef", "name", None)  # type: ignore[arg-type]

    def frame(self, curve: str, route: bytes, fd: int, msg: Any, *body: bytes) -> bool:
        frames = [Frame(route, curve, fd, True), Frame(wire.encode(msg), more=bool(body))]
        frames += [Frame(b) for b in body]
        batch: list = []
        dups: list = []
        out = self.port.on_frames(frames, 0, 0.0, batch, dups, [])  # type: ignore[arg-type]
        if batch or dups:
            self.committed.append((batch, dups))
        return out

    def login(self, curve: str, route: bytes, fd: int, user: str) -> Conn:
        self.frame(curve, route, fd, wire.Hello())
        self.frame(curve, route, fd, wire.Login(blob=b"b", fingerprint=user))
        self.sessions.drain_results()
        assert isinstance(self.replies[-1][1], wire.Welcome)
        return self.sessions.conns[curve]

    def codes(self) -> list[str]:
        return [m.code for _, m in self.replies if isinstance(m, wire.Error)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "m.db")
    yield w
    w.store.close()


def test_a_login_binds_a_key_to_a_device_on_its_route(world: World) -> None:
    conn = world.login(K1, b"r1", 7, ALICE)
    assert conn.device is not None and conn.device.user == ALICE and conn.attached
    assert world.sessions.open_sessions() == 1
    assert [e.fingerprint for e in world.sessions.local_presence()] == [ALICE]


def test_a_second_key_on_a_routing_id_is_refused_and_the_first_stops_getting_mail(
    world: World,
) -> None:
    alice = world.login(K1, b"shared", 7, ALICE)
    world.frame(K2, b"shared", 8, wire.Ping(t=1))
    assert world.codes() == ["route-in-use"]
    assert not alice.attached and world.delivery.device(ALICE, alice.device.device) is None  # type: ignore[union-attr]
    world.frame(K1, b"own", 9, wire.Ping(t=2))  # Alice again, on her own new link
    assert alice.attached and alice.route == b"own"


def test_a_lost_link_detaches_and_the_session_ends_after_the_timeout(world: World) -> None:
    conn = world.login(K1, b"r1", 7, ALICE)
    world.sessions.link_event(7)
    assert not conn.attached and conn.fd == -1
    world.sessions.expire(conn.link_lost + 5.0)
    assert K1 in world.sessions.conns  # within session_timeout
    world.sessions.expire(conn.link_lost + 11.0)
    assert K1 not in world.sessions.conns and world.sessions.open_sessions() == 0


def test_an_idle_session_on_a_live_link_is_kept(world: World) -> None:
    conn = world.login(K1, b"r1", 7, ALICE)
    world.sessions.expire(conn.last_seen + 10_000.0)
    assert conn.attached and world.sessions.open_sessions() == 1


def test_the_garbage_budget_is_the_keys_across_byes_and_expiry(world: World) -> None:
    for _ in range(3):
        world.frame(K1, b"r1", 7, wire.Received(ids=[]))  # not logged in: not garbage
        world.port.on_frames([Frame(b"r1", K1, 7, True), Frame(b"\xc1")], 0, 0.0, [], [], [])  # type: ignore[list-item]
        world.frame(K1, b"r1", 7, wire.Bye())
    conn = world.sessions.conns[K1]
    assert conn.garbage == 3
    world.sessions.expire(conn.last_seen + 100.0)  # forgotten as a connection...
    world.port.on_frames([Frame(b"r1", K1, 7, True), Frame(b"\xc1")], 0, 0.0, [], [], [])  # type: ignore[list-item]
    assert world.sessions.conns[K1].garbage == 4  # ... not as a key


def test_the_client_port_checks_sends(world: World) -> None:
    send = wire.Send(id=wire.new_msg_id(), sender=ALICE, to=[BOB])
    world.frame(K1, b"r1", 7, send, b"body")
    assert world.codes() == ["not-logged-in"]
    world.login(K1, b"r1", 7, ALICE)
    forged = wire.Send(id=wire.new_msg_id(), sender=BOB, to=[ALICE])
    world.frame(K1, b"r1", 7, forged, b"body")
    world.frame(K1, b"r1", 7, wire.Send(id=wire.new_msg_id(), sender=ALICE, to=[]), b"b")
    world.frame(K1, b"r1", 7, send)  # no body frame
    assert world.codes()[1:] == ["forged-sender", "bad-request", "bad-frame"]
    world.frame(K1, b"r1", 7, send, b"body")
    world.frame(K1, b"r1", 7, send, b"body")  # again: a duplicate, acknowledged not stored
    assert [(len(b), len(d)) for b, d in world.committed] == [(1, 0), (0, 1)]


def test_another_version_is_answered_and_not_counted(world: World) -> None:
    import msgspec

    for _ in range(8):
        frames = [
            Frame(b"r1", K1, 7, True),
            Frame(msgspec.msgpack.encode({"k": "hello", "v": 3})),
        ]
        world.port.on_frames(frames, 0, 0.0, [], [], [])  # type: ignore[arg-type]
    assert set(world.codes()) == {"version"} and world.sessions.conns[K1].garbage == 0


def test_a_dropped_key_stays_dropped_after_its_conn_is_forgotten(world: World) -> None:
    for _ in range(world.limits.garbage + 1):
        world.port.on_frames([Frame(b"r1", K1, 7, True), Frame(b"\xc1")], 0, 0.0, [], [], [])  # type: ignore[list-item]
    assert world.codes()[-1] == "dropped" and K1 in world.sessions.banned
    world.sessions.expire(1000.0)
    assert K1 not in world.sessions.conns
    world.frame(K1, b"r1", 7, wire.Ping(t=1))  # its connection is still open: still refused
    assert not isinstance(world.replies[-1][1], wire.Pong)
