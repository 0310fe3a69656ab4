"""`/metrics` (issue 13): the Prometheus text format that `prometheus_client`'s own parser reads,
from a real broker whose counters move with real traffic — texts accepted, stored, delivered
and acknowledged, logins by result, refusals by reason, commits in the histogram — and never a
fingerprint in it, as a label or anywhere else."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    RawClient,
    broker_fixture,
    connect,
    people_fixture,
    wait_for,
)
from tits import wire
from tits.client import Incoming
from tits.client.blocking import Messenger

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(b: BrokerProc) -> tuple[str, Samples]:
    with urllib.request.urlopen(b.http + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_move_with_traffic(
    broker: BrokerProc, people: People, tmp_path: Path
) -> None:
    text, before = scrape(broker)
    for name in (
        "titsd_messages_accepted_total", "titsd_messages_delivered_total",
        "titsd_messages_forwarded_total", "titsd_deliveries_in_flight", "titsd_mailbox_messages",
        "titsd_peers_up", "titsd_repair_dials_total", "titsd_gossip_lag_seconds",
        "titsd_devices_online", "titsd_media_stored_bytes", "titsd_store_commit_seconds_count",
        "process_cpu_seconds_total",
    ):  # fmt: skip
        assert any(key[0] == name for key in before), name
    for code in wire.ERROR_CODES:  # every reason present from the start, at 0
        assert one(before, "titsd_refusals_total", reason=code) == 0
    assert one(before, "titsd_logins_total", result="ok") == 0
    assert one(before, "titsd_users_online", where="here") == 0

    alice = Messenger(people.alice, broker=broker.url)
    items = []
    for i in range(5):
        more, _, _, _ = alice.prepare_text([people.bob.fingerprint], f"早安 #{i}")
        items += more
    alice.connection().send_and_wait(items, timeout=30)
    texts = sum(1 for it in items if it[0].to == [people.bob.fingerprint])

    sent = wait_for(  # (the first scrape's rendering may be reused for 50 ms)
        lambda: (got := scrape(broker)[1])
        and one(got, "titsd_messages_accepted_total") >= texts and got, 10, "accepted",
    )  # fmt: skip
    assert one(sent, "titsd_logins_total", result="ok") == 1
    assert one(sent, "titsd_store_commit_seconds_count") > 0
    assert one(sent, "titsd_store_rows_written_total") >= 2 * texts  # Bob's row, Alice's own
    wait_for(  # the mailbox is counted every 10 s at most
        lambda: one(scrape(broker)[1], "titsd_mailbox_messages") >= texts, 30, "mailbox rows"
    )

    bob = connect(people.bob, broker.url)
    got: set[bytes] = set()

    def take() -> bool:
        for item in bob.poll(0.2):
            if isinstance(item, Incoming):
                bob.ack([item.envelope.id])
                got.add(item.envelope.id)
        return len(got) >= texts

    wait_for(take, 30, "Bob's texts")
    wait_for(
        lambda: one(scrape(broker)[1], "titsd_messages_delivered_total") >= texts, 20, "delivered"
    )
    now = wait_for(
        lambda: (got := scrape(broker)[1]) and one(got, "titsd_logins_total", result="ok") == 2
        and got, 10, "Bob's login",
    )  # fmt: skip
    assert one(now, "titsd_devices_online") == 2  # Alice's phone and Bob's
    wait_for(  # presence reaches the snapshot twice a second
        lambda: one(scrape(broker)[1], "titsd_users_online", where="here") == 2, 10, "users"
    )

    # media: a file's chunks, stored once, counted in bytes (from blobs.db, every 10 s)
    picture = tmp_path / "photo.bin"
    picture.write_bytes(bytes(range(256)) * 4000)
    with Messenger(people.alice, broker=broker.url) as sender:
        sender.send_file(people.bob.fingerprint, picture)
    size = picture.stat().st_size
    wait_for(lambda: one(scrape(broker)[1], "titsd_media_stored_bytes") == size, 30, "stored")
    assert one(scrape(broker)[1], "titsd_media_received_bytes_total") == size

    raw = RawClient(broker.url)
    try:
        raw.send(b"\xc1 not msgpack", b"")
        assert raw.recv_msg(10) is not None  # the Error: it was counted before it was sent
    finally:
        raw.close()
    # a rendering is reused for 50 ms (a flood of scrapes costs one a 50 ms): wait past it
    wait_for(lambda: one(scrape(broker)[1], "titsd_refusals_total", reason="bad-frame") == 1,
             10, "the refusal counted")  # fmt: skip
    text, after = scrape(broker)
    for home in people.all:  # counts only: no user's fingerprint, and not the broker's
        assert home.fingerprint not in text
    assert broker.id not in text
    bob.close()
    alice.close()

    # the example dashboard asks only for series a broker serves
    dashboard = Path(__file__).parents[2] / "configs/grafana/omega-im-dashboard.json"
    asked = set(re.findall(r"\btitsd_[a-z_]+", dashboard.read_text()))
    served = {key[0] for key in after}
    assert asked and asked <= served, asked - served
