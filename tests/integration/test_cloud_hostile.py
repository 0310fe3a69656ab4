"""Hostile peers and gossip: nothing unsigned, mis-signed, stale or unadmitted gets in, and the
broker's cloud half keeps working through it."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
import zmq

from tests.cloud_fixtures import MeshNode, wait_for
from tests.conftest import kill_agent
from tits import wire
from tits.broker.admission import Admission
from tits.broker.medialinks import MediaLinks
from tits.broker.peers import parse_url
from tits.broker.signer import BrokerSigner, BrokerVerifier, CertPending
from tits.broker.topology import Topology
from tits.errors import VerificationError, WireError
from tits.identity import Identity

T = TypeVar("T")


class Broker:
    def __init__(self, root: Path, name: str) -> None:
        self.identity = Identity(root / name / "gnupg")
        self.fp = self.identity.create_key(f"titsd {name}", f"{name}@tits.invalid")
        self.signer = BrokerSigner(self.identity, self.fp, root / name)

    def advert(self, seq: int, links: list[wire.Link] | None = None) -> wire.Advert:
        return wire.Advert(broker=self.fp, address="tcp://127.0.0.1:1#" + "00" * 32, seq=seq,
                           links=links or [])  # fmt: skip


def checked(verifier: BrokerVerifier, signed: wire.SignedAdvert) -> wire.Advert:
    """As the broker does it: a new certificate is held and checked by the worker thread
    (GnuPG, off the loop), then the advert verifies, or is refused."""
    try:
        return verifier.advert(signed)
    except CertPending:
        verifier.hold(signed, "test")
        verifier.settle()
        verifier.ready()
        return verifier.advert(signed)


def accept(topo: Topology, signed: wire.SignedAdvert) -> wire.Advert | None:
    try:
        return topo.accept(signed, time.monotonic())
    except CertPending:
        checked(topo.verifier, signed)
        return topo.accept(signed, time.monotonic())


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("brokers")
    made = [Broker(root, n) for n in ("a", "b", "c")]
    yield made
    for b in made:
        kill_agent(b.identity.home)


def test_a_good_advert_verifies(brokers, tmp_path: Path) -> None:
    a, *_ = brokers
    verifier = BrokerVerifier(Identity(tmp_path / "v"))
    assert checked(verifier, a.signer.sign_advert(a.advert(5))).seq == 5


def test_tampered_unsigned_and_misattributed_adverts_are_refused(brokers, tmp_path: Path) -> None:
    a, b, _ = brokers
    verifier = BrokerVerifier(Identity(tmp_path / "v"))
    good = a.signer.sign_advert(a.advert(5))
    tampered = msgspec.structs.replace(good, advert=wire.encode(a.advert(6)))
    unsigned = msgspec.structs.replace(good, signature=b"")
    # b signs an advert that claims to be a's, with its own certified gossip key
    forged = b.signer.sign_advert(a.advert(7))
    # b's key and certificate presented under a's name
    borrowed = msgspec.structs.replace(forged, key=good.key)
    for bad in (tampered, unsigned, forged, borrowed):
        with pytest.raises(VerificationError):
            checked(verifier, bad)


def test_stale_adverts_change_nothing(brokers, tmp_path: Path) -> None:
    a, b, _ = brokers
    topo = Topology(b.fp, tmp_path, b.signer, BrokerVerifier(Identity(tmp_path / "v")))
    assert accept(topo, a.signer.sign_advert(a.advert(10))) is not None
    assert accept(topo, a.signer.sign_advert(a.advert(9))) is None
    assert accept(topo, a.signer.sign_advert(a.advert(10))) is None
    advert = topo.advert(a.fp)
    assert advert is not None and advert.seq == 10


def test_one_sided_links_and_unknown_brokers_do_not_count(brokers, tmp_path: Path) -> None:
    a, b, c = brokers
    topo = Topology(c.fp, tmp_path, c.signer, BrokerVerifier(Identity(tmp_path / "v")))
    # a claims links to b (who does not claim a back) and to a broker nobody has heard of
    accept(topo, a.signer.sign_advert(a.advert(1, [wire.Link(b.fp, 100), wire.Link("F" * 40, 1)])))
    accept(topo, b.signer.sign_advert(b.advert(1)))
    assert topo.graph()[a.fp] == {} and topo.next_hop(b.fp) is None


def test_absurd_costs_do_not_decode() -> None:
    raw = msgspec.msgpack.encode(
        {"broker": "A" * 40, "address": "x", "seq": 1, "links": [["B" * 40, 10**12]]}
    )
    with pytest.raises(WireError):
        wire.ADVERT_DECODER.decode(raw)


def test_gossip_from_outside_the_cloud_is_refused() -> None:
    ours, theirs = Admission(os.urandom(32)), Admission(os.urandom(32))
    sealed = theirs.seal_gossip(b"anything")
    with pytest.raises(VerificationError):
        ours.open_gossip(sealed)
    with pytest.raises(VerificationError):
        ours.open_gossip(b"short")
    assert ours.open_gossip(ours.seal_gossip(b"x")) == b"x"


@pytest.fixture
def four(tmp_path: Path):
    """Four brokers' cloud halves, n1–n3 joined to n0 and linked to it; and their secret."""
    secret = os.urandom(32)
    nodes = [MeshNode(tmp_path / "n0", secret, [])]
    try:
        for i in range(1, 4):
            nodes.append(MeshNode(tmp_path / f"n{i}", secret, [nodes[0].peer_url]))
        wait_for(lambda: len(nodes[0].cloud.peers.up_peers()) == 3, 20, "four linked brokers")
        yield nodes, secret
    finally:
        for n in nodes:
            n.stop()
            kill_agent(n.data / "gnupg")


