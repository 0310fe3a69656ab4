"""The client's link to a broker: a DEALER over CURVE, the login, and reliable sending.

    url = BrokerURL.parse("tcp://127.0.0.1:5570#<64 hex: the broker's CURVE public key>")
    with Connection(url, identity, fingerprint, cert_bytes, cert_sig) as conn:
        welcome = conn.login()
        conn.send_and_wait([(send_envelope, body)])     # returns once the broker stored them
        for item in conn.poll(timeout=1.0): ...         # `Incoming` deliveries, errors
        conn.ack([msg_id])                              # this device has stored them

Every connection uses a fresh CURVE key pair; the broker binds the login to that key. A
broker restart logs everybody out: `send_and_wait` notices (`not-logged-in`), logs in again
and resends what is not yet acknowledged; the broker drops duplicates by message id.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import zmq
from zmq.utils import z85

from .. import wire
from ..errors import BrokerError, ConfigError, IdentityError, WireError
from ..identity import Identity
from ..login import build_blob

RESEND_S = 2.0  # resend what the broker has not acknowledged after this long
LOGIN_TIMEOUT_S = 15.0
_URL_RE = re.compile(r"^(tcp://[^#\s]+:\d{1,5})#([0-9a-fA-F]{64}|[!-~]{40})\Z")


@dataclass(frozen=True)
class BrokerURL:
    """``tcp://HOST:PORT#<CURVE server key>``: the key as 64 hex digits (or 40 z85 chars)."""

    address: str
    server_key: bytes  # z85, as pyzmq wants it

    @classmethod
    def parse(cls, text: str) -> BrokerURL:
        m = _URL_RE.match(text.strip())
        if not m:
            raise ConfigError(
                f"not a broker URL: {text[:80]!r} (expected tcp://HOST:PORT#<server key>; "
                "the broker's status page shows it)"
            )
        key = m.group(2)
        raw = bytes.fromhex(key) if len(key) == 64 else z85.decode(key.encode())
        if len(raw) != 32:
            raise ConfigError("the broker URL's CURVE key is not 32 bytes")
        return cls(m.group(1), z85.encode(raw))

    def __str__(self) -> str:
        return f"{self.address}#{z85.decode(self.server_key).hex()}"


@dataclass(frozen=True)
class Incoming:
    """A delivery: the envelope the broker vouches for and the body it never read."""

    envelope: wire.Deliver
    body: bytes


