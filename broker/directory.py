"""Where is this fingerprint? Presence lists gossiped by every broker, newest `seq` wins.

A broker's list comes in SHARDS parts, by the first hex digit of each fingerprint, each signed
and sequenced on its own: a login changes one part, a sixteenth of the list, and only the users
of that part are re-indexed here. (One list a broker, re-indexed whole, cost every broker time
in proportion to every user of the cloud on each login anywhere; and a broker of 100,000 users
made a list bigger than a gossip frame may be.)

Everything that asks "where is this user" goes through `Directory`, so presence can later move
to a sharded directory (rendezvous hashing over brokers) without touching routing or delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tits import wire

SHARDS = 16
SHARD_BYTES = 2 << 20  # one part's entries, encoded: well inside a gossip frame and a snapshot
# page; users whose fingerprints were made to crowd one part get no more than that


def shard_of(fingerprint: str) -> int:
    return int(fingerprint[0], 16)


def split(entries: list[wire.PresenceEntry]) -> list[list[wire.PresenceEntry]]:
    """A broker's users by shard (a list for every shard, empty ones too)."""
    parts: list[list[wire.PresenceEntry]] = [[] for _ in range(SHARDS)]
    sizes = [0] * SHARDS
    for e in entries:
        k = shard_of(e.fingerprint)
        n = 48 + 18 * len(e.devices) + len(e.name.encode())  # ≥ its msgpack size
        if sizes[k] + n <= SHARD_BYTES:
            parts[k].append(e)
            sizes[k] += n
    return parts


@dataclass
class _Held:
    presence: wire.Presence
    update: wire.PresenceUpdate


class Directory:
    def __init__(self, me: str) -> None:
        self.me = me
        self._held: dict[tuple[str, int], _Held] = {}  # (broker, shard) → its newest list
        self._where: dict[str, dict[str, list[str]]] = {}  # fp → broker → devices

    def is_stale(self, broker: str, shard: int, seq: int) -> bool:
        held = self._held.get((broker, shard))
        return held is not None and seq <= held.presence.seq

    @staticmethod
    def misfiled(presence: wire.Presence) -> bool:
        """Entries in a part they do not belong to (or a part that does not exist)."""
        return not 0 <= presence.shard < SHARDS or any(
            shard_of(e.fingerprint) != presence.shard for e in presence.users
        )

    def apply(self, presence: wire.Presence, update: wire.PresenceUpdate) -> set[str] | None:
        """Store a part of a broker's list if newer; return the fingerprints whose places
        changed (None: not newer)."""
        key = (presence.broker, presence.shard)
        held = self._held.get(key)
        if held is not None and presence.seq <= held.presence.seq:
            return None
        old = {e.fingerprint: sorted(e.devices) for e in held.presence.users} if held else {}
        new = {e.fingerprint: sorted(e.devices) for e in presence.users}
        self._held[key] = _Held(presence, update)
        changed = {fp for fp in old.keys() | new.keys() if old.get(fp) != new.get(fp)}
        for fp in changed:
            self._place(fp, presence.broker, new.get(fp))
        return changed

    def drop_broker(self, broker: str) -> set[str]:
        gone: set[str] = set()
        for shard in range(SHARDS):
            held = self._held.pop((broker, shard), None)
            if held is not None:
                for e in held.presence.users:
                    self._place(e.fingerprint, broker, None)
                    gone.add(e.fingerprint)
        return gone

    def _place(self, fp: str, broker: str, devices: list[str] | None) -> None:
        if devices is None:
            places = self._where.get(fp)
            if places is not None:
                places.pop(broker, None)
                if not places:
                    del self._where[fp]
        else:
            self._where.setdefault(fp, {})[broker] = devices

    def where(self, fingerprint: str) -> dict[str, list[str]]:
        """broker id → device ids of `fingerprint` online there (empty: offline everywhere)."""
        return self._where.get(fingerprint, {})

    def updates(self) -> list[wire.PresenceUpdate]:
        return [h.update for h in self._held.values()]

    def brokers(self) -> list[str]:
        return sorted({broker for broker, _ in self._held})

    def users(self) -> list[dict[str, Any]]:
        out = []
        for (broker, _), held in self._held.items():
            for e in held.presence.users:
                out.append(
                    {
                        "fingerprint": e.fingerprint,
                        "name": e.name,
                        "broker": broker,
                        "devices": list(e.devices),
                    }
                )
        return out
