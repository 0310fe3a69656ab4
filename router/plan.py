"""Planning links so the cloud keeps its shape.

Invariants, for a cloud of n ≥ 4 brokers: every broker has at least `MIN_LINKS` links, and the
graph has no bridge (it stays connected after any single link fails). For n ≤ 3 the best
possible is the complete graph (a pair, a triangle).

Every plan is a pure function of the graph, with ties broken by (degree, fingerprint): two
survivors that see the same graph compute the same plan, so nobody races to add conflicting
links. In a repair pair ``(a, b)``, ``a < b`` and the smaller fingerprint `a` dials.
"""

from __future__ import annotations

from collections.abc import Callable

from .graph import Graph, add_link, components, copy_graph

MIN_LINKS = 3
SMALL_CLOUD = 3  # up to this many brokers, the best possible is every pair linked


def _short(fp: str) -> str:
    return fp[:16]


def bridges(graph: Graph) -> list[tuple[str, str]]:
    """Links whose loss would split their part of the cloud, as sorted ``(a, b)`` with a < b.
    Tarjan's low-link, iterative so that a long chain cannot overflow Python's stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    found: list[tuple[str, str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack = [(root, "", iter(sorted(graph[root])))]
        while stack:
            node, parent, peers = stack[-1]
            for peer in peers:
                if peer == parent:
                    continue
                if peer in index:
                    low[node] = min(low[node], index[peer])
                else:
                    index[peer] = low[peer] = len(index)
                    stack.append((peer, node, iter(sorted(graph[peer]))))
                    break
            else:  # every peer seen: node is done, report to its parent
                stack.pop()
                if parent:
                    low[parent] = min(low[parent], low[node])
                    if low[node] > index[parent]:
                        found.append((min(parent, node), max(parent, node)))
    return sorted(found)


def check_invariants(graph: Graph) -> list[str]:
    """What is wrong with the cloud's shape, one human-readable line each; [] when healthy."""
    n = len(graph)
    if n <= SMALL_CLOUD:
        nodes = sorted(graph)
        return [
            f"{_short(a)} and {_short(b)} are not linked (a cloud of {n} should be complete)"
            for i, a in enumerate(nodes)
            for b in nodes[i + 1 :]
            if b not in graph[a]
        ]
    problems = []
    parts = components(graph)
    if len(parts) > 1:
        problems.append(f"the cloud is split into {len(parts)} parts")
    for node in sorted(graph):
        if len(graph[node]) < MIN_LINKS:
            problems.append(f"{_short(node)} has {len(graph[node])} links, needs {MIN_LINKS}")
    for a, b in bridges(graph):
        problems.append(f"link {_short(a)}–{_short(b)} is a bridge: losing it splits the cloud")
    return problems


def join_plan(graph: Graph, newcomer: str) -> list[str]:
    """The existing brokers `newcomer` should link to: the least-loaded (fewest links, then
    smallest fingerprint) until it has `MIN_LINKS`, or all of them in a small cloud. A node
    joining a bridgeless graph by ≥ 2 links leaves it bridgeless, so joins need no repair."""
    have = graph.get(newcomer, {})
    others = sorted(
        (node for node in graph if node != newcomer and node not in have),
        key=lambda node: (len(graph[node]), node),
    )
    return sorted(others[: max(0, MIN_LINKS - len(have))])


def repair_plan(graph: Graph) -> list[tuple[str, str]]:
    """Links to add so the invariants hold again, as sorted ``(dialer, peer)`` pairs with
    dialer < peer; [] when the graph is already fine. Steps: join split parts in a chain,
    top up brokers short of links, then pair up the leaves of the bridge tree."""
    nodes = sorted(graph)
    if len(nodes) <= SMALL_CLOUD:
        return [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :] if b not in graph[a]]
    work = copy_graph(graph)
    added: list[tuple[str, str]] = []

    def link(a: str, b: str) -> None:
        add_link(work, a, b)
        added.append((min(a, b), max(a, b)))

    def load(node: str) -> tuple[int, str]:
        return len(work[node]), node

    parts = components(work)
    for left, right in zip(parts, parts[1:], strict=False):
        link(min(left, key=load), min(right, key=load))

    for node in sorted(nodes, key=load):
        while len(work[node]) < MIN_LINKS:  # n ≥ 4, so a non-neighbour always exists
            free = (peer for peer in nodes if peer != node and peer not in work[node])
            link(node, min(free, key=load))

    while cut := bridges(work):  # each round covers ≥ 1 bridge, so this ends
        for a_block, b_block in _leaf_pairs(work, cut):
            link(*_closest_free_pair(work, a_block, b_block, load))
    return sorted(added)


def _leaf_pairs(graph: Graph, cut: list[tuple[str, str]]) -> list[tuple[list[str], list[str]]]:
    """Pairs of leaf blocks of the bridge tree (blocks = 2-edge-connected parts; the tree's
    edges are the bridges). Listing leaves in DFS preorder and pairing leaf i with leaf
    i + L/2 crosses every bridge (Eswaran & Tarjan), since the leaves below any tree edge are
    a contiguous run shorter than L/2 on one side. An odd last leaf goes to the first."""
    cut_set = set(cut)
    inner = {
        node: {p: c for p, c in peers.items() if (min(node, p), max(node, p)) not in cut_set}
        for node, peers in graph.items()
    }
    blocks = components(inner)
    block_of = {node: i for i, block in enumerate(blocks) for node in block}
    tree: dict[int, set[int]] = {i: set() for i in range(len(blocks))}
    for a, b in cut:
        tree[block_of[a]].add(block_of[b])
        tree[block_of[b]].add(block_of[a])
    leaves: list[int] = []
    seen: set[int] = set()
    for root in range(len(blocks)):  # blocks are ordered by smallest fingerprint
        stack = [root]
        while stack:
            block = stack.pop()
            if block in seen:
                continue
            seen.add(block)
            if len(tree[block]) == 1:
                leaves.append(block)
            stack.extend(sorted(tree[block] - seen, reverse=True))
    half = len(leaves) // 2
    pairs = [(leaves[i], leaves[i + half]) for i in range(half)]
    if len(leaves) % 2:
        pairs.append((leaves[-1], leaves[0]))
    return [(blocks[a], blocks[b]) for a, b in pairs if a != b]


def _closest_free_pair(
    graph: Graph, a_block: list[str], b_block: list[str], load: Callable[[str], tuple[int, str]]
) -> tuple[str, str]:
    """The least-loaded not-yet-linked pair across two blocks (one always exists for n ≥ 4:
    two single-broker blocks already linked would make the whole cloud a pair)."""
    for a in sorted(a_block, key=load):
        for b in sorted(b_block, key=load):
            if b not in graph[a]:
                return a, b
    raise RuntimeError("no free pair between two blocks; impossible for n ≥ 4")
