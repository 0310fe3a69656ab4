"""Dijkstra against brute force: same cost, same (deterministic) choice among equal paths."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tits.router.graph import Graph, add_link
from tits.router.paths import next_hops, shortest_path, shortest_paths


def fp(i: int) -> str:
    return hashlib.sha1(str(i).encode()).hexdigest().upper()


def random_graph(seed: int, n: int, p: float, max_cost: int) -> Graph:
    rnd = random.Random(seed)
    graph: Graph = {fp(i): {} for i in range(n)}
    nodes = list(graph)
    rnd.shuffle(nodes)  # insertion order must not matter
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            if rnd.random() < p:
                add_link(graph, a, b, rnd.randint(1, max_cost))
    return graph


def brute_force(graph: Graph, a: str, b: str) -> tuple[int, list[str]] | None:
    """Every simple path from a to b; the cheapest, ties to the smallest fingerprint list."""
    best: tuple[int, list[str]] | None = None

    def walk(path: list[str], cost: int) -> None:
        nonlocal best
        node = path[-1]
        if node == b:
            if best is None or (cost, path) < best:
                best = (cost, list(path))
            return
        for peer, link in graph[node].items():
            if peer not in path:
                path.append(peer)
                walk(path, cost + link)
                path.pop()

    if a in graph:
        walk([a], 0)
    return best


# few distinct costs make many equal-cost paths, which is where tie-breaking shows
GRAPHS = st.builds(
    random_graph,
    seed=st.integers(0, 1 << 32),
    n=st.integers(1, 8),
    p=st.floats(0.2, 0.8),
    max_cost=st.sampled_from([1, 2, 3, 1000]),
)


@settings(max_examples=200, deadline=None)
@given(graph=GRAPHS, pick=st.tuples(st.integers(0, 99), st.integers(0, 99)))
def test_shortest_path_matches_brute_force(graph: Graph, pick: tuple[int, int]) -> None:
    nodes = sorted(graph)
    a, b = nodes[pick[0] % len(nodes)], nodes[pick[1] % len(nodes)]
    expected = brute_force(graph, a, b)
    got = shortest_path(graph, a, b)
    if expected is None:
        assert got is None
    else:
        assert got == expected[1]
        assert shortest_paths(graph, a)[b] == (expected[0], tuple(expected[1]))


@settings(max_examples=100, deadline=None)
@given(graph=GRAPHS)
def test_next_hops_follow_the_shortest_paths_and_never_loop(graph: Graph) -> None:
    for source in graph:
        hops = next_hops(graph, source)
        for target in graph:
            path = shortest_path(graph, source, target)
            if target == source or path is None:
                assert target not in hops
                continue
            assert hops[target] == path[1] and hops[target] in graph[source]
        # forwarding hop by hop (each broker using its own table) reaches the target
        for target in hops:
            at, seen = source, set()
            while at != target:
                assert at not in seen, "forwarding loop"
                seen.add(at)
                at = next_hops(graph, at)[target]


def test_ties_go_to_the_smaller_fingerprint() -> None:
    a, x, y, b = "A" * 40, "1" * 40, "2" * 40, "B" * 40
    graph: Graph = {}
    for mid in (y, x):  # insert the larger first: the order must not decide
        add_link(graph, a, mid, 5)
        add_link(graph, mid, b, 5)
    assert shortest_path(graph, a, b) == [a, x, b]
    assert shortest_path(graph, b, a) == [b, x, a]
    assert next_hops(graph, a)[b] == x
    add_link(graph, a, b, 10)  # a direct link of equal cost loses too: x sorts before b
    assert shortest_path(graph, a, b) == [a, x, b]
    graph[a][b] = graph[b][a] = 9
    assert shortest_path(graph, a, b) == [a, b]


def test_unknown_and_unreachable() -> None:
    a, b, c = fp(0), fp(1), fp(2)
    graph: Graph = {a: {}, c: {}}
    add_link(graph, a, b, 3)
    assert shortest_path(graph, a, c) is None
    assert shortest_path(graph, fp(9), a) is None
    assert shortest_path(graph, a, a) == [a]
    assert next_hops(graph, a) == {b: b}
    assert next_hops(graph, fp(9)) == {}
