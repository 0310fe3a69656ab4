"""Join and repair plans keep the cloud's invariants, checked by an independent brute force."""

from __future__ import annotations

import hashlib
import random
from collections import deque

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from tits.router.graph import Graph, add_link, remove_node
from tits.router.linkstate import LinkStateDB
from tits.router.plan import bridges, check_invariants, join_plan, repair_plan
from tits.wire import Advert, Link


def fp(i: int) -> str:
    """Fingerprints whose order is unrelated to creation order, so ties are really tested."""
    return hashlib.sha1(str(i).encode()).hexdigest().upper()


# -- an independent checker: no Tarjan, no shared helpers ----------------------------------


def reachable(graph: Graph, start: str, skip: tuple[str, str] | None = None) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        node = queue.popleft()
        for peer in graph[node]:
            if skip in ((node, peer), (peer, node)) or peer in seen:
                continue
            seen.add(peer)
            queue.append(peer)
    return seen


def components_of(graph: Graph) -> list[set[str]]:
    parts: list[set[str]] = []
    for node in graph:
        if not any(node in part for part in parts):
            parts.append(reachable(graph, node))
    return parts


def brute_bridges(graph: Graph) -> set[tuple[str, str]]:
    """Remove each link in turn; it is a bridge if its ends can no longer reach each other."""
    links = {(min(a, b), max(a, b)) for a in graph for b in graph[a]}
    return {(a, b) for a, b in links if b not in reachable(graph, a, skip=(a, b))}


def violations(graph: Graph) -> list[str]:
    n = len(graph)
    if n == 0:
        return []
    if n <= 3:
        return [f"{a} lacks {b}" for a in graph for b in graph if a != b and b not in graph[a]]
    out = [f"{a} has degree {len(p)}" for a, p in graph.items() if len(p) < 3]
    if reachable(graph, next(iter(graph))) != set(graph):
        out.append("disconnected")
    out += [f"bridge {e}" for e in sorted(brute_bridges(graph))]
    return out


def apply_plan(graph: Graph, plan: list[tuple[str, str]]) -> None:
    assert len(set(plan)) == len(plan), "a pair planned twice"
    for a, b in plan:
        assert a < b, "the smaller fingerprint dials"
        assert a in graph and b in graph and b not in graph[a], "only new links between members"
        add_link(graph, a, b)


def join(graph: Graph, newcomer: str) -> list[str]:
    peers = join_plan(graph, newcomer)
    assert newcomer not in peers and len(set(peers)) == len(peers)
    assert len(peers) == min(3, len(graph))
    graph[newcomer] = {}
    for peer in peers:
        add_link(graph, newcomer, peer)
    return peers


def random_graph(seed: int, n: int, p: float) -> Graph:
    rnd = random.Random(seed)
    graph: Graph = {fp(i): {} for i in range(n)}
    nodes = sorted(graph)
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            if rnd.random() < p:
                add_link(graph, a, b)
    return graph


# -- joins, leaves and crashes ----------------------------------------------------------------

