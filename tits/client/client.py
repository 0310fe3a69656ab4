"""The asyncio client: one object that the `tits` commands and the full-screen app drive.

    async with Client(home) as c:                 # nothing connects yet
        item = await c.send("@bob" → fingerprint, "晚安")   # durable in the outbox first
        await c.connect()                         # tries the brokers of the cloud in turn
        await c.wait_stored([item], timeout=30)
        async for ev in c.events(): ...           # Shown, Refused, Held, GroupChanged, ...

Composition: a `Link` (sans-IO connection and login) per broker socket, an `Outbox`, an
`Inbox`, a `Keyring`, `Groups`, a `Composer`, the `LocalStore`. The event loop only moves
frames: everything that runs gpg or touches the store runs on one worker thread (so store
transactions never interleave), key-server look-ups on another (so a slow key server delays
only the messages waiting for it, never the receive path).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import msgspec
import structlog
import zmq
import zmq.asyncio
from zmq.utils import z85

from tits import wire
from tits.errors import BrokerError, ConfigError, IdentityError, KeyServerError, TitsError
from tits.home import Home
from tits.login import build_blob
from tits.session import direct_conversation_id

from . import link as L
from . import mentions
from .compose import Composer
from .connection import BrokerURL, Incoming
from .controls import clean_announcement, reaction_payload, settings_payload
from .devices import DeviceChecker, Sightings
from .groups import Groups, require_key
from .inbox import Batch, Inbox
from .keyring import Keyring, rotation
from .model import (
    ANNOUNCE_MIME,
    LIFETIME_MAX_S,
    LIFETIME_MIN_S,
    REACTION_MIME,
    REACTIONS,
    RECEIPT_MIME,
    SETTINGS_MIME,
    UNSEND_MIME,
    Announced,
    ChatSettings,
    Event,
    Expired,
    GroupChanged,
    LinkEvent,
    Message,
    Missed,
    Refused,
    SendFailed,
    SendOptions,
    SettingsChanged,
    Skipped,
    Stored,
)
from .opener import NotYet
from .outbox import Outbox
from .store import LocalStore, OutboxItem
from .transfer import Progress, Transfers

log = structlog.get_logger("tits.client")

P = ParamSpec("P")
T = TypeVar("T")
CLOSE_WAIT_S = 10.0  # for the worker to finish what it is doing and close the store
LOOKUP_TRIES = 3  # asks of the key server before a certificate counts as found nowhere
LOOKUP_BACKOFF_S = 3.0  # the wait before the next ask grows by this
ANSWER_S = 4.0  # a broker silent this long is reported at once, and the next one tried
MAX_LEARNT_BROKERS = 16
# a login refused for the broker's own trouble, not ours: try the next broker, then again
_TRY_ANOTHER = frozenset({"timeout", "unreachable", "busy", "login-unavailable", "rate-limited"})


class Client:
    def __init__(
        self,
        home: Home,
        *,
        broker: str | None = None,
        keyserver: str | None = None,
        answer_s: float = ANSWER_S,
        listed: bool | None = None,
    ) -> None:
        home.require()
        self.home = home
        self.me = home.fingerprint
        self.identity = home.identity
        self.answer_s = answer_s
        self.broker_arg = broker
        self.keyserver = keyserver or home.config.get("keyserver")
        self.listed = bool(home.config.get("listed", True)) if listed is None else listed
        self.store = LocalStore(home.path)
        _, cert_bytes, cert_sig = home.certificate
        self.certificate = (cert_bytes, cert_sig)
        self.card = (cert_bytes, cert_sig, home.device.prove(cert_bytes))  # what key messages carry
        self.keyring = Keyring(self.store, self.identity, self.me, **rotation(home.config))
        self.devices = DeviceChecker(
            self.store, self.identity, self.me, self.certificate,
            revocations=home.path / "revoked-devices.json", recheck=bool(self.keyserver),
        )  # fmt: skip
        ensure = require_key(self.identity, self._fetch_key if self.keyserver else None)
        self.groups = Groups(self.store, self.identity, self.me, self.keyring, self.card, ensure)
        self.composer = Composer(
            self.store, self.me, home.device, self.card, self.keyring, self.groups,
            ensure, self.sendable,
        )  # fmt: skip
        self.inbox = Inbox(
            self.store, self.identity, self.me, self.keyring, self.groups, self.devices,
            ensure, self._keep_media,
        )  # fmt: skip
        self.inbox.media_folder = home.path / "media"
        self.outbox = Outbox(self.store)
        self.sightings = Sightings(home.path / "devices-seen.json")
        self.outbox.load()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="tits-worker")
        # media: reading, hashing and writing chunks, apart from gpg and the store
        self._media_io = ThreadPoolExecutor(1, thread_name_prefix="tits-media")
        self.transfers = Transfers(self._send_frames, self.wait_ready, self._run_media)
        self._lookups = ThreadPoolExecutor(2, thread_name_prefix="tits-lookup")
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self.link: L.Link | None = None
        self.url: BrokerURL | None = None
        self.welcome: wire.Welcome | None = None
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._incoming: list[Incoming] = []
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._down: asyncio.Future[L.Down] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._looked_up: dict[tuple[str, str], float] = {}
        self._rechecking: set[str] = set()
        self._recheck_again: set[str] = set()
        self.received = 0  # deliveries since login (for draining)
        self.processing = False  # a batch is being opened on the worker
        self.last_delivery = 0.0
        self._names: dict[str, str] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        self._close_socket(bye=True)
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        # not .result() on the loop: the worker may be busy (a gpg call, a key server that is
        # slow to answer) and the app's Ctrl+Q waited on it, sometimes for good
        closing = asyncio.get_running_loop().run_in_executor(self._worker, self.store.close)
        try:
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_WAIT_S)
        except TimeoutError:
            log.warning("client.close_slow", waited_s=CLOSE_WAIT_S)
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._media_io.shutdown(wait=False, cancel_futures=True)  # a hash in progress ends with us
        self._lookups.shutdown(wait=False, cancel_futures=True)

    async def work(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the worker thread (gpg, the store): never on the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, lambda: fn(*args, **kwargs))

    async def _run_media(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._media_io, lambda: fn(*args))

    async def wait_ready(self, timeout: float) -> None:
        """Until the link is logged in (a failover or a re-login may be under way)."""
        deadline = time.monotonic() + timeout
        while self.link is None or self.link.state is not L.State.READY:
            if time.monotonic() >= deadline:
                raise BrokerError("no broker to send to", code="timeout")
            await asyncio.sleep(0.05)

    # -- brokers ---------------------------------------------------------------------------------

    def candidates(self) -> list[str]:
        """The broker to use first (given, or the one in the config), then the others of its
        cloud that the last welcome named."""
        first = self.broker_arg or self.home.config.get("broker")
        learnt = [u for u in self.home.config.get("cloud_brokers", []) if isinstance(u, str)]
        out = list(dict.fromkeys([u for u in [first, *learnt] if u]))
        if not out:
            raise ConfigError(
                "no broker: give --broker URL, or set one with `tits init --broker URL`"
            )
        return out

    async def connect(self, timeout: float = 30.0) -> wire.Welcome:
        """Log in at the first broker that answers; each silent one is reported (LinkEvent)
        after `answer_s` and the next tried, round after round until `timeout`."""
        deadline = time.monotonic() + timeout
        tried: list[str] = []
        while True:
            for url in self.candidates():
                try:
                    return await self._login_at(url, max(1.0, deadline - time.monotonic()))
                except BrokerError as exc:
                    tried.append(f"{BrokerURL.parse(url).address} ({exc.message})")
                    await self._events.put(LinkEvent(state="unreachable", broker_url=url,
                                                     detail=exc.message))  # fmt: skip
                    if exc.code not in _TRY_ANOTHER:
                        raise
                if time.monotonic() >= deadline:
                    raise BrokerError(
                        "no broker answered: " + "; ".join(dict.fromkeys(tried)), code="timeout"
                    )
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    async def _login_at(self, url_text: str, timeout: float) -> wire.Welcome:
        self._close_socket(bye=False)
        url = BrokerURL.parse(url_text)
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        public, secret = zmq.curve_keypair()
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey = url.server_key
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.sndhwm = sock.rcvhwm = 100_000
        sock.reconnect_ivl = 100
        sock.reconnect_ivl_max = 2000
        sock.connect(url.address)
        self._sock, self.url, self._curve_public = sock, url, public
        self.link = L.Link(self.me, answer_s=min(self.answer_s, timeout))
        self._ready.clear()
        self._down = asyncio.get_running_loop().create_future()
        self._tasks += [asyncio.create_task(self._read(sock)), asyncio.create_task(self._tick())]
        if not any(t.get_name() == "tits-expiry" for t in self._tasks):
            self._tasks.append(asyncio.create_task(self._expiry(), name="tits-expiry"))
        if not any(t.get_name() == "tits-process" for t in self._tasks):
            self._tasks.append(asyncio.create_task(self._process(), name="tits-process"))
        await self._apply(self.link.start(time.monotonic()))
        ready = asyncio.ensure_future(self._ready.wait())
        waiters: set[asyncio.Future[Any]] = {ready, self._down}
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            down = self._down.result()
            self._close_socket(bye=False)
            code = "timeout" if down.why == "unreachable" else (down.code or "login-refused")
            raise BrokerError(down.detail, code=code)
        assert self.welcome is not None
        return self.welcome

    def _close_socket(self, bye: bool) -> None:
        for t in [t for t in self._tasks if t.get_name() != "tits-process"]:
            t.cancel()
        self._tasks = [t for t in self._tasks if t.get_name() in ("tits-process", "tits-expiry")]
        if self._sock is not None:
            if bye and self.link is not None:
                for a in self.link.close():
                    if isinstance(a, L.Transmit):
                        try:
                            self._sock.send_multipart(a.frames(), zmq.NOBLOCK)
                        except zmq.ZMQError:
                            pass
            self._sock.close(linger=0)
            self._sock = None

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            if self.link is not None:
                await self._apply(self.link.received(frames, time.monotonic()))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            if self.link is None:
                continue
            now = time.monotonic()
            await self._apply(self.link.tick(now))
            if self.link.state is L.State.READY:
                for env, body in self.outbox.due(now):
                    await self._send_frames([env, body])
                if self.inbox.held:
                    self._wake.set()  # a held text may have waited out its KEY_WAIT_S

    async def _send_frames(self, frames: list[bytes]) -> None:
        if self._sock is not None:
            await self._sock.send_multipart(frames)

    async def _apply(self, actions: list[L.Action]) -> None:
        for a in actions:
            if isinstance(a, L.Transmit):
                await self._send_frames(a.frames())
            elif isinstance(a, L.Prove):
                asyncio.create_task(self._prove(a.challenge))
            elif isinstance(a, L.Up):
                self.welcome = a.welcome
                self.received = 0
                self.last_delivery = time.monotonic()
                await self.work(self._learn_brokers, a.welcome)
                self.outbox.resend_now()
                self._ready.set()
                await self._events.put(LinkEvent(state="ready", broker_url=str(self.url)))
                gap = getattr(a.welcome, "gap", None)
                if gap is not None:
                    await self._events.put(Missed(broker_url=str(self.url),
                        retention_s=gap.retention_s, missed=gap.missed, oldest=gap.oldest,
                        newest=gap.newest, seen=gap.seen))  # fmt: skip
            elif isinstance(a, L.MediaReply):
                self.transfers.on_reply(a.msg, a.body)
            elif isinstance(a, L.Down):
                self.transfers.link_lost()
                if self._down is not None and not self._down.done():
                    self._down.set_result(a)
                if self._ready.is_set():
                    self._ready.clear()
                    lost = LinkEvent(state="unreachable", broker_url=str(self.url), detail=a.detail)
                    await self._events.put(lost)
                    asyncio.create_task(self._failover())
            elif isinstance(a, L.Delivered):
                self._incoming.extend(a.items)
                self.received += len(a.items)
                self.last_delivery = time.monotonic()
                self._wake.set()
            elif isinstance(a, L.Acked):
                for done in await self.work(self.outbox.acked, a.ids):
                    broker = self.link.broker if self.link else ""
                    await self._events.put(Stored(id=done.item.id, broker=broker or ""))
            elif isinstance(a, L.BrokerRefusal):
                failed = await self.work(self.outbox.refused, a.ref, a.code, a.message)
                if failed is not None:
                    await self._events.put(SendFailed(id=failed.item.id, code=a.code,
                                                      reason=a.message))  # fmt: skip

    async def _prove(self, challenge: wire.Challenge) -> None:
        link = self.link
        try:
            login = await self.work(self._build_login, challenge)
        except TitsError as exc:
            if link is not None:
                await self._apply(link.prove_failed(exc.message))
            return
        if link is self.link and link is not None:
            await self._apply(link.proved(login, time.monotonic()))

    def _build_login(self, challenge: wire.Challenge) -> wire.Login:
        broker = challenge.broker
        if not self.identity.has_key(broker):
            if not challenge.key:
                raise BrokerError(f"broker {broker[:16]} sent no key", code="login-refused")
            scanned = self.identity.gpg.scan_keys_mem(challenge.key.decode("utf-8", "replace"))
            if {str(k.get("fingerprint", "")).upper() for k in scanned} != {broker}:
                raise IdentityError("the broker's key does not match its fingerprint")
            self.identity.import_public(challenge.key)
        cert, sig = self.certificate
        blob = build_blob(
            self.identity, self.me, challenge.nonce, broker, z85.decode(self._curve_public),
            cert, sig,
        )  # fmt: skip
        pubkey = self.identity.export_public(self.me).encode()
        # batch: many deliveries a message (a group's fan-out, a backlog) cost the broker
        # and this client a frame and a CURVE box less each
        return wire.Login(
            blob=blob, fingerprint=self.me, pubkey=pubkey, listed=self.listed, batch=True
        )

    def _learn_brokers(self, welcome: wire.Welcome) -> None:
        urls = [u for u in getattr(welcome, "brokers", [])][:MAX_LEARNT_BROKERS]
        if urls and urls != self.home.config.get("cloud_brokers"):
            self.home.save_config(cloud_brokers=urls)

    async def _failover(self) -> None:
        try:
            await self.connect(timeout=3600.0)
        except (BrokerError, ConfigError) as exc:
            log.warning("client.failover_failed", why=exc.message[:200])

    # -- sending ---------------------------------------------------------------------------------

    def resolve(self, who: str) -> str:
        """`@name`, a fingerprint, or `#group`: the outbox target (a fingerprint or #hex)."""
        if who.startswith("#"):
            return "#" + self.groups.find(who).hex()
        from tits.contacts import Contacts

        return Contacts(self.home.path).resolve(who)

    async def send(
        self,
        target: str,
        payload: bytes,
        *,
        kind: str = "text",
        mime: str = "text/plain",
        reply_to: bytes | None = None,
        options: SendOptions | None = None,
    ) -> bytes:
        """Put a message in the durable outbox, then prepare and send it if a broker is up.
        Returns the outbox item id (= the message id)."""
        item_id = await self.work(self.outbox.add, target, kind, payload, mime, reply_to, options)
        await self.flush()
        return item_id

    async def react(self, msg_id: bytes, name: str) -> bytes:
        """React to a message of a chat (one of `REACTIONS`; "" takes ours back)."""
        if name and name not in REACTIONS:
            raise ConfigError(f"no reaction {name!r}: one of {', '.join(REACTIONS)}")
        msg = await self.work(self.store.message, msg_id)
        if msg is None or msg.unsent or msg.expired:
            raise ConfigError("no message with that id here")
        await self.work(self.store.extras.react, msg_id, self.me, name)
        payload = reaction_payload(msg_id, name)
        return await self.send(self.target_of(msg), payload, kind="reaction", mime=REACTION_MIME)

    async def set_unsend_window(self, target: str, seconds: int) -> bytes:
        """A group's 收回 window, for every member (admins only): 0 turns unsend off."""
        if not target.startswith("#"):
            raise ConfigError("only a group has its own rules")
        conv = self.conversation(target)
        state = self.groups.state(conv)
        if state is None or not state.is_admin(self.me):
            raise ConfigError("only the group's admins may change its rules")
        ts = int(time.time() * 1000)
        payload = settings_payload(ChatSettings(unsend_s=seconds))
        item = await self.send(target, payload, kind="settings", mime=SETTINGS_MIME)
        ev = SettingsChanged(conv=conv, by=self.me, unsend_s=seconds, ts=ts)
        await self.work(self.store.extras.set_settings, ev)
        return item

    async def announce(self, target: str, text: str) -> bytes:
        """Put up a 公告 at the top of a chat for everyone in it ("" takes it down)."""
        try:
            text = clean_announcement(text)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        ts = int(time.time() * 1000)
        conv = self.conversation(target)
        item = await self.send(target, text.encode(), kind="announce", mime=ANNOUNCE_MIME)
        ann = Announced(conv=conv, by=self.me, text=text, ts=ts, id=item)
        await self.work(self.store.extras.announce, ann)
        return item

    def member_names(self, group: bytes) -> dict[str, list[str]]:
        """The other members of a group and the names each goes by here (petnames, then the
        name in their key): what @mentions match and complete. May run gpg: off the loop."""
        from tits.contacts import Contacts

        state = self.groups.state(group)
        if state is None:
            return {}
        contacts = Contacts(self.home.path)
        out: dict[str, list[str]] = {}
        for fp in state.members:
            if fp == self.me:
                continue
            try:
                names = list(contacts.names_for(fp))
            except TitsError:
                names = []
            try:
                info = self.identity.key_info(fp)
            except TitsError:
                info = None
            if info is not None and info.name:
                # "Alice 陳" is also @Alice: the given name is what people type
                for name in (info.name, info.name.split()[0]):
                    if name not in names:
                        names.append(name)
            out[fp] = names
        return out

    def mention_options(self, target: str, text: str, lifetime_s: int = 0) -> SendOptions:
        """The options of a text to `target`: whom its @tokens name (groups only; a token
        naming a contact outside the group is refused), and its display lifetime."""
        from tits.contacts import Contacts

        if lifetime_s and not LIFETIME_MIN_S <= lifetime_s <= LIFETIME_MAX_S:
            raise ConfigError(f"a lifetime is {LIFETIME_MIN_S} s to {LIFETIME_MAX_S // 86400} days")
        if not target.startswith("#") or "@" not in text:
            return SendOptions(lifetime_s=lifetime_s)
        contacts = Contacts(self.home.path)

        def known(name: str) -> str | None:
            try:
                return contacts.resolve("@" + name)
            except TitsError:
                return None

        found = mentions.find(text, self.member_names(bytes.fromhex(target[1:])), known)
        if found.outsiders:
            raise ConfigError(f"@{found.outsiders[0]} is not a member of this group")
        return SendOptions(
            lifetime_s=lifetime_s, mentions=found.members, mention_all=found.everyone
        )

    def conversation(self, target: str) -> bytes:
        """The conversation id of an outbox target (a fingerprint, or "#" + group hex)."""
        if target.startswith("#"):
            return bytes.fromhex(target[1:])
        return direct_conversation_id(self.me, target)

    async def _expiry(self) -> None:
        """Remove messages whose display lifetime ran out, as it runs out."""
        while True:
            removed = await self.work(self.store.extras.expire)
            if removed:
                await self._events.put(Expired(ids=removed))
            await asyncio.sleep(1.0)

    # -- media ---------------------------------------------------------------------------------

    async def scan(
        self, path: Path, name: str | None = None, progress: Callable[[int], None] | None = None
    ) -> wire.Manifest:
        """Hash a file (on the media thread): its manifest, thumbnail and MIME type."""
        from tits.media.manifest import scan

        return await self._run_media(lambda: scan(path, name=name, progress=progress))

    async def send_file(
        self, target: str, path: Path, manifest: wire.Manifest, *,
        progress: Progress | None = None, timeout: float = 3600.0,
    ) -> bytes:  # fmt: skip
        """Offer the file, send the signed manifest (the message) once the broker took the
        offer, then the chunks it lacks: receivers fetch while the rest is on its way (their
        broker waits for a chunk still coming). `holder` names the broker they go to, for
        receivers' brokers to fetch from. Returns the message id when every chunk is in."""
        sent: list[bytes] = []

        async def offered() -> None:
            manifest.holder = (self.link.broker if self.link else None) or ""
            body = wire.encode(manifest)
            sent.append(await self.send(target, body, kind="media", mime=wire.MANIFEST_MIME))

        await self.transfers.upload(
            path, manifest, timeout=timeout, progress=progress, offered=offered
        )
        return sent[0]

    async def fetch(
        self, msg: Message, *, progress: Progress | None = None, timeout: float = 3600.0
    ) -> Path:
        """A media message's file, every chunk checked against its signed manifest:
        HOME/media/<sha256>, and a link to it under the sender's name made safe."""
        from tits.media.manifest import decode
        from tits.media.names import safe_name

        if msg.manifest is None:
            raise ConfigError("not a media message")
        m = decode(msg.manifest)
        folder = self.home.path / "media"
        path = await self.transfers.download(
            m, folder, timeout=timeout, progress=progress, sender=msg.sender
        )
        name = safe_name(m.name, m.sha256.hex()[:16])
        await self._run_media(_named_copy, folder, path, name)
        mime = await self._run_media(_sniff_file, path)  # the content's word, not the sender's
        await self.work(self.store.set_file, msg.id, str(path), mime)
        msg.file, msg.mime = str(path), mime
        return path

    def target_of(self, msg: Message) -> str:
        """Where an answer to `msg` goes: its group, or the other side of the chat."""
        if msg.group is not None:
            return "#" + msg.group.hex()
        return msg.to[0] if msg.sender == self.me else msg.sender

    async def read(self, messages: list[Message]) -> list[bytes]:
        """Mark messages read here and tell their senders (已讀): one receipt message per
        conversation however many messages, none when the user turned receipts off."""
        theirs = [m for m in messages if not m.outgoing and not m.unsent]
        await self.work(self.store.mark_read, [m.id for m in messages])
        if not theirs or not self.home.config.get("receipts", True):
            return []
        by_target: dict[str, list[bytes]] = {}
        for m in theirs:
            by_target.setdefault(self.target_of(m), []).append(m.id)
        items = []
        for target, ids in by_target.items():
            for i in range(0, len(ids), 512):
                payload = msgspec.msgpack.encode(ids[i : i + 512])
                items.append(
                    await self.work(self.outbox.add, target, "receipt", payload, RECEIPT_MIME)
                )
        await self.flush()
        return items

    async def unsend(self, msg_id: bytes) -> bytes:
        """Take back one of our messages (收回) within the window: gone here at once, and from
        every member's device when the signed request reaches it."""
        msg = await self.work(self.store.message, msg_id)
        if msg is None or not msg.outgoing:
            raise ConfigError("no message of yours with that id here")
        window = await self.work(self.store.extras.unsend_window, msg.conv)
        if window == 0:
            raise ConfigError("this group does not allow taking messages back")
        if time.time() * 1000 - msg.ts > window * 1000:
            minutes = window // 60
            raise ConfigError(
                f"too late: in this chat a message can be taken back for {minutes} minutes"
            )
        item = await self.work(self.outbox.add, self.target_of(msg), "unsend", msg_id, UNSEND_MIME)
        await self.work(self.store.unsend, msg_id)
        await self.flush()
        return item

    async def flush(self) -> list[SendFailed]:
        """Prepare what waits in the outbox (keys, sealing: on the worker) and send it."""
        failed: list[SendFailed] = []
        for item in await self.work(self.outbox.unprepared):
            try:
                prepared = await self.work(self.composer.prepare, item)
            except TitsError as exc:
                await self.work(self.store.outbox_note, item.id, "failed", exc.message)
                ev = SendFailed(id=item.id, code=exc.code or "error", reason=exc.message)
                failed.append(ev)
                await self._events.put(ev)
                continue
            await self.work(self.outbox.prepared, item, prepared)
            if prepared.skipped:
                await self._events.put(Skipped(id=item.id, members=prepared.skipped))
        if self.link is not None and self.link.state is L.State.READY:
            for env, body in self.outbox.due(time.monotonic()):
                await self._send_frames([env, body])
        return failed

    async def queue_frames(self, target: str, frames: list[tuple[bytes, bytes]]) -> bytes:
        """Control messages (group logs and keys) already made: durable, then sent."""
        from .model import Prepared

        def add() -> bytes:
            item_id = self.outbox.add(target, "control", b"", "application/x-tits-control")
            item = self.store.outbox_item(item_id)
            assert item is not None
            self.outbox.prepared(item, Prepared(frames=frames, message=None))
            return item_id

        item_id = await self.work(add)
        await self.flush()
        return item_id

    async def wait_stored(self, items: list[bytes], timeout: float) -> list[OutboxItem]:
        """Wait until a broker stored these items; returns those still waiting or failed."""
        deadline = time.monotonic() + timeout
        wanted = set(items)
        while time.monotonic() < deadline:
            waiting = self.outbox.waiting(wanted)
            if not waiting:
                break
            await asyncio.sleep(0.05)
        left = []
        for i in wanted:
            item = await self.work(self.store.outbox_item, i)
            if item is not None:
                left.append(item)
        return left

    def sendable(self, fp: str) -> bool:
        """In a secure group: confirmed, and its keys unchanged since."""
        seen = self.store.confirmation(fp)
        return seen is not None and seen == self.identity.subkeys(fp)

    # -- groups ----------------------------------------------------------------------------------

    async def group_create(self, name: str, secure: bool) -> bytes:
        return await self.work(self.groups.create, name, secure)

    async def group_change(
        self,
        group: bytes,
        op: str,
        targets: list[str],
        *,
        share_history: bool = False,
        name: str = "",
    ) -> GroupChanged | None:
        change = await self.work(
            self.groups.change, group, op, targets,  # type: ignore[arg-type]
            share_history=share_history, confirmed=self.sendable, name=name,
        )  # fmt: skip
        if change.frames:
            await self.queue_frames("#" + group.hex(), change.frames)
        return change.event

    # -- receiving -------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self._events.get()

    def next_event_nowait(self) -> Event | None:
        try:
            return self._events.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def next_event(self, timeout: float) -> Event | None:
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    async def _process(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            items, self._incoming = self._incoming, []
            self.processing = True  # until its events are out: a drain must not stop here
            seen = {
                i.envelope.device: i.envelope.ts for i in items
                if i.envelope.sender == self.me and i.envelope.device
            }  # fmt: skip
            if seen:
                await self.work(self.sightings.note, seen)
            try:
                batch: Batch = await self.work(self.inbox.process, items)
            except Exception as exc:  # a bug must not stop receiving: log, keep the items
                log.error("client.process_failed", error=repr(exc)[:300])
                self._incoming = items + self._incoming
                self.processing = False
                await asyncio.sleep(1.0)
                continue
            if batch.ack and self.link is not None:
                for i in range(0, len(batch.ack), wire.RECEIVED_MAX):
                    ids = batch.ack[i : i + wire.RECEIVED_MAX]
                    await self._apply(self.link.transmit(wire.Received(ids=ids)))
            for ev in batch.events:
                await self._events.put(ev)
            self.processing = False
            for need in batch.needs:
                self._look_up(need)
            for who in await self.work(self.devices.take_rechecks):
                self._recheck(who)
            for group in batch.rekey:
                asyncio.create_task(self._rekey(group))

    async def _rekey(self, group: bytes) -> None:
        try:
            change = await self.work(self.groups.rekey, group)
            await self.queue_frames("#" + group.hex(), change.frames)
        except TitsError as exc:
            log.warning("client.rekey_failed", why=exc.message[:200])

    async def rekey_groups(self) -> list[bytes]:
        """A new epoch in every group we are in (a device of ours was revoked): the outbox
        items that carry them."""
        items = []
        for gid, _, _ in await self.work(self.store.groups):
            try:
                change = await self.work(self.groups.rekey, gid)
            except TitsError as exc:  # a group we left: nothing to rekey
                log.info("client.rekey_skipped", why=exc.message[:120])
                continue
            items.append(await self.queue_frames("#" + gid.hex(), change.frames))
        return items

    def _look_up(self, need: NotYet) -> None:
        """Ask the key server for a certificate or a key, off the receive path; the held
        deliveries are tried again when the answer is in."""
        if need.need not in ("cert", "pubkey"):
            return
        who = need.what.get("identity", "")
        if not self.keyserver:  # nobody to ask: decide now instead of after KEY_WAIT_S
            if need.need == "cert":
                asyncio.create_task(self._not_found(who, need.what.get("device", "")))
            else:
                self.inbox.unfindable.add(who)
                self._wake.set()
            return
        k = (need.need, who)
        if time.monotonic() - self._looked_up.get(k, -1e9) < 10.0:
            return
        self._looked_up[k] = time.monotonic()
        asyncio.create_task(self._look_up_task(need.need, who, need.what.get("device", "")))

    async def _look_up_task(self, need: str, who: str, device: str) -> None:
        loop = asyncio.get_running_loop()
        from tits.keyclient import KeyClient

        kc = KeyClient(str(self.keyserver), timeout=5.0)
        # a key server that is slow or away is not one that said "no such device": only
        # after LOOKUP_TRIES failed asks is the certificate taken as found nowhere (a text is
        # then shown *not verified*, refused in a secure chat); what waits stays held meanwhile
        for attempt in range(LOOKUP_TRIES):
            try:
                if need == "pubkey":
                    armored = await loop.run_in_executor(self._lookups, kc.get_key, who)
                    await self.work(self.identity.import_public, armored)
                else:
                    found = await loop.run_in_executor(self._lookups, kc.devices, who)
                    await self.work(self._learn_devices, who, device, found)
                break
            except (KeyServerError, TitsError, OSError) as exc:
                log.info("client.lookup_failed", need=need, who=who[:16], attempt=attempt + 1,
                         why=str(exc)[:120])  # fmt: skip
                if attempt + 1 < LOOKUP_TRIES:
                    await asyncio.sleep(LOOKUP_BACKOFF_S * (attempt + 1))
                elif need == "cert":
                    await self.work(self.devices.not_found, who, device)
        self._wake.set()

    def _recheck(self, who: str) -> None:
        """Ask the key server for `who`'s devices again (a key message came: a device may
        have been revoked); one at a time per identity, once more if asked meanwhile."""
        if not self.keyserver:
            return
        if who in self._rechecking:
            self._recheck_again.add(who)
            return
        self._rechecking.add(who)
        asyncio.create_task(self._recheck_task(who))

    async def _recheck_task(self, who: str) -> None:
        from tits.keyclient import KeyClient

        loop = asyncio.get_running_loop()
        try:
            while True:
                self._recheck_again.discard(who)
                kc = KeyClient(str(self.keyserver), timeout=5.0)
                try:
                    found = await loop.run_in_executor(self._lookups, kc.devices, who)
                    await self.work(self._learn_revocations, who, found)
                except (KeyServerError, TitsError, OSError) as exc:
                    log.info("client.recheck_failed", who=who[:16], why=str(exc)[:120])
                if who not in self._recheck_again:
                    return
        finally:
            self._rechecking.discard(who)
            await self.work(self.devices.recheck_done, who)
            self._wake.set()  # what waited for the answer is tried again

    def _learn_revocations(self, who: str, found: list[dict[str, Any]]) -> None:
        import base64

        for d in found:
            if not (d.get("revoked") and d.get("revocation")):
                continue
            try:
                rev = self.devices.revoked(
                    base64.b64decode(d["revocation"], validate=True), str(d["revocation_signature"])
                )
            except (TitsError, KeyError, ValueError, TypeError):
                continue  # a revocation that does not check is not one
            if rev is not None and rev.identity == who:
                log.warning("client.device_revoked", who=who[:16], device=rev.device)

    async def _not_found(self, who: str, device: str) -> None:
        await self.work(self.devices.not_found, who, device)
        self._wake.set()

    def _learn_devices(self, who: str, device: str, found: list[dict[str, Any]]) -> None:
        import base64

        self._learn_revocations(who, found)
        hit = False
        for d in found:
            try:
                if d.get("revoked") and d.get("revocation"):
                    continue
                if d.get("device") == device and not d.get("revoked"):
                    cert = base64.b64decode(d["certificate"])
                    self.devices.learn(who, cert, d["signature"], None)  # keyd checked its proof
                    hit = True
            except (TitsError, KeyError, ValueError, TypeError):
                continue
        if not hit:
            self.devices.not_found(who, device)

    def _fetch_key(self, fp: str) -> str:
        from tits.keyclient import KeyClient

        return KeyClient(str(self.keyserver), timeout=5.0).get_key(fp)

    def _keep_media(self, payload: bytes) -> str:
        folder = self.home.path / "media"
        folder.mkdir(exist_ok=True)
        path = folder / wire.sha256(payload).hex()
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(payload)
            tmp.replace(path)
        return str(path)

    # -- names -----------------------------------------------------------------------------------

    def name_of(self, fp: str) -> str:
        """The petname; else the key's own name, marked, with part of the fingerprint (a
        name from a key is never enough to look like a known contact)."""
        if fp in self._names:
            return self._names[fp]
        from tits.contacts import Contacts

        try:
            names = Contacts(self.home.path).names_for(fp)
        except TitsError:
            names = []
        if names:
            name = names[0]
        elif fp == self.me:
            name = str(self.home.config.get("name", "")) or fp[:16]
        else:
            info = None
            try:
                info = self.identity.key_info(fp)
            except TitsError:
                pass
            name = f"~{info.name} ({fp[:8]})" if info and info.name else fp[:16]
        self._names[fp] = name
        return name

    @property
    def path(self) -> Path:
        return self.home.path


def _sniff_file(path: Path) -> str:
    from tits.media.sniff import SNIFF_BYTES, sniff

    with path.open("rb") as fh:
        return sniff(fh.read(SNIFF_BYTES))


def _named_copy(folder: Path, path: Path, name: str) -> Path:
    """HOME/media/files/<name>: a hard link to the file (a copy where links fail); a name
    another file has already gets the hash's start added. Never outside that folder."""
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    target = files / name
    if target.exists():
        if target.stat().st_ino == path.stat().st_ino:
            return target
        stem, dot, ext = name.rpartition(".")
        tag = path.name[:12]
        target = files / (f"{stem}-{tag}.{ext}" if dot and stem else f"{name}-{tag}")
        if target.exists():
            return target
    if target.resolve().parent != files.resolve():
        raise ConfigError("a media name that leaves the media folder")
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return target


def refused_event(ev: Refused) -> dict[str, Any]:
    return {"id": ev.id.hex(), "from": ev.sender, "reason": ev.reason}
