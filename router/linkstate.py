"""The link-state database: the newest verified advertisement of every broker in the cloud.

The broker checks signatures; this module only decides which adverts to keep and which links
count. Gossip is lossy and unordered (PUB/SUB, snapshots from neighbours), so every decision
rests on the advert's sequence number, never on arrival order.

A broker that leaves or is declared dead keeps a *tombstone*: its last sequence number with
``alive=False`` and no links. Without it, a delayed copy of an older advert would bring the dead
broker back; with it, only a genuinely newer advert (the broker really is back) does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

from tits.errors import WireError
from tits.wire import Advert, Fingerprint

from .graph import Graph

MAX_LINKS = 64  # a broker keeps ~3-6 links; far more is a bug or an attempt to bloat the graph
MIN_COST_US, MAX_COST_US = 1, 60_000_000  # as in `tits.wire.Link`
MAX_SEQ = (1 << 63) - 1
SNAPSHOT_VERSION = 1

_FINGERPRINT = re.compile(r"[0-9A-F]{40}")


class _Entry(msgspec.Struct, array_like=True):
    advert: Advert
    received: float  # the caller's clock (monotonic); only compared with `now` in `expire`
    blob: bytes = b""  # the signed advert as received, so the broker can re-serve it


class _Saved(msgspec.Struct, array_like=True):
    """On disk there are no receive times: a monotonic clock does not survive a restart."""

    advert: Advert
    blob: bytes = b""


class _Snapshot(msgspec.Struct, forbid_unknown_fields=False):
    v: int
    adverts: list[_Saved]


_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_Snapshot)


def advert_problem(advert: Advert, max_links: int = MAX_LINKS) -> str | None:
    """Why `advert` is malformed, or None. Python-built Structs skip the wire's constraints,
    so the bounds are checked again here rather than trusted."""
    if not _FINGERPRINT.fullmatch(advert.broker):
        return "broker id is not a fingerprint"
    if not 0 <= advert.seq <= MAX_SEQ:
        return f"sequence number {advert.seq} out of range"
    if len(advert.links) > max_links:
        return f"{len(advert.links)} links is over the limit of {max_links}"
    peers: set[str] = set()
    for link in advert.links:
        if not _FINGERPRINT.fullmatch(link.peer):
            return "a link peer is not a fingerprint"
        if link.peer == advert.broker:
            return "links to itself"
        if link.peer in peers:
            return f"lists peer {link.peer[:16]} twice"
        if not MIN_COST_US <= link.cost_us <= MAX_COST_US:
            return f"link cost {link.cost_us} out of range"
        peers.add(link.peer)
    return None


class LinkStateDB:
    """Newest advert per broker; `graph()` is what routing and planning see."""

    def __init__(self, max_links: int = MAX_LINKS) -> None:
        self.max_links = max_links
        self._entries: dict[str, _Entry] = {}

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        """Every stored broker id, tombstones included."""
        return iter(self._entries)

    def __contains__(self, broker: object) -> bool:
        return broker in self._entries

    def get(self, broker: str) -> Advert | None:
        """The stored advert (a tombstone included), or None."""
        entry = self._entries.get(broker)
        return entry.advert if entry else None

    def blob(self, broker: str) -> bytes:
        """The signed bytes stored with the advert (b"" for none or a crash tombstone)."""
        entry = self._entries.get(broker)
        return entry.blob if entry else b""

    def alive(self) -> list[Fingerprint]:
        """Brokers whose newest advert says they are in the cloud, sorted."""
        return sorted(b for b, e in self._entries.items() if e.advert.alive)

    def oldest_alive(self, now: float, skip: str = "") -> float:
        """Seconds since the stalest live broker's newest advert came (0.0 for none; `skip`:
        our own): how far behind gossip is. Safe from another thread (it reads a copy)."""
        entries = list(self._entries.items())
        return max(
            (now - e.received for b, e in entries if e.advert.alive and b != skip), default=0.0
        )

    def graph(self) -> Graph:
        """Every live broker, with only the links both ends advertise.

        Cost is the MAX of the two sides' measurements: both ends time the same link, so honest
        figures are close, and max means neither end can make the link look cheaper than the
        other measured (a buggy or greedy broker cannot attract traffic by under-reporting;
        with the mean it could still halve it). It is also symmetric, so a→b and b→a agree.
        """
        claims: dict[str, dict[str, int]] = {
            broker: {link.peer: link.cost_us for link in entry.advert.links}
            for broker, entry in self._entries.items()
            if entry.advert.alive
        }
        graph: Graph = {broker: {} for broker in claims}
        for a, links in claims.items():
            for b, cost in links.items():
                back = claims.get(b, {}).get(a)  # one-sided or unknown peer: not counted
                if back is not None:
                    graph[a][b] = max(cost, back)
        return graph

    # -- writing -------------------------------------------------------------------------

    def apply(self, advert: Advert, now: float, blob: bytes = b"") -> bool:
        """Store `advert` if it is well-formed and newer than what we hold. False: ignored
        (stale, a repeat, or malformed: `advert_problem` says why, for the log)."""
        if advert_problem(advert, self.max_links) is not None:
            return False
        held = self._entries.get(advert.broker)
        if held is not None and advert.seq <= held.advert.seq:
            return False
        self._entries[advert.broker] = _Entry(advert, now, blob)
        return True

    def remove(self, broker: str) -> bool:
        """`broker` is declared dead (heartbeats stopped): keep a tombstone, drop its links.
        Its stored signed bytes go too, so we never re-serve an advert that says it is alive.
        False if we had nothing live for it."""
        entry = self._entries.get(broker)
        if entry is None or not entry.advert.alive:
            return False
        tomb = msgspec.structs.replace(entry.advert, alive=False, links=[])
        self._entries[broker] = _Entry(tomb, entry.received, b"")
        return True

    def expire(self, now: float, max_age: float) -> list[Fingerprint]:
        """Forget adverts (tombstones too) not refreshed within `max_age`; return who went.
        Live brokers re-advertise well within `max_age`, so this only drops the departed."""
        old = sorted(b for b, e in self._entries.items() if now - e.received > max_age)
        for broker in old:
            del self._entries[broker]
        return old

    # -- persistence ---------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """msgpack of every stored advert (tombstones included), in broker order."""
        saved = [_Saved(self._entries[b].advert, self._entries[b].blob) for b in sorted(self)]
        return _encoder.encode(_Snapshot(SNAPSHOT_VERSION, saved))

    @classmethod
    def restore(cls, data: bytes, now: float, max_links: int = MAX_LINKS) -> LinkStateDB:
        """Rebuild from `snapshot()` bytes; every advert counts as received at `now`.
        Raises `WireError` for anything that is not a snapshot we would have written."""
        try:
            snap = _snapshot_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WireError(f"link-state snapshot: {exc}") from None
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise WireError(f"link-state snapshot: undecodable ({type(exc).__name__})") from None
        if snap.v != SNAPSHOT_VERSION:
            raise WireError(f"link-state snapshot: unknown version {snap.v}")
        db = cls(max_links)
        for saved in snap.adverts:
            problem = advert_problem(saved.advert, max_links)
            if problem is not None:
                raise WireError(f"link-state snapshot: {saved.advert.broker[:16]}: {problem}")
            if saved.advert.broker in db._entries:
                raise WireError(f"link-state snapshot: {saved.advert.broker[:16]} twice")
            db._entries[saved.advert.broker] = _Entry(saved.advert, now, saved.blob)
        return db