# runs of the same operation, so clouds grow past 20 and shrink to a pair within one example
RUN = st.tuples(st.sampled_from(["join", "leave", "crash"]), st.integers(1, 12), st.integers())
OPS = st.lists(RUN, min_size=1, max_size=12).map(
    lambda runs: [(op, pick + i * 7919) for op, count, pick in runs for i in range(count)]
)
GROW_SHRINK_GROW = [("join", 0)] * 7 + [("crash", 3)] * 6 + [("join", 0)] * 5


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
@example(ops=GROW_SHRINK_GROW)
@example(ops=[("join", 0)] * 5 + [("leave", 0)] * 5 + [("join", 0)] * 4)
def test_invariants_hold_after_every_join_leave_and_crash(ops: list[tuple[str, int]]) -> None:
    graph: Graph = {}
    born = peak = 0
    for op, pick in ops:
        if op == "join" or not graph:
            join(graph, fp(born))
            born += 1
            # a join keeps a healthy graph healthy on its own: nothing to repair
            assert repair_plan(graph) == []
        else:
            gone = sorted(graph)[pick % len(graph)]
            degree = len(graph[gone])
            remove_node(graph, gone)  # a leave and a crash look the same to the planner
            plan = repair_plan(graph)
            assert len(plan) <= degree, "repairs stay small"
            apply_plan(graph, plan)
        assert violations(graph) == []
        assert check_invariants(graph) == []
        peak = max(peak, len(graph))
        if peak >= 4 and len(graph) <= 3:
            event("shrank to a small cloud")
    event(f"largest cloud: {peak // 10 * 10}+ brokers")


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 1 << 32), n=st.integers(0, 30), p=st.floats(0, 0.4))
def test_repair_fixes_any_graph_and_is_then_empty(seed: int, n: int, p: float) -> None:
    graph = random_graph(seed, n, p)
    healthy = not violations(graph)
    plan = repair_plan(graph)
    assert (plan == []) == healthy
    assert (check_invariants(graph) == []) == healthy
    if n >= 4:  # few links: each one pays for a missing degree, a split or a bridge
        deficit = sum(max(0, 3 - len(peers)) for peers in graph.values())
        splits = len(components_of(graph)) - 1
        assert len(plan) <= deficit + 2 * splits + len(brute_bridges(graph))
    apply_plan(graph, plan)
    assert violations(graph) == []
    assert repair_plan(graph) == []


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 1 << 32), n=st.integers(4, 14), p=st.floats(0, 0.5))
def test_two_survivors_compute_the_same_plan(seed: int, n: int, p: float) -> None:
    graph = random_graph(seed, n, p)
    shuffled_nodes = list(graph)
    random.Random(seed).shuffle(shuffled_nodes)
    other: Graph = {}
    for node in shuffled_nodes:
        peers = list(graph[node])
        random.Random(seed + 1).shuffle(peers)
        other[node] = {peer: graph[node][peer] for peer in peers}
    assert repair_plan(other) == repair_plan(graph)
    newcomer = fp(10_000)
    assert join_plan(other, newcomer) == join_plan(graph, newcomer)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 1 << 32), n=st.integers(0, 14), p=st.floats(0, 0.5))
def test_bridges_match_brute_force(seed: int, n: int, p: float) -> None:
    graph = random_graph(seed, n, p)
    found = bridges(graph)
    assert found == sorted(found)
    assert set(found) == brute_bridges(graph)


# -- the same, through adverts and the link-state database -----------------------------------


class Cloud:
    """Brokers as the planner's callers: each keeps its links and advertises them."""

    def __init__(self, rnd: random.Random) -> None:
        self.db, self.rnd = LinkStateDB(), rnd
        self.links: dict[str, dict[str, int]] = {}
        self.seq: dict[str, int] = {}
        self.born = 0

    def advertise(self, broker: str, alive: bool = True) -> None:
        self.seq[broker] = self.seq.get(broker, 0) + 1
        links = [Link(p, c) for p, c in sorted(self.links[broker].items())] if alive else []
        advert = Advert(broker, f"tcp://{broker[:8]}", self.seq[broker], links, alive)
        assert self.db.apply(advert, now=0)

    def link(self, a: str, b: str) -> None:
        self.links[a][b] = self.rnd.randint(1, 50_000)
        self.links[b][a] = self.rnd.randint(1, 50_000)

    def join(self) -> None:
        new = fp(1000 + self.born)
        self.born += 1
        peers = join_plan(self.db.graph(), new)
        self.links[new] = {}
        for peer in peers:
            self.link(new, peer)
        for broker in [new, *peers]:
            self.advertise(broker)

    def depart(self, gone: str, graceful: bool) -> None:
        if graceful:
            self.advertise(gone, alive=False)
        else:
            assert self.db.remove(gone)
        for peer in self.links.pop(gone):  # survivors notice only through heartbeats: the
            del self.links[peer][gone]  # stale link stays in their adverts until repaired
        plan = repair_plan(self.db.graph())
        for a, b in plan:
            self.link(a, b)
        for broker in sorted({x for pair in plan for x in pair}):
            self.advertise(broker)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1 << 32), ops=st.lists(st.integers(0, 99), min_size=5, max_size=60))
def test_cloud_keeps_its_invariants_through_adverts(seed: int, ops: list[int]) -> None:
    cloud = Cloud(random.Random(seed))
    for op in ops:
        alive = cloud.db.alive()
        if op < 50 or not alive:
            cloud.join()
        else:
            cloud.depart(alive[op % len(alive)], graceful=op % 2 == 0)
        graph = cloud.db.graph()
        assert sorted(graph) == sorted(cloud.links)
        assert violations(graph) == [] and check_invariants(graph) == []


# -- concrete cases ---------------------------------------------------------------------------


def ring(n: int) -> Graph:
    graph: Graph = {}
    for i in range(n):
        add_link(graph, fp(i), fp((i + 1) % n))
    return graph


