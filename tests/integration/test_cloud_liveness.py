"""Liveness on a loaded machine, piece by piece: silence counts only while our own loop runs
on schedule, and what GnuPG must check about other brokers is budgeted per source and done
off the loop. (The whole-cloud behaviour is in test_cloud_stall.py.)"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import zmq

from tits import wire
from tits.broker.admission import Admission
from tits.broker.peers import HEARTBEAT_EXPIRY, HEARTBEAT_INTERVAL, Peer, PeerLinks
from tits.broker.signer import LEARN_BURST, LEARN_RATE, BrokerVerifier, CertPending
from tits.device import Certificate, DeviceKey
from tits.errors import VerificationError


class Events:
    def __init__(self) -> None:
        self.down: list[str] = []

    def on_link_up(self, peer: Peer) -> None:
        pass

    def on_link_down(self, peer: Peer) -> None:
        self.down.append(peer.id)

    def on_dial_failed(self, url: str, expect: str | None) -> None:
        pass

    def on_peer_message(self, peer: Peer, msg: object, body: bytes | None) -> None:
        pass


@pytest.fixture
def links():
    ctx = zmq.Context()
    events = Events()
    router = ctx.socket(zmq.ROUTER)
    public, secret = zmq.curve_keypair()
    peers = PeerLinks(
        ctx, "A" * 40, public, secret, Admission(os.urandom(32)), events,
        lambda: wire.PeerHello(broker="A" * 40, address="x"), router, "tcp://127.0.0.1:0",
    )  # fmt: skip
    yield peers, events
    peers.close()
    ctx.term()


def test_our_own_stall_is_not_our_peers_silence(links: tuple[PeerLinks, Events]) -> None:
    peers, events = links
    peer = peers.peers["B" * 40] = Peer("B" * 40, up=True, last_heard=100.0, last_beat=100.0)
    t = 100.0
    peers.tick(t)
    peers.tick(t + 1.5)  # the loop did not run for 1.5 s (SIGSTOP, a GC, a starved CPU)
    assert not events.down and peer.up
    assert peers.lag_s == pytest.approx(1.5)
    # but silence while the loop runs on schedule is silence: the peer is dead
    t += 1.5
    while t < 100.0 + 1.5 + HEARTBEAT_EXPIRY + 0.2:
        t += 0.05
        peers.tick(t)
    assert events.down == ["B" * 40]


def test_a_loop_that_is_slow_throughout_still_notices_a_dead_peer(
    links: tuple[PeerLinks, Events],
) -> None:
    """Passes of 0.3 s: only what each is over a heartbeat interval is forgiven."""
    peers, events = links
    peers.peers["B" * 40] = Peer("B" * 40, up=True, last_heard=0.0, last_beat=0.0)
    t, passes = 0.0, 0
    while not events.down and passes < 100:
        t += 0.3
        passes += 1
        peers.tick(t)
    assert events.down == ["B" * 40]
    assert t <= HEARTBEAT_EXPIRY * 0.3 / (0.3 - HEARTBEAT_INTERVAL) + 0.6


class FakeIdentity:
    """GnuPG as the worker sees it, counting calls: every key is junk, so every check fails."""

    def __init__(self) -> None:
        self.calls = 0
        self.gpg = self

    def has_key(self, fingerprint: str) -> bool:
        self.calls += 1
        return False

    def scan_keys_mem(self, key: bytes) -> list[dict[str, Any]]:
        self.calls += 1
        return []


def fake_advert() -> wire.SignedAdvert:
    fp = os.urandom(20).hex().upper()
    device = DeviceKey.generate()
    now = int(time.time())
    cert = Certificate(fp, device.public_key, "titsd-gossip", now, now + 86400)
    data = wire.encode(wire.Advert(broker=fp, address="tcp://127.0.0.1:9#" + "00" * 32, seq=1))
    return wire.SignedAdvert(advert=data, signature=device.sign(data), device=device.id,
                             cert=cert.to_bytes(), cert_sig=b"x", key=b"junk")  # fmt: skip


def test_certificate_checks_are_budgeted_per_source_and_refusals_remembered() -> None:
    clock = [1000.0]
    identity = FakeIdentity()
    verifier = BrokerVerifier(identity, clock=lambda: clock[0])  # type: ignore[arg-type]
    flood = [fake_advert() for _ in range(200)]
    for signed in flood:
        with pytest.raises(CertPending):
            verifier.advert(signed)  # unknown certificate: the loop never runs GnuPG for it
        verifier.hold(signed, "mallory")
    assert verifier.submitted == LEARN_BURST and verifier.over_budget == 200 - LEARN_BURST
    honest = fake_advert()
    verifier.hold(honest, "bob")  # another source keeps its own budget
    assert verifier.submitted == LEARN_BURST + 1
    verifier.settle()
    assert verifier.ready() == []  # every one refused (junk keys), nothing to replay
    assert identity.calls == 2 * (LEARN_BURST + 1)
    with pytest.raises(VerificationError, match="refused before"):
        verifier.hold(flood[0], "mallory")  # remembered: no second GnuPG run
    clock[0] += 1.0  # a second later the flooding source may start LEARN_RATE more checks
    for signed in flood[int(LEARN_BURST) :]:
        verifier.hold(signed, "mallory")
    assert verifier.submitted == LEARN_BURST + 1 + int(LEARN_RATE)
    verifier.settle()
    verifier.ready()
    verifier.close()