def raw_peer(peer_url: str) -> tuple[zmq.Context, zmq.Socket, str]:
    """A bare CURVE DEALER on a broker's peer port, dialing as an outsider (or an insider
    holding the secret) would: (context, socket, its CURVE public key)."""
    endpoint, server_key = parse_url(peer_url)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger, sock.rcvtimeo = 0, 3000
    public, secret_key = zmq.curve_keypair()
    sock.curve_serverkey = server_key
    sock.curve_publickey, sock.curve_secretkey = public, secret_key
    sock.connect(endpoint)
    return ctx, sock, public.decode()


def test_hostile_peer_frames_get_errors_and_the_cloud_keeps_working(
    four: tuple[list[MeshNode], bytes],
) -> None:
    nodes, secret = four
    ctx, sock, _ = raw_peer(nodes[0].peer_url)
    fwd = wire.Forward(id=wire.new_msg_id(), origin=nodes[1].fp, sender="A" * 40,
                       to=["B" * 40], target=nodes[0].fp, deliver_to=["B" * 40],
                       ts=0)  # fmt: skip
    hello = wire.PeerHello(broker=nodes[1].fp, address="x", proof=b"\0" * 32)
    cases = [
        [os.urandom(50)],
        [b"\x81\xa1k\xa7unknown"],
        [wire.encode(fwd), b"body"],  # a forward before any hello
        [wire.encode(hello)],  # a hello without the secret
        [b"a", b"b", b"c"],
    ]
    for frames in cases:
        sock.send_multipart(frames)
        reply = wire.PEER_DECODER.decode(sock.recv())
        assert isinstance(reply, wire.Error), frames
        assert reply.code in {"bad-frame", "not-admitted"}
    assert not nodes[0].host.arrived
    sock.close()
    ctx.term()
    assert len(nodes[0].cloud.peers.up_peers()) == 3
    assert nodes[1].fp in {p.id for p in nodes[0].cloud.peers.up_peers()}


