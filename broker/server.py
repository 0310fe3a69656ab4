"""The broker: one thread runs a tight `zmq.Poller` loop over its sockets.

Each turn drains the client ROUTER without blocking (clientport.py), commits every
accepted message of that batch in one SQLite transaction (group commit), and only then sends
the `Accepted`s and the deliveries. GnuPG (logins) runs in worker threads that report back
through a pipe the poller watches; the status page runs in its own HTTP thread and reads a
snapshot. Nothing here blocks on a peer: sends use NOBLOCK with `ROUTER_MANDATORY`, and a
send that fails is never counted as done.

Sessions are bound to the CURVE public key that ZAP authenticated for the connection (the
frame's ``User-Id``), never to the routing id, which a client can choose.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

from tits import wire

from .admin import AdminServer
from .admission import Admission, load_or_create_secret
from .blobport import BlobPort, Routes
from .blobs import BlobStore, MediaLimits
from .clientport import MONITOR_EVENTS, Batch, ClientPort, Dups, Replies
from .cloud import Cloud
from .config import BrokerConfig, url_host
from .dedup import MAX_RECENT, Dedup
from .delivery import Delivery, Device, SendResult
from .keys import ServerKeys
from .login import LoginVerifier, close_login_home, login_home
from .metrics import Metrics
from .purge import Purge, Purged, sent_by, valid
from .relay import Fanout, Relay
from .revocations import RevocationWatch
from .sessions import SETTLE_MS, Conn, Sessions, ZapPolicy, cloud_client_urls
from .signer import BrokerSigner, BrokerVerifier
from .status import StatusServer, build_snapshot, write_ready
from .store import Job, Row, Store, Writer

log = structlog.get_logger("titsd")


TICK_S = 0.05
HOUSEKEEPING_S = 1.0
SNAPSHOT_S = 0.5
PRUNE_S = 300.0
ZAP_DOMAIN = "tits"
HEARTBEAT_IVL_MS = 10_000
HEARTBEAT_TIMEOUT_MS = 30_000


def _by(sender: str, env: bytes) -> bool:
    return sent_by(env, sender)


class Broker:
    """The loop and its parts, composed: `Sessions` (keys, connections, logins), `Dedup`
    (message ids), `ClientPort` (the client socket), `Delivery` (cursors), `Relay` and
    `Transit` (the cloud), `Store`/`Writer` (the mailbox). Each owns its state; the broker
    wires them together, runs the group commit, and answers the status page through
    `local_presence`, `open_sessions` and `remembered_ids`."""

    def __init__(self, cfg: BrokerConfig) -> None:
        self.cfg = cfg
        self.limits = cfg.limits
        self._stop = threading.Event()
        self.counters = {
            "accepted": 0, "duplicates": 0, "refused": 0, "logins": 0,
            "purged": 0,  # mailbox rows and deliveries in flight taken back (收回)
        }  # fmt: skip
        self._snapshot: dict[str, Any] = {}
        self._presence: list[wire.PresenceEntry] | None = None
        # the settings as a start would read them now, for a reload (main.py sets it: the same
        # file, environment and flags); None: the file alone
        self.load_config: Callable[[], BrokerConfig] | None = None
        self.started = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.cfg
        self.keys = ServerKeys.load_or_create(cfg.data, cfg.name)
        self.fingerprint = self.keys.fingerprint
        self.store = Store(cfg.data / "mailbox.db", cfg.durability)
        self.purged = Purged(self.store.db)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.writer = Writer(cfg.data / "mailbox.db", cfg.durability, self._wake)
        self.dedup = Dedup(cfg.dedup_s)
        loaded, left_out = self.store.recent(int(time.time() - cfg.dedup_s), MAX_RECENT)
        self.dedup.load(loaded, left_out, time.time())
        self.login_identity = login_home(self.keys, cfg.data)
        self.verifier = LoginVerifier(self.keys, cfg.keyserver, self.login_identity)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="titsd-login")

        self.ctx = zmq.Context()
        self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("titsd.zap"))
        self.auth.start()
        self.client = self._server_socket(zmq.ROUTER)
        self.client.router_mandatory = 1
        self.client.maxmsgsize = self.limits.max_frame
        self.client_monitor = self.client.get_monitor_socket(MONITOR_EVENTS)
        self.client.sndhwm = 50_000
        self.client.rcvhwm = 50_000
        self.replies = Replies(self.client)
        self.delivery = Delivery(
            self.store, self._send_to, cfg.limits.window, cfg.retry_s, self._send_many
        )
        self.sessions = Sessions(
            fingerprint=self.fingerprint, armored=self.keys.armored.encode(),
            limits=self.limits, session_timeout=cfg.session_timeout,
            reply=self.replies.reply, delivery=self.delivery,
            register_device=self.register_device, verify=self.verifier.verify,
            pool=self.pool, wake=self._wake, welcome=self._welcome, counters=self.counters,
            gap_of=self._gap_of, left=self._left,
        )  # fmt: skip
        self.port = ClientPort(
            self.client, self.client_monitor, limits=self.limits, sessions=self.sessions,
            dedup=self.dedup, delivery=self.delivery, commit=self._commit,
            senders_of=self.store.senders_of, counters=self.counters,
        )  # fmt: skip
        self.blobs = BlobStore(cfg.data, MediaLimits(
            retention_s=cfg.media_retention_s, quota_bytes=cfg.media_quota_bytes,
            max_size=cfg.media_max_size, max_chunks=cfg.media_max_chunks,
            rate_bytes=cfg.media_rate_bytes,
        ))  # fmt: skip
        self.media = BlobPort(
            self.blobs, self.fingerprint, self.replies, self.counters, wake=self._wake
        )
        self.port.media = self.media
        self.auth.configure_curve_callback(
            domain=ZAP_DOMAIN, credentials_provider=ZapPolicy(self.sessions.banned)
        )
        self.revocations = (
            RevocationWatch(
                cfg.keyserver, self.verifier,
                lambda i, d: (i, d) in self.sessions.by_device, self._wake,
            ).start()
            if cfg.keyserver else None
        )  # fmt: skip
        self.client_port = self._bind(self.client, cfg.client_port)
        self.url = self.keys.url(url_host(cfg.public_host), self.client_port)

        self.metrics = Metrics(self)  # read at scrape time, in the HTTP thread
        self.http = StatusServer(  # an IPv6 bind ("::") makes an IPv6 socket (v4 too, on Linux)
            cfg.bind, cfg.http_port, self.snapshot, self.keys.armored, token=cfg.status_token,
            metrics=self.metrics.render,
        )  # fmt: skip
        self.http_port = self.http.port
        self.http_url = f"http://{url_host(cfg.public_host)}:{self.http_port}"

        secret = load_or_create_secret(cfg.cloud_secret or cfg.data / "cloud.secret")
        self.relay = Relay(self.fingerprint, self.store, self.delivery, self, self.purged)
        self.cloud = Cloud(
            self.ctx, self.fingerprint, cfg.data,
            BrokerSigner(self.keys.identity, self.fingerprint, cfg.data),
            BrokerVerifier(self.keys.identity), Admission(secret),
            (self.keys.curve_public, self.keys.curve_secret), self._server_socket, self.relay,
            url_host(cfg.bind), cfg.peer_port, cfg.pub_port, self.url, self.http_url, cfg.join,
            cfg.name, public_host=cfg.public_host, media_direct=cfg.media_direct,
        )  # fmt: skip
        self.relay.start(self.cloud)
        self.media.cloud = Routes(self.cloud)
        self.cloud.media = self.media
        self.peer_port, self.pub_port = self.cloud.peers.port, self.cloud.gossip.port
        self._refresh_snapshot()
        self.http.start()
        # `titsd admin` (<data>/admin.sock) and SIGHUP's reload
        self.admin = AdminServer(self, cfg.data, self._wake, self.load_config)
        self.admin.start()

        self.poller = zmq.Poller()
        self.poller.register(self.client, zmq.POLLIN)
        self.poller.register(self.client_monitor, zmq.POLLIN)
        self.poller.register(self._wake_r, zmq.POLLIN)
        self._cloud_socks: set[zmq.Socket] = set()
        self._sync_poller()
        self.ready_path = write_ready(self)
        log.info(
            "broker.started",
            id=self.fingerprint,
            url=self.url,
            http=self.http_url,
            peer_port=self.peer_port,
            pub_port=self.pub_port,
            data=str(cfg.data),
        )
        self.started.set()

    def _welcome(self) -> tuple[int, list[str]]:
        """What a Welcome tells a client of the cloud: how long to listen for mail from other
        brokers, and the brokers to try when this one stops answering."""
        settle = SETTLE_MS if self.cloud.peers.up_peers() else 0
        return settle, cloud_client_urls(self.cloud)

    def _gap_of(self, user: str, device: str) -> wire.Gap | None:
        """What retention took from this device, for its welcome; counted once told."""
        try:
            gap = self.store.gap(user, device, self.cfg.max_age_s)
        except sqlite3.Error:
            log.exception("store.gap_failed")
            return None
        if gap is not None and gap.missed:
            self.writer.submit(Job(told=[(user, device, gap.newest)]))
            log.info("retention.gap_told", user=user[:16], device=device, missed=gap.missed)
        return gap

    def _left(self, user: str, device: str) -> None:
        """A device logged out: the time it was last here (`seen`, for retention.gap)."""
        self.writer.submit(Job(devices=[(user, device)]))

    # -- what the status page reads ------------------------------------------------------------

    def local_presence(self) -> list[wire.PresenceEntry]:
        """Who is online here, as last handed to the cloud (at most a tick old): building it
        afresh for each snapshot cost 24 ms of the loop at 10,000 users, twice a second."""
        if self._presence is None:
            self._presence = self.sessions.local_presence()
        return self._presence

    def open_sessions(self) -> int:
        return self.sessions.open_sessions()

    def remembered_ids(self) -> int:
        return len(self.dedup)

    def _server_socket(self, kind: int) -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.linger = 0
        s.ipv6 = ":" in self.cfg.bind  # before bind: libzmq ignores it after
        s.curve_server = True
        s.curve_secretkey = self.keys.curve_secret
        s.curve_publickey = self.keys.curve_public
        s.zap_domain = ZAP_DOMAIN.encode()
        s.heartbeat_ivl = HEARTBEAT_IVL_MS
        s.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
        s.handshake_ivl = 5000
        return s

    def _bind(self, sock: zmq.Socket, port: int) -> int:
        if port == 0:
            return sock.bind_to_random_port(f"tcp://{url_host(self.cfg.bind)}")
        sock.bind(f"tcp://{url_host(self.cfg.bind)}:{port}")
        return port

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler or another thread)."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"s")
        except (OSError, AttributeError):
            pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except OSError:
            pass

    def close(self) -> None:
        if self.revocations is not None:
            self.revocations.stop()
        self.writer.submit(Job(cursors=self.delivery.cursor_moves()))
        self.writer.close()  # every accepted message is committed before we go
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.http.stop()
        self.admin.stop()
        self.metrics.close()
        self.cloud.close()  # a goodbye advert, so the others repair without waiting
        self.client.disable_monitor()
        self.client_monitor.close(linger=0)
        self.client.close(linger=0)
        self.auth.stop()
        self.ctx.term()
        self.store.close()
        self.media.close()
        self.blobs.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        subprocess.run(
            ["gpgconf", "--homedir", str(self.keys.identity.home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
            timeout=10,
        )
        if self.login_identity is not self.keys.identity:
            close_login_home(self.login_identity.home)
        try:
            Path(self.ready_path).unlink()
        except OSError:
            pass
        log.info("broker.stopped", id=self.fingerprint)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        next_tick = next_house = next_snap = time.monotonic()
        # a short max_age_s (a test's, a small broker's) is pruned as often as it asks for
        prune_s = max(1.0, min(PRUNE_S, self.cfg.max_age_s / 4))
        next_prune = next_house + min(10.0, prune_s)
        client, wake, cloud, monitor = self.client, self._wake_r, self.cloud, self.client_monitor
        while not self._stop.is_set():
            due = cloud.flush_due()
            wait_ms = TICK_S * 1000
            if due is not None:
                wait_ms = min(wait_ms, max(1.0, (due - time.monotonic()) * 1000))
            events = dict(self.poller.poll(math.ceil(wait_ms)))
            if monitor in events:  # first: a lost link is unbound before anything is sent
                self.port.drain_monitor()
            if client in events:
                self.port.drain()
            if wake in events:
                self._drain_wake()
            now = time.monotonic()
            ours = (client in events) + (wake in events) + (monitor in events)
            if len(events) > ours:
                for sock in events:
                    if sock in self._cloud_socks:
                        self._guard(cloud.handle, sock, now)
                self._guard(self.relay.flush)
                if cloud.sockets_changed:
                    self._sync_poller()
            if now >= next_tick:
                next_tick = now + TICK_S
                self._guard(cloud.tick, now)
                if self.sessions.presence_due:
                    self.sessions.presence_due = False
                    self._presence = self.sessions.local_presence()
                    cloud.set_local_users(self._presence)
                if cloud.sockets_changed:
                    self._sync_poller()
                self._guard(self.relay.tick)
                self.delivery.pump(now)
                if now >= next_house:
                    next_house = now + HOUSEKEEPING_S
                    self._housekeeping(now)
                if now >= next_snap:
                    next_snap = now + SNAPSHOT_S
                    self._refresh_snapshot()
                if now >= next_prune:
                    next_prune = now + max(1.0, min(PRUNE_S, self.cfg.max_age_s / 4))
                    self._prune()
            self._guard(cloud.flush, time.monotonic())  # what this pass queued, in batches

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        done = self.writer.done
        committed = False
        while True:
            try:
                job = done.get_nowait()
            except queue.Empty:
                break
            try:
                self._committed(job)
            except Exception:
                log.exception("store.after_commit_failed")
            committed = True
        if committed:
            self.delivery.pump()
        self.sessions.drain_results()
        self.admin.run_pending()
        self.media.drain()

    # -- client frames ------------------------------------------------------------------------

    def _commit(self, batch: Batch, dups: Dups) -> None:
        """Hand the batch to the writer; `_committed` answers and delivers once it is on disk.
        Duplicates are answered after this commit too: their original may be in it."""
        store = self.store
        ts_ms = time.time_ns() // 1_000_000
        ts_s = ts_ms // 1000
        rows: list[Row] = []
        fanout: Fanout = []
        add_row, add_fanout = rows.append, fanout.append
        seq = store.next_seq
        encode = wire.encode
        Deliver = wire.Deliver  # noqa: N806
        purges = self._purges(batch, ts_s)
        purged = self.purged
        check = bool(purged)  # (none, almost always: nothing to look up per message)
        for conn, msg, body in batch:
            if check and purged.hit(msg.id, msg.sender):
                continue  # taken back already (a resend after its unsend): accepted, not kept
            device = conn.device.device if conn.device is not None else ""
            env = encode(
                Deliver(
                    id=msg.id, sender=msg.sender, to=msg.to, group=msg.group, ts=ts_ms,
                    device=device or None, purge=msg.purge,
                )
            )  # fmt: skip
            # one row per mailbox: the recipients', and the sender's for their other devices
            # (the sending device skips it); the body is stored once for all of them
            sender, msg_id, to = msg.sender, msg.id, msg.to
            users = (
                to + [sender] if len(to) == 1 and to[0] != sender else dict.fromkeys([*to, sender])
            )
            for user in users:
                skip = device if user == sender else ""
                add_row((seq, user, msg_id, sender, env, body, ts_s, skip))
                add_fanout((user, seq, msg_id, env, body, skip))
                seq += 1
        store.next_seq = seq  # (what `store.allocate` does, a row at a time)
        self.port.moves_due = False
        self.writer.submit(
            Job(
                rows=rows, cursors=self.delivery.cursor_moves(), purges=purges,
                token=(batch, dups, fanout),
            )
        )  # fmt: skip

    def _purges(self, batch: Batch, now_s: int) -> list[Purge]:
        """The unsends of this batch (收回), remembered at once: the purged message may be in
        this batch too, or come later."""
        out: list[Purge] = []
        for _, msg, _ in batch:
            if msg.purge is not None and valid(msg.purge, msg.sender, msg.id, now_s):
                out.append((msg.purge, msg.sender))
                self.purged.add(msg.purge, msg.sender)
        return out

    def _dropped(self, job: Job) -> None:
        """After a commit with purges: what is in flight of those messages goes too."""
        dropped = 0
        for msg_id, sender in job.purges:
            dropped += self.delivery.drop(msg_id, functools.partial(_by, sender))
        self.counters["purged"] += job.purged + dropped
        log.info("store.purged", messages=len(job.purges), rows=job.purged, inflight=dropped)

    def _committed(self, job: Job) -> None:
        if job.prune is not None and job.pruned:
            log.info("store.pruned", messages=job.pruned)
        if job.token is None:
            if job.error is not None:
                log.error("store.commit_failed", error=str(job.error))
            return
        if job.purges and job.error is None:
            self._dropped(job)
        if len(job.token) == 2:  # forwards from the cloud (relay.flush)
            done, fanout = job.token
            if job.error is not None:
                log.error("store.commit_failed", error=str(job.error), forwards=len(fanout))
            else:
                self._fan_out(fanout)
            done(job.error is None)
            return
        batch, dups, fanout = job.token
        if job.error is not None:
            log.error("store.commit_failed", error=str(job.error), messages=len(batch))
            for conn, msg, _ in batch:
                self.dedup.forget(msg.id)
                self.sessions.error(conn, "storage", "the broker could not store it; retry", msg.id)
            return
        self.counters["accepted"] += len(batch)
        self.counters["duplicates"] += len(dups)
        by_conn: dict[Conn, list[bytes]] = {}
        for conn, msg, _ in batch:
            by_conn.setdefault(conn, []).append(msg.id)
        for conn, msg_id in dups:
            if msg_id in self.dedup:  # not if its original's commit failed meanwhile
                by_conn.setdefault(conn, []).append(msg_id)
        for conn, ids in by_conn.items():
            for i in range(0, len(ids), wire.RECEIVED_MAX + 1):
                chunk = ids[i : i + wire.RECEIVED_MAX + 1]
                self.replies.reply(conn.route, wire.Accepted(id=chunk[0], ids=chunk[1:]))
        self._fan_out(fanout)

    def _fan_out(self, fanout: Fanout) -> None:
        # a user with no device here may be online at another broker: a relay device takes
        # it there
        self.delivery.stored_many(fanout, self.relay.sync_remote)

    def _send_many(self, dev: Device, envs: list[bytes], bodies: list[bytes]) -> SendResult:
        return self.replies.deliver_many(dev.route, envs, bodies)  # (real devices only)

    def _send_to(self, dev: Device, env: bytes, body: bytes) -> SendResult:
        if not dev.route:  # a relay device: the user is at another broker, or in transit
            return self.relay.send(dev, env, body)
        return self.replies.deliver(dev.route, env, body)

    # -- the cloud ----------------------------------------------------------------------------

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        """Peers are strangers too: whatever their input breaks, the broker goes on serving."""
        try:
            fn(*args)
        except Exception:
            log.exception("cloud.handler_failed")

    def _sync_poller(self) -> None:
        want = set(self.cloud.sockets())
        for sock in self._cloud_socks - want:
            self.poller.unregister(sock)  # closed ones too: polling a closed socket fails
        for sock in want - self._cloud_socks:
            self.poller.register(sock, zmq.POLLIN)
        self._cloud_socks = want

    def submit_relay(
        self, rows: list[Row], fanout: Fanout, done: Callable[[bool], None],
        purges: list[Purge] | None = None,
    ) -> None:  # fmt: skip
        self.writer.submit(
            Job(
                rows=rows, cursors=self.delivery.cursor_moves(), purges=purges or (),
                token=(done, fanout),
            )
        )  # fmt: skip

    def register_device(self, user: str, device: str) -> None:
        self.writer.submit(Job(devices=[(user, device)]))
        # a device logging in here may be the user's second, with the first at another
        # broker: what reaches this mailbox must go there too (the relay device toward it
        # was not made when the other's presence came, if the user was then unknown here)
        self.relay.sync_remote(user)

    # -- housekeeping -------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        self.delivery.retry(now)
        if self.port.moves_due:
            self.port.moves_due = False
            self.writer.submit(Job(cursors=self.delivery.cursor_moves()))
        self.sessions.expire(now)
        self.dedup.prune(now)
        for key in self.revocations.take() if self.revocations else []:
            conn = self.sessions.by_device.get(key)
            if conn is not None:  # the owner revoked this device while it was logged in
                self.sessions.error(conn, "login-refused", "this device was revoked by its owner")
                self.sessions.logout(conn)
        self.media.tick(now)

    def _prune(self) -> None:
        self.writer.submit(Job(prune=(time.time(), self.cfg.keep_s, self.cfg.max_age_s)))
        self._guard(self.media.gc)

    def _refresh_snapshot(self) -> None:
        self._snapshot = build_snapshot(self)

    def snapshot(self) -> dict[str, Any]:
        return self._snapshot
