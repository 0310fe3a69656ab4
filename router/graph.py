"""The shape every router function shares: an undirected weighted graph of brokers.

`Graph` maps a broker id to its neighbours and link costs (microseconds). It is always
symmetric: ``g[a][b] == g[b][a]``. A broker with no counted links is still a key (an isolated
node), so planning can see it and reconnect it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Graph = dict[str, dict[str, int]]


def edges(graph: Graph) -> Iterator[tuple[str, str]]:
    """Each undirected link once, as ``(smaller id, larger id)``, in sorted order."""
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if a < b:
                yield a, b


def copy_graph(graph: Graph) -> Graph:
    return {node: dict(peers) for node, peers in graph.items()}


def add_link(graph: Graph, a: str, b: str, cost: int = 1) -> None:
    """Add an undirected link, creating either end if needed."""
    graph.setdefault(a, {})[b] = cost
    graph.setdefault(b, {})[a] = cost


def remove_node(graph: Graph, node: str) -> None:
    for peer in graph.pop(node, {}):
        graph[peer].pop(node, None)


def components(graph: Graph, nodes: Iterable[str] | None = None) -> list[list[str]]:
    """Connected components, each sorted, ordered by their smallest id (so all brokers agree)."""
    seen: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph if nodes is None else nodes):
        if start in seen:
            continue
        seen.add(start)
        stack, comp = [start], []
        while stack:
            node = stack.pop()
            comp.append(node)
            for peer in graph[node]:
                if peer not in seen:
                    seen.add(peer)
                    stack.append(peer)
        out.append(sorted(comp))
    return out