def test_the_secret_does_not_let_a_peer_pose_as_another_broker(
    four: tuple[list[MeshNode], bytes],
) -> None:
    """Holding the join secret admits a broker, but a known broker id stays bound to the
    CURVE key its signed advert names: an insider cannot take over another's link."""
    nodes, secret = four
    wait_for(lambda: nodes[0].cloud._known_key(nodes[1].fp), 10, "n1's advert at n0")
    ctx, sock, public = raw_peer(nodes[0].peer_url)
    proof = Admission(secret).proof(nodes[1].fp, public)  # a valid proof...
    sock.send(wire.encode(wire.PeerHello(broker=nodes[1].fp, address="x", proof=proof)))
    reply = wire.PEER_DECODER.decode(sock.recv())
    assert isinstance(reply, wire.Error) and reply.code == "not-admitted"  # ...wrong key
    # nor as a direct media connection in its name (chunks asked "by n1" would come to us)
    media = wire.PeerHello(broker=nodes[1].fp, address="x", proof=proof, media=True)
    sock.send(wire.encode(media))
    reply = wire.PEER_DECODER.decode(sock.recv())
    assert isinstance(reply, wire.Error) and reply.code == "not-admitted"
    assert not nodes[0].cloud.peers.media_in
    # a new id with the secret is admitted: that is what the secret is for
    fresh = "F" * 40
    proof = Admission(secret).proof(fresh, public)
    sock.send(wire.encode(wire.PeerHello(broker=fresh, address="x", proof=proof)))
    assert isinstance(wire.PEER_DECODER.decode(sock.recv()), wire.PeerHello)
    sock.close()
    ctx.term()
    link = next(p for p in nodes[0].cloud.peers.up_peers() if p.id == nodes[1].fp)
    assert link.in_key != public  # n1's link was not taken over


def next_of(sock: zmq.Socket, kind: type[T]) -> T:
    while True:
        msg = wire.PEER_DECODER.decode(sock.recv())
        if isinstance(msg, kind):
            return msg


def test_an_admitted_peers_malformed_batches_are_refused_and_good_ones_still_pass(
    tmp_path: Path,
) -> None:
    secret = os.urandom(32)
    node = MeshNode(tmp_path / "n0", secret, [])
    try:
        ctx, sock, public = raw_peer(node.peer_url)
        insider = "E" * 40
        proof = Admission(secret).proof(insider, public)
        sock.send(wire.encode(wire.PeerHello(broker=insider, address="x", proof=proof)))
        assert isinstance(wire.PEER_DECODER.decode(sock.recv()), wire.PeerHello)

        def fwd(n: int) -> wire.Forward:
            return wire.Forward(id=bytes([n]) * 16, origin=insider, sender="A" * 40,
                                to=["B" * 40], target=node.fp, deliver_to=["B" * 40],
                                ts=0, token=bytes([n]))  # fmt: skip

        # a body short: nothing of it is taken (which body goes with which forward?)
        sock.send(wire.encode(wire.PeerBatch(fwds=[fwd(1), fwd(2)], bodies=[b"one"])))
        # a forward in the batch that is not one: the whole frame is refused with an error
        bad = wire.encode({"k": "batch", "fwds": [{"k": "forward", "hops": -1}], "bodies": [b""]})
        sock.send(bad)
        reply = next_of(sock, wire.Error)  # (heartbeats and a snapshot request come too)
        assert reply.code == "bad-frame"
        # a good batch after all that arrives, and is acknowledged in a batch
        sock.send(wire.encode(wire.PeerBatch(fwds=[fwd(3)], bodies=[b"three"])))
        wait_for(lambda: node.host.arrived, 5, "the good forward")
        assert [(f.id, body) for _, f, body in node.host.arrived] == [(bytes([3]) * 16, b"three")]
        acks = next_of(sock, wire.PeerBatch).acks
        assert [(a.id, a.token) for a in acks] == [(bytes([3]) * 16, bytes([3]))]
        sock.close()
        ctx.term()
    finally:
        node.stop()
        kill_agent(node.data / "gnupg")