class Connection:
    def __init__(
        self,
        url: BrokerURL | str,
        identity: Identity,
        fingerprint: str,
        cert: bytes,
        cert_sig: str,
        *,
        context: zmq.Context | None = None,
        send_pubkey: bool = True,
        listed: bool = True,
        batch: bool = False,
    ) -> None:
        self.url = url if isinstance(url, BrokerURL) else BrokerURL.parse(url)
        self.identity = identity
        self.fingerprint = fingerprint
        self.cert = cert
        self.cert_sig = cert_sig
        self.send_pubkey = send_pubkey
        self.listed = listed
        self.batch = batch  # ask for `Deliveries` (many deliveries a message)
        self._batched: deque[Incoming] = deque()  # the rest of the last `Deliveries`
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        public, secret = zmq.curve_keypair()
        self.curve_public = public
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.curve_serverkey = self.url.server_key
        self.sock.curve_publickey = public
        self.sock.curve_secretkey = secret
        self.sock.sndhwm = 100_000
        self.sock.rcvhwm = 100_000
        self.sock.reconnect_ivl = 100
        self.sock.reconnect_ivl_max = 2000
        self.sock.connect(self.url.address)
        self.welcome: wire.Welcome | None = None
        self.broker: str | None = None
        self.inbox: deque[Incoming | wire.Error] = deque()
        self._pubkey: bytes | None = None
        self.login_ms = 0.0

    # -- context manager ----------------------------------------------------------------------

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self, bye: bool = True) -> None:
        if self.sock.closed:
            return
        if bye and self.welcome is not None:
            try:
                self.sock.send(wire.encode(wire.Bye()), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        self.sock.close(linger=0)
        if self._own_ctx:
            self.ctx.term()

    # -- low level ----------------------------------------------------------------------------

    def _send(self, msg: Any, body: bytes | None = None) -> None:
        frames = [wire.encode(msg)] if body is None else [wire.encode(msg), body]
        self.sock.send_multipart(frames)

    def _recv(self, timeout: float) -> Incoming | Any | None:
        """One message from the broker, or None after `timeout` seconds."""
        if self._batched:
            return self._batched.popleft()
        if not self.sock.poll(int(max(timeout, 0) * 1000)):
            return None
        frames = self.sock.recv_multipart()
        try:
            msg = wire.SERVER_DECODER.decode(frames[0])
        except WireError:
            return None  # a broker bug or a newer broker: nothing to act on
        if type(msg) is wire.Deliver:
            if len(frames) != 2:
                return None
            return Incoming(msg, frames[1])
        if type(msg) is wire.Deliveries:
            if len(frames) != 1 + len(msg.items) or not msg.items:
                return None
            self._batched.extend(Incoming(d, b) for d, b in zip(msg.items, frames[1:], strict=True))
            return self._batched.popleft()
        return msg

    # -- login --------------------------------------------------------------------------------

    def login(self, timeout: float = LOGIN_TIMEOUT_S) -> wire.Welcome:
        """Challenge, signed and encrypted answer, welcome (see `tits.login`)."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        self._send(wire.Hello())
        challenge = self._wait_for(wire.Challenge, deadline, "a login challenge")
        broker = challenge.broker
        self._trust_broker_key(broker, challenge.key)
        blob = build_blob(
            self.identity,
            self.fingerprint,
            challenge.nonce,
            broker,
            z85.decode(self.curve_public),
            self.cert,
            self.cert_sig,
        )
        if self.send_pubkey and self._pubkey is None:
            self._pubkey = self.identity.export_public(self.fingerprint).encode()
        self._send(
            wire.Login(
                blob=blob,
                fingerprint=self.fingerprint,
                pubkey=self._pubkey or b"",
                listed=self.listed,
                batch=self.batch,
            )
        )
        welcome = self._wait_for(wire.Welcome, deadline, "the broker's welcome")
        if welcome.fingerprint != self.fingerprint or welcome.broker != broker:
            raise BrokerError("the broker welcomed someone else", code="login-refused")
        self.welcome, self.broker = welcome, broker
        self.login_ms = (time.perf_counter() - t0) * 1000
        return welcome

    def _trust_broker_key(self, broker: str, armored: bytes) -> None:
        if self.identity.has_key(broker):
            return
        if not armored:
            raise BrokerError(f"broker {broker[:16]} sent no key", code="login-refused")
        scanned = self.identity.gpg.scan_keys_mem(armored.decode("utf-8", "replace"))
        if {str(k.get("fingerprint", "")).upper() for k in scanned} != {broker}:
            raise IdentityError("the broker's key does not match its fingerprint")
        self.identity.import_public(armored)

    def _wait_for(self, kind: type, deadline: float, what: str) -> Any:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerError(
                    f"no answer from the broker at {self.url.address} (waiting for {what})",
                    code="timeout",
                )
            msg = self._recv(left)
            if msg is None:
                continue
            if isinstance(msg, kind):
                return msg
            if isinstance(msg, wire.Error):
                if msg.ref is None:
                    raise BrokerError(msg.message or msg.code, code=msg.code)
                self.inbox.append(msg)
            elif isinstance(msg, Incoming):
                self.inbox.append(msg)

    # -- sending ------------------------------------------------------------------------------

    def send_and_wait(
        self, items: Iterable[tuple[wire.Send, bytes]], timeout: float = 30.0
    ) -> list[bytes]:
        """Send, resend until every message is acknowledged (or refused: `BrokerError`)."""
        pending: dict[bytes, tuple[wire.Send, bytes]] = {s.id: (s, b) for s, b in items}
        order = list(pending)
        deadline = time.monotonic() + timeout
        for send, body in pending.values():
            self._send(send, body)
        last_sent = time.monotonic()
        while pending:
            now = time.monotonic()
            if now >= deadline:
                raise BrokerError(
                    f"the broker did not acknowledge {len(pending)} message(s) in time",
                    code="timeout",
                )
            msg = self._recv(min(deadline, last_sent + RESEND_S) - now)
            if msg is None:
                if time.monotonic() >= last_sent + RESEND_S:
                    self._resend(pending)
                    last_sent = time.monotonic()
                continue
            if isinstance(msg, wire.Accepted):
                pending.pop(msg.id, None)
                for i in msg.ids:
                    pending.pop(i, None)
            elif isinstance(msg, wire.Error):
                if msg.code == "not-logged-in":
                    self._relogin(deadline)
                    self._resend(pending)
                    last_sent = time.monotonic()
                elif msg.code in ("rate-limited", "busy", "storage"):
                    pass  # transient: what is still pending is sent again after RESEND_S
                elif msg.ref in pending or msg.ref is None:
                    raise BrokerError(msg.message or msg.code, code=msg.code)
            elif isinstance(msg, Incoming):
                self.inbox.append(msg)
        return order

    def _resend(self, pending: dict[bytes, tuple[wire.Send, bytes]]) -> None:
        for send, body in pending.values():
            self._send(send, body)

    def _relogin(self, deadline: float) -> None:
        self.welcome = None
        self.login(max(1.0, deadline - time.monotonic()))

    # -- receiving ----------------------------------------------------------------------------

    def poll(self, timeout: float) -> list[Incoming | wire.Error]:
        """Deliveries (and refusals) that arrived, waiting up to `timeout` for the first."""
        out: list[Incoming | wire.Error] = list(self.inbox)
        self.inbox.clear()
        wait = 0.0 if out else timeout
        while True:
            msg = self._recv(wait)
            if msg is None:
                return out
            if isinstance(msg, (Incoming, wire.Error)):
                out.append(msg)
            elif isinstance(msg, wire.Pong) and msg.user is None and self.welcome is not None:
                self._relogin(time.monotonic() + LOGIN_TIMEOUT_S)
            wait = 0.0

    def ack(self, ids: list[bytes]) -> None:
        for i in range(0, len(ids), wire.RECEIVED_MAX):
            self._send(wire.Received(ids=ids[i : i + wire.RECEIVED_MAX]))

    def send(self, send: wire.Send, body: bytes) -> None:
        """Send without waiting; the broker answers `Accepted` (or an `Error` with `ref`)."""
        self._send(send, body)

    def recv(self, timeout: float) -> Incoming | Any | None:
        """The next thing from the broker (`Incoming`, `Accepted`, `Error`, `Pong`, ...), or
        None after `timeout` seconds. Anything `login` or `send_and_wait` set aside comes first."""
        if self.inbox:
            return self.inbox.popleft()
        return self._recv(timeout)

    def ping(self) -> None:
        self._send(wire.Ping(t=time.time_ns() // 1_000_000))
