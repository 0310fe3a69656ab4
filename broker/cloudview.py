"""What the status page shows of the cloud, as one broker sees it: the brokers and whether
they are alive, the links with the round-trip times both ends advertised, who is online
where, this broker's routes; and what is wrong, one line each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tits.router import check_invariants

from .directory import Directory
from .topology import Topology


def status(topology: Topology, directory: Directory, mine: dict[str, Any]) -> dict[str, Any]:
    """`mine`: this broker's own entry (id, name, url, http), for before its advert is in."""
    me = mine["id"]
    graph = topology.planning_graph()
    brokers: list[dict[str, Any]] = []
    for bid in topology.db:
        adv = topology.advert(bid)
        if adv is None:
            continue
        alive = bid == me or (adv.alive and bid in graph and bool(graph[bid]))
        brokers.append(
            {"id": bid, "name": adv.name, "url": adv.client, "http": adv.http, "alive": alive}
        )
    if me not in topology.db:
        brokers.append({**mine, "alive": True})
    links = []
    for a, nbrs in graph.items():
        for b, cost in nbrs.items():
            if a < b:
                links.append({"a": a, "b": b, "rtt_ms": rtt_ms(topology, a, b),
                              "cost_ms": cost / 1000})  # fmt: skip
    live = {b["id"] for b in brokers if b["alive"]}
    users = [u for u in directory.users() if u["broker"] in live]
    routes = {t: hop for t in live if t != me and (hop := topology.next_hop(t))}
    return {"brokers": brokers, "links": links, "users": users, "routes": routes}


def rtt_ms(topology: Topology, a: str, b: str) -> float | None:
    """The round-trip time both ends measured (the larger), as they last advertised it."""
    rtts = []
    for x, y in ((a, b), (b, a)):
        advert = topology.advert(x)
        for link in advert.links if advert is not None else []:
            if link.peer == y and link.rtt_us:
                rtts.append(link.rtt_us)
    return round(max(rtts) / 1000, 3) if rtts else None


def problems(topology: Topology, me: str, lost: Mapping[str, float], now: float) -> list[str]:
    """What is wrong with the cloud as this broker sees it, one line each; [] when whole.
    `lost`: brokers that went without a goodbye → since when (monotonic). The invariants are
    checked on the live graph, which a dead broker has left: so a broker that went without
    a goodbye is a problem of its own (a 4-broker cloud that lost one is a healthy-looking
    triangle), for as long as we know of it."""
    graph = topology.planning_graph()
    out: list[str] = []
    named: set[str] = set()
    for bid in sorted(topology.db):
        adv = topology.advert(bid)
        if bid == me or adv is None or graph.get(bid):
            continue
        label = f"{adv.name} ({bid[:16]})" if adv.name else bid[:16]
        if adv.alive:
            out.append(f"broker {label} is linked to no broker (down, or not yet joined)")
        elif not topology.db.blob(bid):  # our tombstone; a goodbye keeps its advert
            since = lost.get(bid)
            ago = f" {now - since:.0f} s ago" if since is not None else ""
            out.append(f"broker {label} is down: lost{ago} without a goodbye")
        else:
            continue  # it left the cloud, saying so
        named.add(bid)
    for bid, since in sorted(lost.items()):
        if bid not in named and not graph.get(bid):  # forgotten by the topology by now
            out.append(f"broker {bid[:16]} is down: lost {now - since:.0f} s ago without a goodbye")
    if len(graph) > 1 and not graph.get(me):
        out.append("this broker has no link to the cloud")
    return out + check_invariants(graph)
