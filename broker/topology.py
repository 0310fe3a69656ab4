"""This broker's view of the cloud: the verified link-state database, persisted under the
data directory so a restarted broker knows its old neighbours, and the routes derived from it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

from tits import wire
from tits.errors import TitsError
from tits.log import sanitise
from tits.router import Graph, LinkStateDB, next_hops

from .signer import BrokerSigner, BrokerVerifier, CertPending

log = structlog.get_logger("tits.broker.topology")

ADVERT_MAX_AGE = 30.0  # a broker re-advertises every few seconds; silence this long = gone


class Topology:
    def __init__(self, me: str, data: Path, signer: BrokerSigner, verifier: BrokerVerifier) -> None:
        self.me, self.signer, self.verifier = me, signer, verifier
        self.path = data / "topology.bin"
        self.db = LinkStateDB()
        self._seq = time.time_ns() // 1000  # µs since the epoch: increases across restarts
        self._routes: dict[str, str] | None = None
        self.dirty = False  # needs saving
        self._saved_shape: tuple[tuple[str, str, bool, tuple[str, ...]], ...] | None = None
        if self.path.exists():
            try:
                self.db = LinkStateDB.restore(self.path.read_bytes(), time.monotonic())
                log.info("topology.loaded", brokers=len(self.db))
            except (OSError, TitsError) as exc:
                log.warning("topology.unreadable", error=sanitise(str(exc)))
        held = self.db.get(me)
        if held is not None:
            self._seq = max(self._seq, held.seq + 1)

    def next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return self._seq

    # -- adverts -----------------------------------------------------------------------------

    def accept(self, signed: wire.SignedAdvert, now: float) -> wire.Advert | None:
        """Verify and store; the advert if it was new, None if stale or refused. Raises
        `CertPending` when its certificate has not been checked yet (the caller holds it)."""
        try:
            claimed = wire.ADVERT_DECODER.decode(signed.advert)
            if claimed.broker == self.me:
                return None  # our own advert, echoed back by the flood (or forged: ignored)
            held = self.db.get(claimed.broker)
            if held is not None and claimed.seq <= held.seq:
                return None  # stale or a repeat (most flooded copies): no signature to check
            advert = self.verifier.advert(signed)
        except CertPending:
            raise
        except TitsError as exc:
            log.warning("gossip.advert_refused", error=sanitise(exc.message))
            return None
        if not self.db.apply(advert, now, wire.encode(signed)):
            return None
        self._changed()
        return advert

    def set_mine(self, advert: wire.Advert, signed: wire.SignedAdvert, now: float) -> None:
        self.db.apply(advert, now, wire.encode(signed))
        self._changed()

    def forget(self, broker: str) -> None:
        if self.db.remove(broker):
            self._changed()

    def expire(self, now: float) -> list[str]:
        gone = [b for b in self.db.expire(now, ADVERT_MAX_AGE) if b != self.me]
        if gone:
            self._changed()
        return gone

    def _changed(self) -> None:
        self._routes = None
        self.dirty = True

    def signed_adverts(self) -> list[wire.SignedAdvert]:
        out = []
        for broker in self.db:
            blob = self.db.blob(broker)
            if blob:
                out.append(wire.GOSSIP_DECODER.decode(blob))
        return out

    def _shape(self) -> tuple[tuple[str, str, bool, tuple[str, ...]], ...]:
        """What a restart needs: who, where, linked to whom. (Every broker re-advertises every
        2 s with a new seq, so "changed" alone meant an fsync a second at every broker.)"""
        out = []
        for broker in sorted(self.db):
            a = self.db.get(broker)
            if a is not None:
                out.append((broker, a.address, a.alive, tuple(sorted(x.peer for x in a.links))))
        return tuple(out)

    def save(self) -> None:
        if not self.dirty:
            return
        shape = self._shape()
        if shape == self._saved_shape:
            self.dirty = False
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(self.db.snapshot())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # the old file or the new one, never half of one
        except OSError as exc:  # a full disk must not stop routing; try again next time
            log.error("topology.save_failed", error=str(exc))
            return
        self.dirty = False
        self._saved_shape = shape

    # -- graph and routes --------------------------------------------------------------------

    def graph(self) -> Graph:
        return self.db.graph()

    def planning_graph(self) -> Graph:
        """The live cloud: brokers with at least one two-way link, and us. A broker that died
        loses its links as its neighbours re-advertise, and drops out of planning here."""
        g = self.db.graph()
        keep = {b for b, links in g.items() if links} | {self.me}
        return {b: {p: c for p, c in g.get(b, {}).items() if p in keep} for b in keep}

    def next_hop(self, target: str) -> str | None:
        if self._routes is None:
            g = self.planning_graph()
            self._routes = next_hops(g, self.me) if self.me in g else {}
        return self._routes.get(target)

    def advert(self, broker: str) -> wire.Advert | None:
        return self.db.get(broker)
