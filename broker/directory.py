"""Where is this fingerprint? Presence lists gossiped by every broker, newest `seq` wins.

Everything that asks "where is this user" goes through `Directory`, so presence can later move
to a sharded directory (rendezvous hashing over brokers) without touching routing or delivery.
"""

from __future__ import annotations

from dataclasses import dataclass

from tits import wire


@dataclass
class _Held:
    presence: wire.Presence
    update: wire.PresenceUpdate


class Directory:
    def __init__(self, me: str) -> None:
        self.me = me
        self._by_broker: dict[str, _Held] = {}
        self._where: dict[str, dict[str, list[str]]] = {}  # fp → broker → devices

    def is_stale(self, broker: str, seq: int) -> bool:
        held = self._by_broker.get(broker)
        return held is not None and seq <= held.presence.seq

    def apply(self, presence: wire.Presence, update: wire.PresenceUpdate) -> set[str] | None:
        """Store a broker's list if newer; return the fingerprints whose places changed."""
        held = self._by_broker.get(presence.broker)
        if held is not None and presence.seq <= held.presence.seq:
            return None
        old = {e.fingerprint: sorted(e.devices) for e in held.presence.users} if held else {}
        new = {e.fingerprint: sorted(e.devices) for e in presence.users}
        self._by_broker[presence.broker] = _Held(presence, update)
        self._reindex()
        return {fp for fp in old.keys() | new.keys() if old.get(fp) != new.get(fp)}

    def drop_broker(self, broker: str) -> set[str]:
        held = self._by_broker.pop(broker, None)
        if held is None:
            return set()
        self._reindex()
        return {e.fingerprint for e in held.presence.users}

    def _reindex(self) -> None:
        where: dict[str, dict[str, list[str]]] = {}
        for broker, held in self._by_broker.items():
            for e in held.presence.users:
                where.setdefault(e.fingerprint, {})[broker] = list(e.devices)
        self._where = where

    def where(self, fingerprint: str) -> dict[str, list[str]]:
        """broker id → device ids of `fingerprint` online there (empty: offline everywhere)."""
        return self._where.get(fingerprint, {})

    def updates(self) -> list[wire.PresenceUpdate]:
        return [h.update for h in self._by_broker.values()]

    def brokers(self) -> list[str]:
        return list(self._by_broker)

    def users(self) -> list[dict[str, object]]:
        out = []
        for broker, held in self._by_broker.items():
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
