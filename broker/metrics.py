"""`/metrics`: the broker in the Prometheus text format, for Prometheus or anything that reads it.

Nothing here sits on the message path. `BrokerCollector` reads, at scrape time, the counters
the broker's parts keep anyway (`Broker.counters`, `Sessions.refusals`/`login_results`,
`Delivery`, `Relay`, `Cloud.link_events`, the writer's stats) and the snapshot the loop
refreshes twice a second. It runs in the HTTP thread, so it only reads: dicts are copied
(`list(d.values())`, one C call under the GIL) before they are walked, never iterated live.
The one thing not counted elsewhere, the group commit's duration as a histogram, comes from
`CommitTimer`, which the writer thread calls once per commit (not per message).

Labels are closed sets: an error code of `wire.ERROR_CODES`, a login result, a link event, a
broker state. A fingerprint (a user's or a broker's) is never a label: ten thousand users
would be ten thousand series, and a scrape would say who is online.

Media: the chunks stored (`titsd_media_stored_bytes`, from blobs.db like the mailbox's rows)
and the chunk bytes taken, served, fetched from the cloud and passed on for others.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from tits import wire

from .sessions import LOGIN_RESULTS

if TYPE_CHECKING:
    from .server import Broker


# group commits take ~0.1 ms (durability "normal") to tens of ms (an fsync on a slow disk)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RENDER_GAP_S = 0.05  # at most 20 renderings a second, however many scrape
MAILBOX_EVERY_S = 10.0  # counting the mailbox's rows is a query: at most this often


class CommitTimer:
    """A histogram of the writer's group commits, fed by the writer after each one.

    The writer calls `notify` once per group commit, right after it added that commit's time
    to `stats["seconds"]`; wrapping `notify` reads that difference, so the store's code is
    unchanged and the loop never sees it."""

    def __init__(self, stats: dict[str, float], notify: Any) -> None:
        self.stats, self._notify = stats, notify
        self.counts = [0] * (len(COMMIT_BUCKETS) + 1)  # the last: over the largest bucket
        self.sum = 0.0
        self._seconds = float(stats.get("seconds", 0.0))

    def __call__(self) -> None:
        seconds = float(self.stats.get("seconds", 0.0))
        took, self._seconds = seconds - self._seconds, seconds
        self.counts[bisect.bisect_left(COMMIT_BUCKETS, took)] += 1
        self.sum += took
        self._notify()

    def buckets(self) -> list[tuple[str, float]]:
        counts = list(self.counts)  # a copy: the writer thread goes on counting
        out, total = [], 0
        for bound, n in zip(COMMIT_BUCKETS, counts, strict=False):
            total += n
            out.append((repr(bound), float(total)))
        out.append(("+Inf", float(total + counts[-1])))
        return out


class TableCounter:
    """Figures a query counts in a database (the mailbox's rows, the media store's bytes),
    from a read-only connection of its own (WAL: it never blocks the writer), at most every
    MAILBOX_EVERY_S; the last answer in between."""

    def __init__(self, path: Path, queries: tuple[str, ...]) -> None:
        self.path, self.queries = path, queries
        self._db: sqlite3.Connection | None = None
        self._at = 0.0
        self._value: tuple[float, ...] = (0.0,) * len(queries)
        self._lock = threading.Lock()

    def rows(self) -> tuple[float, ...]:
        """One figure a query."""
        with self._lock:
            now = time.monotonic()
            if now - self._at < MAILBOX_EVERY_S and self._at:
                return self._value
            self._at = now
            try:
                if self._db is None:
                    uri = f"file:{self.path}?mode=ro"
                    self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
                db = self._db
                self._value = tuple(float(db.execute(q).fetchone()[0]) for q in self.queries)
            except sqlite3.Error:
                pass  # a schema being migrated, a locked file, none yet: the last answer stands
            return self._value

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class BrokerCollector(Collector):
    """Every `titsd_*` family, built from what the broker holds at the moment of the scrape."""

    def __init__(
        self, broker: Broker, commits: CommitTimer, mailbox: TableCounter, media: TableCounter
    ) -> None:
        self.broker, self.commits, self.mailbox, self.media = broker, commits, mailbox, media

    def collect(self) -> Iterator[Metric]:
        b = self.broker
        counters = dict(b.counters)
        relay, delivery, cloud = b.relay, b.delivery, b.cloud
        transit = relay.transit
        snap = b.snapshot()

        yield _counter(
            "titsd_messages_accepted", "Messages taken from clients and stored (acknowledged).",
            counters.get("accepted", 0),
        )  # fmt: skip
        yield _counter(
            "titsd_messages_duplicate",
            "Sends of a message id already accepted (answered, not stored again).",
            counters.get("duplicates", 0),
        )
        yield _counter(
            "titsd_messages_delivered", "Deliveries to devices acknowledged by them.",
            delivery.delivered,
        )  # fmt: skip
        yield _counter(
            "titsd_messages_forwarded", "Messages forwarded to a peer broker.", relay.forwarded
        )
        yield _counter(
            "titsd_messages_arrived", "Messages that arrived from peer brokers.", relay.arrived
        )
        yield _counter(
            "titsd_messages_passed",
            "Forwards for other brokers passed on from memory.",
            transit.passed if transit is not None else 0,
        )
        yield _counter(
            "titsd_messages_purged",
            "Copies of messages taken back by their senders (unsent), dropped before delivery:"
            " mailbox rows and deliveries in flight.",
            counters.get("purged", 0),
        )
        refused = CounterMetricFamily(
            "titsd_refusals",
            "Error replies to clients, by error code (a refused send, login or frame).",
            labels=["reason"],
        )
        refusals = dict(b.sessions.refusals)
        for code in wire.ERROR_CODES:
            refused.add_metric([code], refusals.get(code, 0))
        yield refused
        logins = CounterMetricFamily(
            "titsd_logins", "Login attempts, by result.", labels=["result"]
        )
        results = dict(b.sessions.login_results)
        for result in LOGIN_RESULTS:
            logins.add_metric([result], results.get(result, 0))
        yield logins

        # deliveries: what is on its way to devices here and to relays toward other brokers
        in_flight = 0
        for devs in list(delivery.online.values()):
            for d in list(devs.values()):
                in_flight += len(d.inflight)
        yield _gauge(
            "titsd_deliveries_in_flight", "Deliveries sent to devices and not yet acknowledged.",
            in_flight,
        )  # fmt: skip
        yield _gauge(
            "titsd_devices_behind",
            "Online devices with stored mail still to be sent to them.",
            len(delivery.behind),
        )
        yield _gauge(
            "titsd_transit_in_flight",
            "Forwards for other brokers held in memory until the next hop acknowledges.",
            len(transit) if transit is not None else 0,
        )
        rows, bodies = self.mailbox.rows()
        yield _gauge(
            "titsd_mailbox_messages",
            f"Rows in the durable mailbox, one per (message, user); counted every "
            f"{MAILBOX_EVERY_S:g} s.",
            rows,
        )
        yield _gauge("titsd_mailbox_bodies", "Message bodies stored (each once).", bodies)
        (stored,) = self.media.rows()
        yield _gauge(
            "titsd_media_stored_bytes",
            f"Media chunks stored here, in bytes (each once); counted every {MAILBOX_EVERY_S:g} s.",
            stored,
        )
        for key, name, doc in (
            ("media_in", "received", "Chunk bytes clients uploaded here."),
            ("media_out", "served", "Chunk bytes sent to clients."),
            ("media_cloud", "fetched", "Chunk bytes fetched from other brokers for clients here."),
            ("media_relayed", "relayed", "Chunk bytes passed on between two other brokers."),
            ("media_to_cloud", "to_cloud", "Chunk bytes this broker sent to brokers that asked."),
        ):
            yield _counter(f"titsd_media_{name}_bytes", doc, counters.get(key, 0))

        # the store's group commits
        yield HistogramMetricFamily(
            "titsd_store_commit_seconds",
            "Duration of each group commit (one SQLite transaction and its sync).",
            buckets=self.commits.buckets(),
            sum_value=self.commits.sum,
        )
        yield _counter(
            "titsd_store_rows_written", "Mailbox rows committed.", b.writer.stats.get("rows", 0)
        )

        # users here and in the cloud
        users = snap.get("users", [])
        here = len(b.local_presence())
        online = GaugeMetricFamily(
            "titsd_users_online", "Users online, at this broker or elsewhere in the cloud.",
            labels=["where"],
        )  # fmt: skip
        online.add_metric(["here"], here)
        online.add_metric(["cloud"], len(users) - here)
        yield online
        yield _gauge(
            "titsd_devices_online", "Devices logged in at this broker.", len(b.sessions.by_device)
        )
        yield _gauge(
            "titsd_sessions", "Client connections with a logged-in device.",
            snap.get("sessions", 0),
        )  # fmt: skip
        yield _gauge(
            "titsd_dedup_ids", "Message ids remembered in memory for duplicate checks.",
            snap.get("remembered_ids", 0),
        )  # fmt: skip

        # the cloud
        yield _gauge(
            "titsd_peers_up", "Peer brokers linked to this one.", len(cloud.peers.up_peers())
        )
        states = GaugeMetricFamily(
            "titsd_brokers", "Brokers this broker knows of, by state.", labels=["state"]
        )
        known = snap.get("brokers", [])
        alive = sum(1 for x in known if x.get("alive", True))
        states.add_metric(["alive"], alive)
        states.add_metric(["down"], len(known) - alive)
        yield states
        yield _gauge(
            "titsd_cloud_problems",
            "Problems with the cloud as this broker sees it (the status page lists them).",
            len(snap.get("problems", [])),
        )
        links = CounterMetricFamily(
            "titsd_peer_link_events",
            "Peer links that came up, went down (a goodbye or a drop) or were lost (silence).",
            labels=["event"],
        )
        for event, n in dict(cloud.link_events).items():
            links.add_metric([event], n)
        yield links
        yield _counter(
            "titsd_repair_dials",
            "Links the repair plan had this broker dial (after a broker left or died).",
            cloud.repair_dials,
        )
        yield _counter(
            "titsd_peer_dials_failed", "Dials to peers that failed.", cloud.peers.failed_dials
        )
        yield _gauge(
            "titsd_gossip_lag_seconds",
            "Age of the stalest live broker's newest advert (brokers re-advertise every 2 s).",
            cloud.topology.db.oldest_alive(time.monotonic(), skip=b.fingerprint),
        )
        yield _gauge(
            "titsd_loop_lag_max_seconds",
            "The longest stall of the broker's own loop seen since it started.",
            cloud.peers.lag_s,
        )
        verifier = cloud.verifier
        yield _gauge(
            "titsd_gossip_certs_pending",
            "Broker certificates waiting for GnuPG.",
            verifier.pending,
        )


class Metrics:
    """One broker's registry (its own, not the process-global one) and its rendering."""

    def __init__(self, broker: Broker) -> None:
        self.commits = CommitTimer(broker.writer.stats, broker.writer.notify)
        broker.writer.notify = self.commits
        data = broker.cfg.data
        self.mailbox = TableCounter(
            data / "mailbox.db", ("SELECT count(*) FROM mail", "SELECT count(*) FROM bodies")
        )
        self.media = TableCounter(data / "blobs.db", ("SELECT coalesce(sum(size), 0) FROM chunks",))
        self._last: tuple[float, bytes] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BrokerCollector(broker, self.commits, self.mailbox, self.media))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def render(self) -> bytes:
        """The text format; at most one rendering every RENDER_GAP_S (a scrape sooner gets the
        last one), so that a flood of scrapes cannot take the GIL from the message loop."""
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= RENDER_GAP_S:
            self._last = (now, generate_latest(self.registry))
        return self._last[1]

    def close(self) -> None:
        self.mailbox.close()
        self.media.close()