def test_small_clouds_become_complete() -> None:
    assert repair_plan({}) == [] and join_plan({}, fp(0)) == []
    assert repair_plan({fp(0): {}}) == []
    a, b, c = sorted([fp(0), fp(1), fp(2)])
    assert repair_plan({a: {}, b: {}}) == [(a, b)]
    graph: Graph = {a: {}, b: {}, c: {}}
    add_link(graph, a, c)
    assert repair_plan(graph) == [(a, b), (b, c)]
    assert check_invariants(graph) == [
        f"{a[:16]} and {b[:16]} are not linked (a cloud of 3 should be complete)",
        f"{b[:16]} and {c[:16]} are not linked (a cloud of 3 should be complete)",
    ]


def test_join_prefers_least_loaded_then_smallest_fingerprint() -> None:
    graph = ring(6)  # everyone has 2 links
    hub = sorted(graph)[-1]
    for other in sorted(graph)[:3]:
        if other not in graph[hub] and other != hub:
            add_link(graph, hub, other)
    by_load = sorted((n for n in graph), key=lambda n: (len(graph[n]), n))
    assert join_plan(graph, fp(99)) == sorted(by_load[:3])
    assert hub not in join_plan(graph, fp(99))


def test_join_counts_links_the_newcomer_already_has() -> None:
    graph = ring(5)
    new = fp(99)
    add_link(graph, new, fp(0))
    plan = join_plan(graph, new)
    assert len(plan) == 2 and fp(0) not in plan


def test_a_ring_is_reported_and_repaired() -> None:
    graph = ring(6)
    problems = check_invariants(graph)
    assert len(problems) == 6 and all("has 2 links, needs 3" in line for line in problems)
    plan = repair_plan(graph)
    assert len(plan) == 3  # six brokers one link short: three new links, no more
    apply_plan(graph, plan)
    assert violations(graph) == []


def test_split_cloud_is_reconnected() -> None:
    left, right = ring(4), Graph()
    for i in range(4):
        for j in range(i + 1, 4):
            add_link(left, fp(i), fp(j))
            add_link(right, fp(10 + i), fp(10 + j))
    graph = {**left, **right}
    assert check_invariants(graph)[0] == "the cloud is split into 2 parts"
    plan = repair_plan(graph)
    assert len(plan) == 2  # two K4s need two links between them, and nothing else
    apply_plan(graph, plan)
    assert violations(graph) == []


def test_a_bridge_is_named_and_covered() -> None:
    graph: Graph = {}
    for base in (0, 10):
        for i in range(4):
            for j in range(i + 1, 4):
                add_link(graph, fp(base + i), fp(base + j))
    add_link(graph, fp(0), fp(10))
    a, b = min(fp(0), fp(10)), max(fp(0), fp(10))
    assert bridges(graph) == [(a, b)]
    assert check_invariants(graph) == [
        f"link {a[:16]}–{b[:16]} is a bridge: losing it splits the cloud"
    ]
    plan = repair_plan(graph)
    assert len(plan) == 1
    apply_plan(graph, plan)
    assert violations(graph) == []


def test_a_long_chain_does_not_overflow_the_stack() -> None:
    graph: Graph = {}
    for i in range(3000):
        add_link(graph, fp(i), fp(i + 1))
    assert len(bridges(graph)) == 3000


def block_tree(tree: list[tuple[int, int]]) -> Graph:
    """Each tree node becomes a K4 (4 brokers, 3 links each); each tree edge a bridge."""
    graph: Graph = {}
    blocks = {x for edge in tree for x in edge}
    for block in blocks:
        for i in range(4):
            for j in range(i + 1, 4):
                add_link(graph, fp(10 * block + i), fp(10 * block + j))
    for k, (x, y) in enumerate(tree):  # a different corner per bridge, to keep it readable
        add_link(graph, fp(10 * x + k % 4), fp(10 * y + k % 4))
    return graph


@pytest.mark.parametrize(
    "tree, leaves",
    [
        ([(0, 1), (1, 2), (2, 3)], 2),  # a path of blocks: one link from end to end
        ([(0, 1), (0, 2), (0, 3)], 3),
        ([(0, 1), (0, 2), (0, 3), (0, 4)], 4),
        ([(0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6)], 4),  # pairing siblings wastes one
        ([(0, 1), (1, 2), (1, 3), (3, 4), (3, 5), (0, 6), (6, 7)], 4),
    ],
)
def test_bridges_are_covered_with_the_fewest_links(tree: list, leaves: int) -> None:
    graph = block_tree(tree)
    assert len(brute_bridges(graph)) == len(tree)
    plan = repair_plan(graph)
    assert len(plan) == (leaves + 1) // 2  # each leaf block needs one new link, no fewer
    apply_plan(graph, plan)
    assert violations(graph) == []