def test_topology_is_written_when_its_shape_changes_not_on_every_refresh(
    brokers, tmp_path: Path
) -> None:
    a, b, c = brokers
    topo = Topology(c.fp, tmp_path, c.signer, BrokerVerifier(Identity(tmp_path / "v")))
    accept(topo, a.signer.sign_advert(a.advert(10, [wire.Link(b.fp, 100)])))
    topo.save()
    path = tmp_path / "topology.bin"
    first = path.read_bytes()
    # a refresh: new seq, same links (every broker sends one every 2 s)
    accept(topo, a.signer.sign_advert(a.advert(11, [wire.Link(b.fp, 100)])))
    topo.save()
    assert path.read_bytes() == first and not topo.dirty
    # a new link is worth a write
    links = [wire.Link(b.fp, 100), wire.Link(c.fp, 100)]
    accept(topo, a.signer.sign_advert(a.advert(12, links)))
    topo.save()
    assert path.read_bytes() != first


class MediaRecorder:
    """Stands in for the broker's BlobPort: records direct asks, answers each as missing."""

    def __init__(self, node: MeshNode) -> None:
        self.node = node
        self.wants: list[tuple[str, bytes]] = []
        self.reply_to = ""  # set: answers name this broker instead of the asker

    def on_direct(self, broker: str, rid: bytes, msg: wire.ChunkWant) -> None:
        self.wants.append((broker, msg.chunk))
        found = wire.ChunkFound(chunk=msg.chunk, to=self.reply_to or broker, missing=True)
        self.node.cloud.peers.send_media(rid, found, None)

    def on_peer(self, peer: str, msg: object, body: object) -> None:
        raise AssertionError(f"a media connection's {type(msg).__name__} reached the media")


def test_a_direct_media_connection_asks_for_chunks_and_can_do_nothing_else(
    tmp_path: Path,
) -> None:
    """A media hello with the cloud's proof is admitted, but never as a link: it gets no
    heartbeats, is in no topology, and a forward or a chunk pushed over it is dropped; only
    its ChunkWants are read. Without the proof it is refused like a link."""
    secret = os.urandom(32)
    node = MeshNode(tmp_path / "n0", secret, [])
    media = MediaRecorder(node)
    node.cloud.media = media
    try:
        ctx, sock, public = raw_peer(node.peer_url)
        insider = "E" * 40
        proof = Admission(secret).proof(insider, public)
        sock.send(wire.encode(wire.PeerHello(broker=insider, proof=proof, media=True)))
        hello = wire.PEER_DECODER.decode(sock.recv())
        assert isinstance(hello, wire.PeerHello) and hello.media and hello.broker == node.fp
        fwd = wire.Forward(id=bytes(16), origin=insider, sender="A" * 40, to=["B" * 40],
                           target=node.fp, deliver_to=["B" * 40], ts=0)  # fmt: skip
        data = os.urandom(100)
        pushed = wire.ChunkFound(chunk=hashlib.sha256(data).digest(), to=node.fp)
        for frames in (
            [wire.encode(wire.PeerBatch(fwds=[fwd], bodies=[b"x"]))],
            [wire.encode(pushed), data],
            [wire.encode(wire.PeerHello(broker=insider, proof=proof))],  # "now a link"
        ):
            sock.send_multipart(frames)
        chunk = os.urandom(32)
        sock.send(wire.encode(wire.ChunkWant(chunk=chunk, origin=insider, target=node.fp)))
        answer = wire.PEER_DECODER.decode(sock.recv())  # the first frame after the hello
        assert isinstance(answer, wire.ChunkFound) and answer.chunk == chunk and answer.missing
        assert media.wants == [(insider, chunk)]
        assert not node.host.arrived
        assert insider not in {p.id for p in node.cloud.peers.up_peers()}
        sock.close()

        # without the secret: refused, and its asks are not read
        ctx2, bad, bad_key = raw_peer(node.peer_url)
        wrong = Admission(os.urandom(32)).proof(insider, bad_key)
        bad.send(wire.encode(wire.PeerHello(broker=insider, proof=wrong, media=True)))
        reply = wire.PEER_DECODER.decode(bad.recv())
        assert isinstance(reply, wire.Error) and reply.code == "not-admitted"
        bad.send(wire.encode(wire.ChunkWant(chunk=chunk, origin=insider, target=node.fp)))
        reply = wire.PEER_DECODER.decode(bad.recv())
        assert isinstance(reply, wire.Error) and reply.code == "not-admitted"
        assert media.wants == [(insider, chunk)]
        bad.close()
        ctx2.term()
        ctx.term()
    finally:
        node.stop()
        kill_agent(node.data / "gnupg")


