"""A cloud without the client side: real `Cloud` objects (real GnuPG keys, CURVE, ZAP, PUB/SUB
and peer links on loopback), each driven by its own poll loop thread, as the broker drives it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from tests.support import wait_for  # noqa: F401 - re-exported for the tests
from tits import wire
from tits.broker.admission import Admission
from tits.broker.cloud import Cloud
from tits.broker.signer import BrokerSigner, BrokerVerifier
from tits.identity import Identity

ZAP_DOMAIN = "tits"
T = TypeVar("T")


class RecordingHost:
    def __init__(self) -> None:
        self.arrived: list[tuple[str, wire.Forward, bytes]] = []
        self.acked: list[tuple[bytes, bytes]] = []
        self.relayed: list[bytes] = []
        self.presence: list[set[str]] = []
        self.node: MeshNode | None = None

    def cloud_forward_arrived(self, peer: str, fwd: wire.Forward, body: bytes) -> None:
        """Like the broker: deliver here, or pass on toward the target (then acknowledge)."""
        assert self.node is not None
        cloud = self.node.cloud
        if fwd.target == self.node.fp:
            self.arrived.append((peer, fwd, body))
        elif fwd.hops > 0:
            self.relayed.append(fwd.id)
            onward = msgspec.structs.replace(fwd, hops=fwd.hops - 1, token=b"relay")
            cloud.send_forward(onward, body)
        cloud.ack(peer, fwd.id, fwd.token)

    def cloud_forward_acked(self, peer: str, msg_id: bytes, token: bytes) -> None:
        self.acked.append((msg_id, token))

    def cloud_presence_changed(self, fingerprints: set[str]) -> None:
        self.presence.append(fingerprints)

    def cloud_link_down(self, peer: str) -> None:
        pass


class MeshNode:
    """One broker's cloud half in a thread. Keys persist in `data`, so a node can restart."""

    def __init__(self, data: Path, secret: bytes, seeds: list[str], fingerprint: str = "") -> None:
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        self.identity = Identity(data / "gnupg")
        fp_file = data / "fp"
        if fp_file.exists():
            self.fp = fp_file.read_text()
        else:
            self.fp = self.identity.create_key("titsd test", f"b{time.time_ns()}@tits.invalid")
            fp_file.write_text(self.fp)
        self.secret, self.seeds = secret, seeds
        self.host = RecordingHost()
        self.host.node = self
        self.calls: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError("mesh node did not start")

    def _run(self) -> None:
        ctx = zmq.Context()
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("test.zap"))
        auth.start()
        auth.configure_curve(domain=ZAP_DOMAIN, location=zmq.auth.CURVE_ALLOW_ANY)
        curve_path = self.data / "curve"
        if curve_path.exists():
            secret_key = curve_path.read_bytes()
            curve = (zmq.curve_public(secret_key), secret_key)
        else:
            curve = zmq.curve_keypair()
            curve_path.write_bytes(curve[1])

        def server_socket(kind: int) -> zmq.Socket:
            s = ctx.socket(kind)
            s.curve_server = True
            s.curve_publickey, s.curve_secretkey = curve
            s.zap_domain = ZAP_DOMAIN.encode()
            return s

        self.cloud = Cloud(
            ctx, self.fp, self.data, BrokerSigner(self.identity, self.fp, self.data),
            BrokerVerifier(self.identity), Admission(self.secret), curve, server_socket,
            self.host, "127.0.0.1", 0, 0, f"tcp://127.0.0.1:1#{'00' * 32}",
            "http://127.0.0.1:1", self.seeds,
        )  # fmt: skip
        self.peer_url = self.cloud.peer_url
        self.ready.set()
        poller = zmq.Poller()
        registered: set[zmq.Socket] = set()
        try:
            while not self._stop.is_set():
                if self.cloud.sockets_changed:
                    want = set(self.cloud.sockets())
                    for s in registered - want:
                        poller.unregister(s)
                    for s in want - registered:
                        poller.register(s, zmq.POLLIN)
                    registered = want
                for sock, _ in poller.poll(20):
                    if sock in registered:
                        self.cloud.handle(sock, time.monotonic())
                with self._lock:
                    calls, self.calls = self.calls, []
                for call in calls:
                    call()
                self.cloud.tick(time.monotonic())
                self.cloud.flush()
        finally:
            if self._stop.is_set() and getattr(self, "_graceful", False):
                self.cloud.close()
            else:
                # a crashed broker's threads die with its process; here they would live on,
                # and the verifier's gpg calls restarted this node's agent after the test
                # killed it (one left behind each full run)
                self.cloud.verifier.close()
                self.cloud.peers.router.close(0)
                self.cloud.gossip.pub.close(0)
                for s in registered:
                    s.close(0)
            auth.stop()
            ctx.destroy(linger=0)

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the node's own thread (Cloud is not thread-safe)."""
        with self._lock:
            self.calls.append(fn)

    def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on the node's own thread, waited for."""
        box: list[T] = []
        done = threading.Event()

        def grab() -> None:
            box.append(fn())
            done.set()

        self.call(grab)
        if not done.wait(10):
            raise TimeoutError("node did not answer")
        return box[0]

    def status(self) -> dict:
        return self.run(self.cloud.status)

    def stop(self, graceful: bool = False) -> None:
        """graceful=False is a crash as peers see it: no goodbye, the sockets just vanish."""
        self._graceful = graceful
        self._stop.set()
        self.thread.join(10)
