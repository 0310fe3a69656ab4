"""ω IM router: the cloud's topology as pure logic (adverts in, next hops and plans out).

No sockets and no GnuPG here: the broker verifies signatures, feeds `Advert`s to a
`LinkStateDB`, routes with `next_hops` over its `graph()`, and adds the links that
`join_plan` / `repair_plan` name.
"""

from .graph import Graph
from .linkstate import LinkStateDB, advert_problem
from .paths import next_hops, shortest_path, shortest_paths
from .plan import bridges, check_invariants, join_plan, repair_plan

__all__ = [
    "Graph",
    "LinkStateDB",
    "advert_problem",
    "bridges",
    "check_invariants",
    "join_plan",
    "next_hops",
    "repair_plan",
    "shortest_path",
    "shortest_paths",
]
