"""The connection to one broker and its login, as a sans-IO state machine.

    IDLE ──start──▶ HELLO ──Challenge──▶ PROVING ──proved──▶ LOGIN ──Welcome──▶ READY
                      │                                        │                 │
                      └──── no answer in `answer_s` ───────────┴──▶ CLOSED ◀─────┘ silent
    READY ──Error "not-logged-in" / Pong without a user──▶ HELLO (log in again, same socket)

The machine owns no socket and runs no gpg: it is fed frames (`received`), the login blob
the driver built off the loop (`proved`) and the clock (`tick`), and answers with actions.
The driver (tits/client/client.py) does the I/O; tests feed it events and assert the exact
actions out, with no sockets (tests/unit/test_client_link.py). Why sans-IO rather than
coroutines all the way down: the login has a slow step (GnuPG, 10–90 ms) that must leave
the event loop, and timeouts that must be tested without waiting for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tits import wire
from tits.errors import WireError

from .connection import Incoming


class State(Enum):
    IDLE = "idle"
    HELLO = "hello"
    PROVING = "proving"
    LOGIN = "login"
    READY = "ready"
    CLOSED = "closed"


# -- actions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transmit:
    msg: Any
    body: bytes | None = None

    def frames(self) -> list[bytes]:
        head = wire.encode(self.msg)
        return [head] if self.body is None else [head, self.body]


@dataclass(frozen=True)
class Prove:
    """Build the login (signed and encrypted with GnuPG) off the loop, then call `proved`."""

    challenge: wire.Challenge


@dataclass(frozen=True)
class Up:
    welcome: wire.Welcome


@dataclass(frozen=True)
class Down:
    why: str  # "unreachable" | "refused"
    detail: str
    code: str = ""


@dataclass(frozen=True)
class Delivered:
    items: list[Incoming]


@dataclass(frozen=True)
class Acked:
    ids: list[bytes]


@dataclass(frozen=True)
class BrokerRefusal:
    ref: bytes | None
    code: str
    message: str


@dataclass(frozen=True)
class MediaReply:
    """An answer to an upload or a download (tits/client/transfer.py)."""

    msg: Any
    body: bytes | None = None


_MEDIA_REPLIES = (wire.BlobHave, wire.ChunkOk, wire.ChunkData, wire.BlobError)
Action = Transmit | Prove | Up | Down | Delivered | Acked | BrokerRefusal | MediaReply


@dataclass
class Link:
    me: str
    answer_s: float = 4.0  # a broker that says nothing this long is unreachable
    prove_s: float = 60.0  # GnuPG on a loaded machine
    ping_s: float = 15.0  # idle READY: ping this often, so a dead broker is noticed
    state: State = State.IDLE
    welcome: wire.Welcome | None = None
    broker: str | None = None  # learnt from the challenge
    _deadline: float = 0.0
    _last_heard: float = 0.0
    _last_ping: float = 0.0
    _challenge: wire.Challenge | None = field(default=None, repr=False)

    def start(self, now: float) -> list[Action]:
        self.state = State.HELLO
        self._deadline = now + self.answer_s
        self._last_heard = now
        return [Transmit(wire.Hello())]

    def proved(self, login: wire.Login, now: float) -> list[Action]:
        if self.state is not State.PROVING:
            return []
        self.state = State.LOGIN
        self._deadline = now + self.answer_s
        return [Transmit(login)]

    def prove_failed(self, detail: str) -> list[Action]:
        self.state = State.CLOSED
        return [Down("refused", detail, "login-refused")]

    def received(self, frames: list[bytes], now: float) -> list[Action]:
        if self.state in (State.IDLE, State.CLOSED) or not frames:
            return []
        try:
            msg = wire.SERVER_DECODER.decode(frames[0])
        except WireError:
            return []  # a broker bug or a newer broker: nothing to act on
        self._last_heard = now
        if isinstance(msg, wire.Error) and msg.ref is None and msg.code != "not-logged-in":
            if self.state is not State.READY:
                self.state = State.CLOSED
                return [Down("refused", msg.message or msg.code, msg.code)]
        if self.state is State.HELLO:
            if isinstance(msg, wire.Challenge):
                self.state = State.PROVING
                self._challenge = msg
                self.broker = msg.broker
                self._deadline = now + self.prove_s
                return [Prove(msg)]
            return []
        if self.state is State.LOGIN:
            if isinstance(msg, wire.Welcome):
                if msg.fingerprint != self.me or msg.broker != self.broker:
                    self.state = State.CLOSED
                    return [Down("refused", "the broker welcomed someone else", "login-refused")]
                self.state = State.READY
                self.welcome = msg
                self._last_ping = now
                return [Up(msg)]
            return []
        if self.state is not State.READY:
            return []
        if isinstance(msg, wire.Deliver):
            return [Delivered([Incoming(msg, frames[1])])] if len(frames) == 2 else []
        if isinstance(msg, wire.Deliveries):  # (the login asked for them: `batch`)
            if len(frames) != 1 + len(msg.items):
                return []
            return [Delivered([Incoming(d, b) for d, b in zip(msg.items, frames[1:], strict=True)])]
        if isinstance(msg, wire.Accepted):
            return [Acked([msg.id, *msg.ids])]
        if isinstance(msg, _MEDIA_REPLIES):
            return [MediaReply(msg, frames[1] if len(frames) == 2 else None)]
        if isinstance(msg, wire.Error):
            if msg.code == "not-logged-in":
                return self._again(now)
            return [BrokerRefusal(msg.ref, msg.code, msg.message or msg.code)]
        if isinstance(msg, wire.Pong) and msg.user is None:
            return self._again(now)  # the broker restarted or forgot us: log in again
        return []

    def _again(self, now: float) -> list[Action]:
        self.welcome = None
        return self.start(now)

    def tick(self, now: float) -> list[Action]:
        if self.state in (State.HELLO, State.PROVING, State.LOGIN) and now >= self._deadline:
            waited = self.prove_s if self.state is State.PROVING else self.answer_s
            self.state = State.CLOSED
            return [Down("unreachable", f"no answer in {waited:g} s")]
        if self.state is State.READY:
            if now - self._last_heard >= self.ping_s + self.answer_s:
                self.state = State.CLOSED
                return [Down("unreachable", f"silent for {now - self._last_heard:.0f} s")]
            if now - self._last_ping >= self.ping_s:
                self._last_ping = now
                return [Transmit(wire.Ping(t=int(now * 1000) & ((1 << 63) - 1)))]
        return []

    def transmit(self, msg: Any, body: bytes | None = None) -> list[Action]:
        """What to put on the wire for a message of ours; nothing unless logged in (the
        outbox keeps it and sends it when the link is up again)."""
        return [Transmit(msg, body)] if self.state is State.READY else []

    def close(self) -> list[Action]:
        ready = self.state is State.READY
        self.state = State.CLOSED
        return [Transmit(wire.Bye())] if ready else []
