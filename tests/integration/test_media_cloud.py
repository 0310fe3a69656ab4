"""Files across a cloud of real brokers: Alice on one broker, Bob on the farthest (at least
one relay between).

- Relay by relay (`media_direct = false`), a 48 MiB file (12 chunks): her broker is killed
  -9 mid-upload and comes back; a relay on the path is killed -9 mid-download; neither
  transfer starts over (bytes counted), the file arrives with its hash, and the chunks were
  stored only where they belong (the holder and Bob's broker), found along the routes.
- Direct (the default): the chunks come straight from the holder; no relay passes on any."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.broker_fixtures import People, people_fixture, wait_for  # noqa: F401
from tits import wire
from tits.client.blocking import Message, Messenger
from tits.client.transfer import GET_WINDOW, WINDOW
from tits.localcloud import _status
from tits.router import shortest_path

from .test_cloud_brokers import Cloud, hops, publish

pytestmark = pytest.mark.timeout(300)


def farthest(cloud: Cloud) -> tuple[dict[str, dict[str, int]], str, str]:
    """The hop counts, and the two brokers farthest apart (a relay between them at least)."""
    st = _status(cloud.live()[0]["http"])
    assert st is not None
    dist = hops(st)
    a, b = max(((x, y) for x in dist for y in dist[x]), key=lambda p: dist[p[0]][p[1]])
    assert dist[a][b] >= 2, "a relay between them"
    return dist, a, b


def chunk_files(data: Path) -> int:
    return sum(1 for p in (data / "blobs").rglob("*") if p.is_file() and not p.name.startswith("."))


def test_a_20mb_file_across_the_cloud_survives_two_kill9s(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # relay by relay (`media_direct = false`, as where brokers reach only their neighbours):
    # a relay on the path is what this test kills
    monkeypatch.setenv("TITSD_MEDIA_DIRECT", "false")
    cloud = Cloud(6)
    try:
        _run(cloud, people, tmp_path)
    finally:
        cloud.close()


def test_a_file_from_brokers_away_comes_direct_and_no_relay_passes_a_chunk(
    people: People, tmp_path: Path
) -> None:
    """By default a chunk from a holder that is not a neighbour comes over a direct
    connection (broker/medialinks.py): the brokers between pass on no chunk bytes at all,
    and only the holder and Bob's broker store it."""
    cloud = Cloud(6)
    try:
        ks = cloud.local.keyserver
        publish(people, ks)
        _, a, b = farthest(cloud)
        index = {br["id"]: i for i, br in enumerate(cloud.local.brokers)}
        src = tmp_path / "album.bin"
        n = 3
        src.write_bytes(os.urandom(n * wire.CHUNK_SIZE - 1000))
        with (
            Messenger(people.alice, broker=cloud.by_id[a]["url"], keyserver=ks) as alice,
            Messenger(people.bob, broker=cloud.by_id[b]["url"], keyserver=ks) as bob,
        ):
            m = alice.scan(src)
            alice.send_file(people.bob.fingerprint, src, manifest=m)
            path = bob.fetch(_media(bob, m.sha256), timeout=120)
            assert hashlib.sha256(path.read_bytes()).digest() == m.sha256

        def counters() -> dict[str, dict[str, int]]:
            return {x: (_status(cloud.by_id[x]["http"]) or {})["counters"] for x in cloud.by_id}

        size = src.stat().st_size  # fetched from the cloud (the pages refresh twice a second)...
        wait_for(lambda: counters()[b]["media_cloud"] == size, 10, "Bob's broker's fetch counted")
        assert all(c["media_relayed"] == 0 for c in counters().values())  # ...by no relay
        assert chunk_files(cloud.root / f"broker{index[a]}") == n
        assert chunk_files(cloud.root / f"broker{index[b]}") == n
        others = [x for x in cloud.by_id if x not in (a, b)]
        assert all(chunk_files(cloud.root / f"broker{index[x]}") == 0 for x in others)
    finally:
        cloud.close()


def _run(cloud: Cloud, people: People, tmp_path: Path) -> None:
    ks = cloud.local.keyserver
    publish(people, ks)
    dist, a, b = farthest(cloud)
    st = _status(cloud.live()[0]["http"])
    assert st is not None
    graph: dict[str, dict[str, int]] = {x: {} for x in dist}
    for link in st["links"]:
        graph[link["a"]][link["b"]] = graph[link["b"]][link["a"]] = 1
    route = shortest_path(graph, b, a)
    assert route is not None
    relay = route[1]
    index = {br["id"]: i for i, br in enumerate(cloud.local.brokers)}
    one, two = tmp_path / "movie.bin", tmp_path / "second.bin"
    size, n = 12 * wire.CHUNK_SIZE, 12  # starting over at half would move 18 chunks or more
    one.write_bytes(os.urandom(size))
    two.write_bytes(os.urandom(size))
    # what was in flight when a broker died (a download asks for more chunks at once)
    up_slack, down_slack = ((w + 1) * wire.CHUNK_SIZE for w in (WINDOW, GET_WINDOW))

    alice = Messenger(people.alice, broker=cloud.by_id[a]["url"], keyserver=ks)
    bob = Messenger(people.bob, broker=cloud.by_id[b]["url"], keyserver=ks)
    try:
        # 1. a relay on the path from Bob's broker to Alice's dies mid-download
        m1 = alice.scan(one)
        alice.send_file(people.bob.fingerprint, one, manifest=m1)
        msg = _media(bob, m1.sha256)
        cut: list[int] = []

        def download_progress(done: int, total: int) -> None:
            if done >= total // 2 and not cut:
                cut.append(done)
                cloud.kill9(relay)

        path = bob.fetch(msg, progress=download_progress, timeout=240)
        assert cut and hashlib.sha256(path.read_bytes()).digest() == m1.sha256
        assert bob.client.transfers.got_bytes <= size + down_slack
        # kept at the holder and at Bob's broker; the relays only passed chunks on
        assert chunk_files(cloud.root / f"broker{index[a]}") == n
        assert chunk_files(cloud.root / f"broker{index[b]}") == n
        others = [x for x in cloud.by_id if x not in (a, b)]
        assert all(chunk_files(cloud.root / f"broker{index[x]}") == 0 for x in others)

        # 2. Alice's broker dies mid-upload and comes back: nothing sent twice
        m2 = alice.scan(two)
        killed: list[int] = []

        def upload_progress(done: int, total: int) -> None:
            if done >= total // 2 and not killed:
                killed.append(done)
                cloud.local.kill(index[a], hard=True)
                cloud.local.restart(index[a])
                cloud.proc[a] = cloud.local.broker_procs[index[a]]

        before = alice.client.transfers.sent_bytes
        alice.send_file(people.bob.fingerprint, two, manifest=m2, progress=upload_progress)
        sent = alice.client.transfers.sent_bytes - before
        assert killed and m2.holder == a
        assert size <= sent <= size + up_slack, sent
        msg2 = _media(bob, m2.sha256)
        path2 = bob.fetch(msg2, timeout=240)
        assert hashlib.sha256(path2.read_bytes()).digest() == m2.sha256
    finally:
        bob.close()
        alice.close()


def _media(m: Messenger, sha: bytes) -> Message:
    got: list[Message] = []

    def has() -> bool:
        return any((g.media() or {}).get("sha256") == sha.hex() for g in got)

    m.receive(got.append, timeout=60, until=has)
    return next(g for g in got if (g.media() or {}).get("sha256") == sha.hex())
