"""The cloud's shape, for real: brokers' cloud halves on loopback with GnuPG keys, CURVE,
ZAP, gossip and heartbeats. Every broker ends with ≥ 3 links in a bridgeless graph, after
joins and after crashes, as each broker's own status shows; messages take the shortest path."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cloud_fixtures import MeshNode, wait_for
from tests.conftest import kill_agent
from tits import wire
from tits.router import shortest_path

pytestmark = pytest.mark.timeout(180)


def independent_bridges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Brute force, on purpose unlike the router's: drop each link, see if the graph splits."""

    def connected(g: dict[str, set[str]]) -> bool:
        nodes = list(g)
        if not nodes:
            return True
        seen, todo = {nodes[0]}, [nodes[0]]
        while todo:
            for nxt in g[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return len(seen) == len(nodes)

    out = []
    for a in graph:
        for b in graph[a]:
            if a < b:
                g = {n: set(v) for n, v in graph.items()}
                g[a].discard(b)
                g[b].discard(a)
                if not connected(g):
                    out.append((a, b))
    return out


def view(node: MeshNode) -> dict[str, set[str]]:
    st = node.status()
    g: dict[str, set[str]] = {b["id"]: set() for b in st["brokers"] if b["alive"]}
    for link in st["links"]:
        if link["a"] in g and link["b"] in g:
            g[link["a"]].add(link["b"])
            g[link["b"]].add(link["a"])
    return g


def healthy(nodes: list[MeshNode]) -> bool:
    want = {n.fp for n in nodes}
    for node in nodes:
        g = view(node)
        if set(g) != want:
            return False
        if any(len(v) < min(3, len(want) - 1) for v in g.values()):
            return False
        if len(want) >= 3 and independent_bridges(g):
            return False
    return True


def whole_cloud(start: Callable[..., MeshNode], nodes: list[MeshNode], n: int) -> MeshNode:
    """Start b0 and n-1 more that join it; wait until they form a healthy cloud."""
    first = start("b0")
    for i in range(1, n):
        start(f"b{i}", [first.peer_url])
    wait_for(lambda: healthy(nodes), 30, f"{n} brokers in a bridgeless cloud")
    return first


@pytest.fixture
def cloud(tmp_path: Path):
    secret = os.urandom(32)
    nodes: list[MeshNode] = []

    def start(name: str, seeds: list[str] | None = None) -> MeshNode:
        node = MeshNode(tmp_path / name, secret, seeds if seeds is not None else [])
        nodes.append(node)
        return node

    yield start, nodes, secret
    for n in nodes:
        n.stop()
        kill_agent(n.data / "gnupg")


def test_six_brokers_join_and_survive_two_crashes(cloud) -> None:
    start, nodes, _ = cloud
    whole_cloud(start, nodes, 6)
    for victim in (nodes[2], nodes[4]):
        victim.stop()  # a crash as the others see it: no goodbye
        nodes.remove(victim)
        wait_for(lambda: healthy(nodes), 30, "the survivors to repair the cloud")
    assert len(view(nodes[0])) == 4


def test_forward_takes_the_shortest_path_hop_by_hop(cloud) -> None:
    start, nodes, _ = cloud
    whole_cloud(start, nodes, 7)
    g = view(nodes[0])
    src, dst = max(
        ((a, b) for a in g for b in g if a != b),
        key=lambda p: len(shortest_path({k: dict.fromkeys(v, 1) for k, v in g.items()}, *p) or []),
    )
    by_fp = {n.fp: n for n in nodes}
    fwd = wire.Forward(
        id=wire.new_msg_id(), origin=src, sender="A" * 40, to=["B" * 40],
        target=dst, hops=8, deliver_to=["B" * 40], ts=0, token=b"t1",
    )  # fmt: skip
    by_fp[src].call(lambda: by_fp[src].cloud.send_forward(fwd, b"body"))
    wait_for(lambda: by_fp[dst].host.arrived, 10, "the forward to arrive")
    _, got, body = by_fp[dst].host.arrived[0]
    assert (got.id, body, got.target) == (fwd.id, b"body", dst)
    wait_for(lambda: (fwd.id, b"t1") in by_fp[src].host.acked, 10, "the first hop's ack")
    relays = {n.fp for n in nodes if fwd.id in n.host.relayed}
    fewest = shortest_path({k: dict.fromkeys(v, 1) for k, v in g.items()}, src, dst)
    assert fewest is not None
    assert len(fewest) >= 3  # not neighbours: the message had to be forwarded
    assert len(relays) >= len(fewest) - 2 and not relays & {src, dst}
    assert len(by_fp[dst].host.arrived) == 1  # once, however many hops


def test_a_restarted_broker_rejoins_without_a_seed(cloud) -> None:
    start, nodes, secret = cloud
    whole_cloud(start, nodes, 5)
    victim = nodes.pop(3)
    victim.stop(graceful=True)
    wait_for(lambda: healthy(nodes), 30, "four brokers after a graceful leave")
    back = MeshNode(victim.data, secret, [])  # no seed: only what it persisted
    nodes.append(back)
    assert back.fp == victim.fp
    wait_for(lambda: healthy(nodes), 30, "the restarted broker back in the cloud")


def test_a_broker_without_the_cloud_secret_is_not_admitted(cloud, tmp_path: Path) -> None:
    start, nodes, _ = cloud
    first = whole_cloud(start, nodes, 4)
    intruder = MeshNode(tmp_path / "evil", os.urandom(32), [first.peer_url])
    try:
        wait_for(lambda: intruder.cloud.peers.failed_dials >= 1, 10, "the intruder's dial to fail")
        assert not intruder.cloud.peers.up_peers()
        assert intruder.fp not in view(first)
        wait_for(lambda: healthy(nodes), 10, "the cloud, untouched")
    finally:
        intruder.stop()
        kill_agent(intruder.data / "gnupg")


def test_status_shows_measured_round_trip_times_not_routing_costs(cloud) -> None:
    start, nodes, _ = cloud
    whole_cloud(start, nodes, 4)
    # on loopback an RTT settles well under the 20 ms a hop is priced at for routing (the
    # first heartbeats wait behind start-up's GnuPG calls: tens of ms)
    wait_for(
        lambda: all(0 < (link["rtt_ms"] or 0) < 10 < link["cost_ms"]
                    for link in nodes[0].status()["links"]),
        10, "loopback RTTs under the price of a hop",
    )  # fmt: skip


def test_a_big_presence_list_reaches_a_joining_broker_in_pages(cloud) -> None:
    """30,000 users online at one broker: more than a peer frame may carry in one snapshot."""
    start, nodes, _ = cloud
    first = start("b0")
    users = sorted(hashlib.sha1(b"%d" % k).hexdigest().upper() for k in range(30_000))
    entries = [wire.PresenceEntry(fp, ["0123456789abcdef"], f"用戶 {fp[-5:]}") for fp in users]
    first.run(lambda: first.cloud.set_local_users(entries))
    # (once published: a snapshot carries what the broker has published)
    pages = wait_for(lambda: first.run(first.cloud._snapshot_pages)[1:], 5, "published pages")
    pages = first.run(first.cloud._snapshot_pages)
    assert len(pages) > 1 and sum(len(p.presence) for p in pages) == 16
    assert all(len(wire.encode(p)) < wire.PEER_DECODER.limit for p in pages)
    late = start("b1", [first.peer_url])
    wait_for(lambda: len(late.run(late.cloud.directory.users)) == len(users), 20, "every user")
    where = late.run(lambda: late.cloud.where(users[12_345]))
    assert where == {first.fp: ["0123456789abcdef"]}


def test_a_login_reaches_the_cloud_at_once_even_when_a_snapshot_is_asked_for_meanwhile(
    cloud,
) -> None:
    start, nodes, _ = cloud
    first = start("b0")
    second = start("b1", [first.peer_url])
    wait_for(lambda: len(first.cloud.peers.up_peers()) == 1, 10, "two linked brokers")
    alice = "A" * 40
    entry = wire.PresenceEntry(alice, ["0123456789abcdef"], "Alice")

    def login_then_snapshot() -> None:
        first.cloud.set_local_users([entry])  # published after a 20 ms debounce...
        first.cloud._snapshot_pages()  # ...unless answering a snapshot meanwhile ate it

    time.sleep(0.3)  # past the first start-up publication
    first.run(login_then_snapshot)
    # well before the 5 s refresh would have brought it
    wait_for(lambda: second.run(lambda: second.cloud.where(alice)), 2, "alice at b1")
