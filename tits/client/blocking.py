"""A blocking façade over the asyncio `Client`, for the one-shot commands, scripts and tests.

The client runs on an event loop in a thread of its own; each call here waits for its
coroutine. Nothing here holds logic of its own: sending, opening and verification are the
client library's (`Client`, `Composer`, `Inbox`), so commands, the app and tests exercise one
code path.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tits import wire
from tits.errors import BrokerError
from tits.home import Home
from tits.session import Envelope, SessionKey

from .client import ANSWER_S, Client
from .connection import Connection, Incoming
from .inbox import KEY_WAIT_S
from .model import Event, GroupChanged, Message, Refused, SendFailed, SendOptions, Shown
from .store import OutboxItem
from .transfer import Progress

T = TypeVar("T")

__all__ = ["KEY_WAIT_S", "Messenger"]


class Messenger:
    def __init__(
        self,
        home: Home,
        broker: str | None = None,
        keyserver: str | None = None,
        *,
        answer_s: float = ANSWER_S,
    ) -> None:
        self.home = home
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.client: Client = self._run(self._make(home, broker, keyserver, answer_s))
        self.me = self.client.me
        self.store = self.client.store
        self.refused: list[Refused] = []
        self.events: list[Event] = []
        self._closed = False
        self._raw: Connection | None = None
        self._ackable: set[bytes] = set()

    @staticmethod
    async def _make(home: Home, broker: str | None, keyserver: str | None, ans: float) -> Client:
        return Client(home, broker=broker, keyserver=keyserver, answer_s=ans)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._raw is not None:
            self._raw.close()
        try:
            self._run(self.client.close(), 30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> Messenger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection ----------------------------------------------------------------------------

    def connection(self, timeout: float = 30.0) -> Connection:
        """A raw, blocking, logged-in connection for this device (for tests and tools that
        put their own frames on the wire); the client's own link closes it first."""
        if self._raw is None:
            self._close_async_link()
            url = self.client.candidates()[0]
            _, cert, sig = self.home.certificate
            raw = Connection(
                url, self.client.identity, self.me, cert, sig, listed=self.client.listed
            )
            try:
                raw.login(timeout)
            except BaseException:
                raw.close(bye=False)
                raise
            self._raw = raw
        return self._raw

    def _close_async_link(self) -> None:
        if self.client.link is not None:
            self._run(self._drop_link())

    async def _drop_link(self) -> None:
        self.client._close_socket(bye=True)
        self.client.link = None

    def connect(self, timeout: float = 30.0) -> wire.Welcome:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if not self._ready():
            return self._run(self.client.connect(timeout))
        assert self.client.welcome is not None
        return self.client.welcome

    def _ready(self) -> bool:
        from .link import State

        return self.client.link is not None and self.client.link.state is State.READY

    @property
    def welcome(self) -> wire.Welcome | None:
        return self.client.welcome

    def name_of(self, fp: str) -> str:
        return self.client.name_of(fp)

    # -- sending -------------------------------------------------------------------------------

    def enqueue(
        self,
        target: str,
        payload: bytes,
        kind: str = "text",
        mime: str = "text/plain",
        reply_to: bytes | None = None,
        options: SendOptions | None = None,
    ) -> bytes:
        return self._run(
            self.client.work(self.client.outbox.add, target, kind, payload, mime, reply_to, options)
        )

    def options_for(self, target: str, text: str, lifetime_s: int = 0) -> SendOptions:
        """Mentions and lifetime of a text (raises ConfigError for a non-member @name)."""
        return self._run(self.client.work(self.client.mention_options, target, text, lifetime_s))

    def react(self, msg_id: bytes, name: str, timeout: float = 30.0) -> None:
        self.connect(timeout)
        item = self._run(self.client.react(msg_id, name))
        self.flush_and_wait([item], timeout)

    def announce(self, target: str, text: str, timeout: float = 30.0) -> None:
        self.connect(timeout)
        item = self._run(self.client.announce(target, text))
        self.flush_and_wait([item], timeout)

    def read(self, messages: list[Message], timeout: float = 15.0) -> None:
        """Mark read and send the receipts (已讀), waiting until a broker stored them."""
        items = self._run(self.client.read(messages))
        if items:
            self.flush_and_wait(items, timeout)

    def set_unsend_window(self, target: str, seconds: int, timeout: float = 30.0) -> None:
        self.connect(timeout)
        item = self._run(self.client.set_unsend_window(target, seconds))
        self.flush_and_wait([item], timeout)

    def unsend(self, msg_id: bytes, timeout: float = 30.0) -> None:
        self.connect(timeout)
        item = self._run(self.client.unsend(msg_id))
        self.flush_and_wait([item], timeout)

    def send_text(
        self, to: list[str] | str, text: str, group: bytes | None = None, timeout: float = 30.0
    ) -> bytes:
        return self._send(to, text.encode(), "text", "text/plain", group, timeout)

    def send_media(
        self,
        to: list[str] | str,
        payload: bytes,
        mime: str,
        group: bytes | None = None,
        timeout: float = 30.0,
    ) -> bytes:
        if len(payload) > wire.MAX_BODY - 4096:
            from tits.errors import ConfigError

            raise ConfigError(f"{len(payload)} bytes is too big to send inline (max ~1 MiB)")
        return self._send(to, payload, "media", mime, group, timeout)

    def scan(self, path: Path, progress: Progress | None = None) -> wire.Manifest:
        """A file's manifest (hashed on the media thread); `progress(done, total)`."""
        total = path.stat().st_size
        return self._run(
            self.client.scan(path, progress=lambda d: progress(d, total) if progress else None)
        )

    def send_file(
        self,
        target: str,
        path: Path,
        *,
        manifest: wire.Manifest | None = None,
        progress: Progress | None = None,
        timeout: float = 3600.0,
    ) -> bytes:
        """Upload a file's missing chunks and send its signed manifest to `target` (a
        fingerprint or #group id hex); returns the message id once a broker stored it."""
        m = manifest if manifest is not None else self._run(self.client.scan(path))
        self.connect(min(timeout, 60.0))
        item = self._run(self.client.send_file(target, path, m, progress=progress, timeout=timeout))
        self.flush_and_wait([item], min(timeout, 60.0))
        return item

    def fetch(
        self, msg: Message, *, progress: Progress | None = None, timeout: float = 3600.0
    ) -> Path:
        """A media message's file, every chunk checked: HOME/media/<sha256>."""
        self.connect(min(timeout, 60.0))
        return self._run(self.client.fetch(msg, progress=progress, timeout=timeout))

    def _send(
        self,
        to: list[str] | str,
        payload: bytes,
        kind: str,
        mime: str,
        group: bytes | None,
        timeout: float,
    ) -> bytes:
        target = "#" + group.hex() if group is not None else (to if isinstance(to, str) else to[0])
        item = self.enqueue(target, payload, kind, mime)
        self.connect(timeout)
        self.flush_and_wait([item], timeout)
        return item

    def flush_and_wait(self, items: list[bytes], timeout: float) -> None:
        failed = self._run(self.client.flush())
        for f in failed:
            if f.id in items:
                raise BrokerError(f.reason, code=f.code)
        left = self._run(self.client.wait_stored(items, timeout))
        self._raise_for(left)

    @staticmethod
    def _raise_for(left: list[OutboxItem]) -> None:
        for item in left:
            if item.state == "failed":
                code, _, reason = item.reason.partition(": ")
                raise BrokerError(reason or code, code=code or "refused")
        if left:
            why = left[0].reason or "the broker did not acknowledge in time"
            raise BrokerError(f"{len(left)} message(s) wait in the outbox ({why})", code="timeout")

    def group_create(self, name: str, secure: bool = False) -> bytes:
        return self._run(self.client.group_create(name, secure))

    def group_change(
        self,
        group: bytes,
        op: str,
        targets: list[str],
        share_history: bool = False,
        timeout: float = 60.0,
        name: str = "",
    ) -> GroupChanged | None:
        self.connect(timeout)
        before = {i.id for i in self.store.outbox("pending")}
        ev = self._run(
            self.client.group_change(group, op, targets, share_history=share_history, name=name),
            timeout,
        )
        items = [i.id for i in self._run(self.client.work(self.store.outbox, "pending"))]
        self.flush_and_wait([i for i in items if i not in before], timeout)
        return ev

    def rekey_groups(self, timeout: float = 60.0) -> int:
        """Every group we are in moves to a new epoch; how many, once the broker has them."""
        self.connect(timeout)
        items = self._run(self.client.rekey_groups(), timeout)
        self.flush_and_wait(items, timeout)
        return len(items)

    # -- the compatibility surface for tests that build frames themselves ----------------------

    def prepare_text(
        self, to: list[str], text: str, group: bytes | None = None
    ) -> tuple[list[tuple[wire.Send, bytes]], list[str], SessionKey, Envelope]:
        """The frames one text would go as (key messages first), without sending them."""
        target = "#" + group.hex() if group is not None else to[0]
        item = OutboxItem(
            id=wire.new_msg_id(), target=target, kind="text", payload=text.encode(),
            mime="text/plain", created=time.time(), state="pending", reason="",
            prepared=None, attempts=0,
        )  # fmt: skip
        prepared = self._run(self.client.work(self.client.composer.prepare, item))
        sends = [(wire.CLIENT_DECODER.decode(e), b) for e, b in prepared.frames]
        conv = prepared.message.conv if prepared.message else b""
        text_send = sends[-1][0]
        body = wire.BODY_DECODER.decode(sends[-1][1])
        row = self.store.epoch(conv, body.epoch) if isinstance(body, wire.SealedBody) else None
        key = row.key if row else SessionKey.generate(conv)
        missing = [s.to[0] for s, b in sends[:-1]]
        env = Envelope(text_send.id, text_send.sender, list(text_send.to), text_send.group)
        return sends, missing, key, env

    def process(self, deliveries: list[Incoming]) -> list[Message]:
        batch = self._run(self.client.work(self.client.inbox.process, deliveries))
        self._ackable = set(batch.ack)
        self._absorb(batch.events)
        return [e.message for e in batch.events if isinstance(e, Shown)]

    def ackable(self, deliveries: list[Incoming]) -> list[bytes]:
        return [d.envelope.id for d in deliveries if d.envelope.id in self._ackable]

    def _absorb(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.refused.extend(e for e in events if isinstance(e, Refused))

    # -- receiving -----------------------------------------------------------------------------

    def receive(
        self,
        on_message: Callable[[Message], None],
        *,
        follow: bool = False,
        timeout: float | None = None,
        until: Callable[[], bool] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> int:
        """Show what waits (or, with `follow`, keep listening); returns how many were shown."""
        self.connect(timeout or 30.0)
        start = time.monotonic()
        deadline = start + timeout if timeout is not None else None
        shown = 0
        c = self.client
        while True:
            now = time.monotonic()
            welcome = c.welcome
            pending = welcome.pending if welcome else 0
            settle = (welcome.settle_ms / 1000 if welcome else 0.0) + 0.3
            quiet = now - c.last_delivery >= settle and not c.inbox.held
            if not follow and c.received >= pending and quiet and self._idle():
                break
            if until is not None and until():
                break
            if deadline is not None and now >= deadline:
                break
            wait = 0.2 if deadline is None else max(0.01, min(0.2, deadline - now))
            ev = self._run(c.next_event(wait))
            if ev is None:
                continue
            self._absorb([ev])
            if on_event is not None:
                on_event(ev)
            if isinstance(ev, Shown):
                on_message(ev.message)
                shown += 1
        self._drain_events(on_message, on_event)
        return shown

    def _idle(self) -> bool:
        c = self.client
        return not c._incoming and not c.processing and c._events.empty()

    def _drain_events(
        self, on_message: Callable[[Message], None], on_event: Callable[[Event], None] | None
    ) -> None:
        async def drain() -> list[Event]:
            out = []
            while (ev := self.client.next_event_nowait()) is not None:
                out.append(ev)
            return out

        for ev in self._run(drain()):
            self._absorb([ev])
            if on_event is not None:
                on_event(ev)
            if isinstance(ev, Shown):
                on_message(ev.message)

    def take_events(self) -> list[Event]:
        """Events that came while nobody was receiving (link changes, stored, refusals)."""

        async def drain() -> list[Event]:
            out = []
            while (ev := self.client.next_event_nowait()) is not None:
                out.append(ev)
            return out

        got = self._run(drain())
        self._absorb(got)
        return got

    def failures(self) -> list[SendFailed]:
        return [e for e in self.events if isinstance(e, SendFailed)]