def _pump(links: MediaLinks, until: Callable[[], bool], timeout: float = 10.0) -> None:
    """Drive the dialing side as the broker's loop does, until `until()`."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        poller = zmq.Poller()
        for sock in links.sockets():
            poller.register(sock, zmq.POLLIN)
        for sock, _ in poller.poll(50):
            links.handle(sock, time.monotonic())
        links.tick(time.monotonic())


def test_a_direct_media_link_is_redialed_after_the_holder_forgets_it_and_gives_up_on_silence(
    tmp_path: Path,
) -> None:
    secret = os.urandom(32)
    node = MeshNode(tmp_path / "n0", secret, [])
    node.cloud.media = MediaRecorder(node)
    ctx = zmq.Context()
    me = "E" * 40
    found: list[wire.ChunkFound] = []
    failed: list[list[wire.ChunkWant]] = []
    silent = f"tcp://127.0.0.1:9#{'11' * 32}"  # nobody answers there
    links = MediaLinks(
        ctx, me, zmq.curve_keypair(), Admission(secret),
        lambda b: node.peer_url if b == node.fp else silent if b == "D" * 40 else None,
        lambda: wire.PeerHello(broker=me), lambda b, m, body: found.append(m),
        lambda b, wants: failed.append(wants),
    )  # fmt: skip
    try:

        def want() -> wire.ChunkWant:
            return wire.ChunkWant(chunk=os.urandom(32), origin=me, target=node.fp)

        first = want()
        assert links.send(node.fp, first)
        _pump(links, lambda: bool(found))
        assert found[-1].chunk == first.chunk and found[-1].missing
        # an answer over the link meant for another broker is not taken (nor passed on): the
        # next answer, which comes after it on the same connection, is
        recorder = node.cloud.media
        recorder.reply_to = "F" * 40
        stray = want()
        assert links.send(node.fp, stray)
        wait_for(lambda: (me, stray.chunk) in recorder.wants, 5, "the holder to be asked")
        recorder.reply_to = ""
        after = want()
        assert links.send(node.fp, after)
        _pump(links, lambda: found[-1].chunk == after.chunk)
        assert stray.chunk not in {f.chunk for f in found}
        assert node.fp not in {p.id for p in node.cloud.peers.up_peers()}  # not a link
        # the holder forgets the connection (as a restart does): the link closes...
        node.call(node.cloud.peers.media_in.clear)
        wait_for(lambda: not node.cloud.peers.media_in, 5, "the holder to forget")
        assert links.send(node.fp, want())
        _pump(links, lambda: node.fp not in links.links)
        # ...and the next ask dials again and is answered
        again = want()
        assert links.send(node.fp, again)
        _pump(links, lambda: found[-1].chunk == again.chunk)
        # a holder that never answers: after the hello's timeout its asks go back (by route)
        lost = wire.ChunkWant(chunk=os.urandom(32), origin=me, target="D" * 40)
        assert links.send("D" * 40, lost)
        _pump(links, lambda: bool(failed))
        assert failed == [[lost]] and not links.send("D" * 40, lost)  # not dialed again soon
    finally:
        links.close()
        ctx.term()
        node.stop()
        kill_agent(node.data / "gnupg")
