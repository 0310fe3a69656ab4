"""Shortest paths over the link-state graph (Dijkstra over measured round-trip costs).

Ties are broken by comparing whole paths as sequences of fingerprints: of all cheapest paths
from a to b we take the lexicographically smallest ``[a, ..., b]``. That choice has optimal
substructure (a prefix of the chosen path is the chosen path to its end), so Dijkstra can
carry it in its heap key, and every broker computing it over the same graph gets the same
answer. Hop-by-hop forwarding on shortest paths cannot loop: costs are ≥ 1, so every hop is
strictly closer to the target.
"""

from __future__ import annotations

import heapq

from .graph import Graph

Route = tuple[int, tuple[str, ...]]  # (total cost, path from source to target inclusive)


def shortest_paths(graph: Graph, source: str) -> dict[str, Route]:
    """Cost and path to every broker reachable from `source` (itself included: ``(0, (s,))``)."""
    if source not in graph:
        return {}
    best: dict[str, Route] = {}
    tentative: dict[str, Route] = {source: (0, (source,))}
    heap: list[Route] = [(0, (source,))]
    while heap:
        cost, path = heapq.heappop(heap)
        node = path[-1]
        if node in best:
            continue  # a cheaper (or equal and smaller) path got here first
        best[node] = (cost, path)
        for peer, link_cost in graph[node].items():
            if peer in best:
                continue
            offer = (cost + link_cost, (*path, peer))
            if peer not in tentative or offer < tentative[peer]:
                tentative[peer] = offer
                heapq.heappush(heap, offer)
    return best


def next_hops(graph: Graph, source: str) -> dict[str, str]:
    """For every other reachable broker, the neighbour of `source` to hand a message to."""
    return {
        target: path[1]
        for target, (_cost, path) in shortest_paths(graph, source).items()
        if target != source
    }


def shortest_path(graph: Graph, a: str, b: str) -> list[str] | None:
    """The chosen cheapest path ``[a, ..., b]``, or None when b is unreachable from a."""
    route = shortest_paths(graph, a).get(b)
    return list(route[1]) if route else None
