"""Media: MB/s for one big file, and a photo to a group of 50, in one run.

    python benchmarks/media.py [--mb 200] [--photo-mb 5] [--members 50] [--no-cloud]
                               [--no-group] [--rss] [--two-gib]

1. on disk: read + SHA-256 of the file (`tits.media.manifest.scan`, chunk hashes too): the
   ceiling any transfer of it can reach here; and writing it as a new file, which the
   broker and the receiver each do (on this workplace's VM, new page-cache pages cost
   4–14 ms a MiB under load, which bounds every figure below: it is the first touch of RAM
   the VM never used since it booted; a page freed and used again costs about a tenth, so
   the same run is faster on a VM that has been up for a while).
2. one broker: Alice sends it (`Messenger.send_file`: offer, the signed manifest, the
   chunks) while Bob fetches it (`Messenger.fetch`: each chunk checked, the whole file
   checked, saved in his home; he starts when her message comes). End to end: her first
   byte to his last checked one. Upload: her send alone; download: Bob fetching it again
   from the broker's disk. One real `titsd` (CURVE, fsync on for messages), both clients
   real: Alice in this process, Bob in one of his own (as on his own device).
3. three hops: Alice and Bob on two brokers `--hops` (3) apart (a cloud of 12 brokers,
   grown until a pair is that far); Bob's broker fetches each chunk from Alice's over a
   direct connection (broker/medialinks.py), or relay by relay with `--by-route`; the chunk
   bytes the brokers between them passed on are counted.
4. resume after half: the upload is broken off at half (the client closed), then a new
   client sends the same file: only the missing half goes (bytes counted).
5. a photo to a group of `--members`: the time to upload it and have the broker store the
   group message (one Send for all members); then the same photo to a second group of the
   same people: no chunk bytes move at all (counted).
`--rss`: peak RSS of this process (both clients) and of the broker, printed after 2.
`--two-gib`: the largest file a broker takes by default (2 GiB, 512 chunks) through 1., 2.
and 4. with `--rss`: bounded memory on sender, broker and receiver (a few minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from tits import wire
from tits.client.blocking import Message, Messenger
from tits.home import Home
from tits.media.manifest import scan

TARGETS = "targets (issue 10): one broker ≥ 100 MB/s end to end, three hops ≥ 50 % of that"
MB = 1_000_000


def _bench(name: str) -> ModuleType:
    """benchmarks/<name>.py by path (`import broker` may find the repository's broker/)."""
    key = f"bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(
        key, Path(__file__).resolve().parent / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # msgspec resolves its Structs' annotations there
    spec.loader.exec_module(module)
    return module


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)
            block = hashlib.sha256(block).digest() * (len(block) // 32)  # not all the same


def pair(root: Path) -> tuple[Home, Home]:
    groups = _bench("groups")
    a = groups.make_home(root / "alice", "Alice")
    b = groups.make_home(root / "bob", "Bob")
    a.identity.import_public(b.identity.export_public(b.fingerprint))
    b.identity.import_public(a.identity.export_public(a.fingerprint))
    return a, b


def kill_agents(*homes: Home) -> None:
    for h in homes:
        subprocess.run(["gpgconf", "--homedir", str(h.path / "gnupg"), "--kill", "all"],
                       check=False, capture_output=True)  # fmt: skip


def _bob(home: str, url: str, keyserver: str | None, out: Any) -> None:
    """Bob in a process of his own (as on his own device): wait for Alice's media message,
    fetch it, report when it was checked and saved; then fetch it again from the broker's
    disk alone (his copy deleted) and report how long that took."""
    try:
        with Messenger(Home(Path(home)), broker=url, keyserver=keyserver) as b:
            b.connect(60)
            out.send("ready")
            got: list[Message] = []
            b.receive(
                got.append, follow=True, timeout=300,
                until=lambda: any(x.kind == "media" for x in got),
            )  # fmt: skip
            msg = next(x for x in got if x.kind == "media")
            path = b.fetch(msg)
            fetched = time.time()
            path.unlink()
            b.store.set_file(msg.id, "")
            msg.file = None
            t1 = time.perf_counter()
            b.fetch(msg)
            out.send((fetched, time.perf_counter() - t1))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.send(repr(exc))


def transfer(
    a: Messenger, b_home: Home, url: str, src: Path, keyserver: str | None = None
) -> dict[str, float]:
    """Alice sends while Bob fetches (he starts when her message comes, which is as soon as
    her broker took the offer): end to end is her first byte to his last checked byte. Then
    Bob fetches it again from the broker's disk alone: the download."""
    import multiprocessing as mp

    m = a.scan(src)
    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_bob, args=(str(b_home.path), url, keyserver, theirs))
    proc.start()
    try:
        if not mine.poll(120) or mine.recv() != "ready":
            raise SystemExit("Bob's process did not start")
        t0 = time.time()
        a.send_file(b_home.fingerprint, src, manifest=m)
        up = time.time() - t0
        if not mine.poll(600):
            raise SystemExit("Bob did not get the file")
        answer = mine.recv()
        if isinstance(answer, str):
            raise SystemExit(f"Bob failed: {answer}")
        fetched, down = answer
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    size = src.stat().st_size / MB
    return {"up": size / up, "e2e": size / (fetched - t0), "down": size / down}


def rss_kb(pid: int | None = None) -> int:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def bench_disk(src: Path) -> tuple[float, float]:
    """(read + SHA-256 MB/s, writing a new file MB/s): a transfer reads, hashes and writes
    it (the broker and the receiver each write it anew)."""
    t0 = time.perf_counter()
    scan(src, thumbnail=False)
    read = src.stat().st_size / MB / (time.perf_counter() - t0)
    copy = src.with_name("copy.bin")
    t1 = time.perf_counter()
    with src.open("rb") as fh, copy.open("wb") as out:
        while block := fh.read(1 << 20):
            out.write(block)
    write = src.stat().st_size / MB / (time.perf_counter() - t1)
    copy.unlink()
    return read, write


def bench_one(root: Path, src: Path, show_rss: bool) -> dict[str, float]:
    start_broker = _bench("broker").start_broker
    a_home, b_home = pair(root)
    proc, info = start_broker(root / "broker")
    try:
        with Messenger(a_home, broker=info["url"]) as a:
            out = transfer(a, b_home, info["url"], src)
            if show_rss:
                out["rss_alice_mb"] = rss_kb() / 1024
                out["rss_bob_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                out["rss_broker_mb"] = rss_kb(proc.pid) / 1024
        return out
    finally:
        proc.terminate()
        proc.wait(15)
        kill_agents(a_home, b_home)


class _Stop(Exception):
    pass


def bench_resume(root: Path, src: Path) -> dict[str, float]:
    start_broker = _bench("broker").start_broker
    a_home, b_home = pair(root)
    proc, info = start_broker(root / "broker")
    size = src.stat().st_size
    try:
        with Messenger(a_home, broker=info["url"]) as a:
            m = a.scan(src)

            def stop_at_half(done: int, total: int) -> None:
                if done >= total // 2:
                    raise _Stop

            try:
                a.send_file(b_home.fingerprint, src, manifest=m, progress=stop_at_half)
            except _Stop:
                pass
            first = a.client.transfers.sent_bytes
        with Messenger(a_home, broker=info["url"]) as a:  # a new connection, a new client
            t0 = time.perf_counter()
            a.send_file(b_home.fingerprint, src, manifest=m)
            took = time.perf_counter() - t0
            second = a.client.transfers.sent_bytes
        return {"first": first / size, "second": second / size, "mbps": size / MB / took,
                "total": (first + second) / size}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(15)
        kill_agents(a_home, b_home)


def bench_cloud(root: Path, src: Path, hops: int, by_route: bool) -> dict[str, Any]:
    """Alice and Bob on two brokers exactly `hops` apart: a cloud of 12 brokers, grown (up
    to 24) until a pair is that far. `by_route`: every broker started with
    `media_direct = false`, so chunks go relay by relay, as before direct links."""
    from tits.keyclient import KeyClient
    from tits.localcloud import LocalCloud, _status, graph_of, hop_counts, whole

    old = os.environ.get("TITSD_MEDIA_DIRECT")
    if by_route:
        os.environ["TITSD_MEDIA_DIRECT"] = "false"  # the brokers read it at start
    cloud = LocalCloud(root / "cloud", 0)
    a_home, b_home = pair(root)
    try:
        cloud.start(12)
        while True:
            ids = {br["id"] for br in cloud.brokers}
            deadline = time.monotonic() + 120
            while not whole([_status(br["http"]) for br in cloud.brokers], ids):
                if time.monotonic() > deadline:
                    raise SystemExit("the cloud did not become whole")
                time.sleep(0.2)
            status = _status(cloud.brokers[0]["http"])
            assert status is not None
            dist = hop_counts(graph_of(status))
            wide = max(d for row in dist.values() for d in row.values())
            if wide >= hops or len(cloud.brokers) >= 24:
                break
            cloud.start_broker(len(cloud.brokers), cloud.secret())
        far = min(hops, wide)
        x, y = min((p, q) for p in dist for q in dist[p] if dist[p][q] == far)
        kc = KeyClient(cloud.keyserver)
        for h in (a_home, b_home):
            kc.publish_key(h.identity.export_public(h.fingerprint))
            _, cert, sig = h.certificate
            kc.publish_device(cert, sig, h.device.prove(cert))
        by_id = {br["id"]: br for br in cloud.brokers}
        ks = cloud.keyserver
        with Messenger(a_home, broker=by_id[x]["url"], keyserver=ks) as a:
            out = transfer(a, b_home, by_id[y]["url"], src, ks)
        relayed = 0  # chunk bytes brokers between them passed on
        for br in cloud.brokers:
            st = _status(br["http"])
            if st is not None and br["id"] not in (x, y):
                relayed += int(st.get("counters", {}).get("media_relayed", 0))
        return {"hops": far, "brokers": len(cloud.brokers), "relayed": relayed, **out}
    finally:
        cloud.stop()
        kill_agents(a_home, b_home)
        if old is None:
            os.environ.pop("TITSD_MEDIA_DIRECT", None)
        else:
            os.environ["TITSD_MEDIA_DIRECT"] = old


def bench_group(root: Path, photo: Path, members: int) -> dict[str, float]:
    groups = _bench("groups")
    start_broker = _bench("broker").start_broker
    a_home = groups.make_home(root / "galice", "Alice")
    fps, armored = groups.batch_keys(root / "members", members - 1)
    a_home.identity.import_public(armored)
    proc, info = start_broker(root / "gbroker")
    try:
        with Messenger(a_home, broker=info["url"]) as a:
            one = a.group_create("五十人")
            a.group_change(one, "invite", fps)
            two = a.group_create("另一群")
            a.group_change(two, "invite", fps)
            m = a.scan(photo)
            t0 = time.perf_counter()
            a.send_file("#" + one.hex(), photo, manifest=m)
            first = time.perf_counter() - t0
            before = a.client.transfers.sent_bytes
            t1 = time.perf_counter()
            a.send_file("#" + two.hex(), photo, manifest=m)
            second = time.perf_counter() - t1
            moved = a.client.transfers.sent_bytes - before
        return {"first_ms": first * 1000, "second_ms": second * 1000, "moved": moved}
    finally:
        proc.terminate()
        proc.wait(15)
        kill_agents(a_home)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--photo-mb", type=int, default=5)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--no-cloud", action="store_true")
    ap.add_argument("--no-group", action="store_true")
    ap.add_argument("--hops", type=int, default=3, help="Alice's and Bob's brokers this far")
    ap.add_argument("--by-route", action="store_true",
                    help="brokers with media_direct = false: chunks relay by relay")  # fmt: skip
    ap.add_argument("--rss", action="store_true", help="print peak RSS after the one-broker run")
    ap.add_argument("--two-gib", action="store_true",
                    help="a 2 GiB file, one broker and resume only, with --rss")  # fmt: skip
    args = ap.parse_args()
    size = args.mb * MB
    if args.two_gib:
        size = 2 << 30
        args.rss = args.no_cloud = args.no_group = True
    root = Path(tempfile.mkdtemp(prefix="tmb", dir="/tmp"))
    try:
        src = root / "big.bin"
        make_file(src, size)
        print(f"file: {size / MB:,.0f} MB; chunks of {wire.CHUNK_SIZE >> 20} MiB; {TARGETS}")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} cores, load {load} (1, 5, 15 min)")
        read, write = bench_disk(src)
        print(f"on disk: read + SHA-256 {read:,.0f} MB/s (the ceiling), writing it as a new "
              f"file {write:,.0f} MB/s (the broker and the receiver each do)")  # fmt: skip
        one = bench_one(root / "one", src, args.rss)
        print(f"one broker: upload {one['up']:,.0f} MB/s, download {one['down']:,.0f} MB/s, "
              f"end to end {one['e2e']:,.0f} MB/s")  # fmt: skip
        if args.rss:
            print(f"peak RSS: Alice's client {one['rss_alice_mb']:,.0f} MB, Bob's (a process "
                  f"of his own) {one['rss_bob_mb']:,.0f} MB, broker "
                  f"{one['rss_broker_mb']:,.0f} MB")  # fmt: skip
        res = bench_resume(root / "resume", src)
        print(f"resume after half: first try sent {res['first']:.0%}, the resumed one "
              f"{res['second']:.0%} of the file ({res['total']:.0%} in all) at "
              f"{res['mbps']:,.0f} MB/s")  # fmt: skip
        if not args.no_cloud:
            c = bench_cloud(root / "cloud", src, args.hops, args.by_route)
            how = "relay by relay" if args.by_route else "direct from the holder"
            print(f"{c['hops']:.0f} hops apart ({c['brokers']} brokers; chunks {how}): upload "
                  f"{c['up']:,.0f} MB/s, download {c['down']:,.0f} MB/s, end to end "
                  f"{c['e2e']:,.0f} MB/s ({c['e2e'] / one['e2e']:.0%} of one broker); "
                  f"chunk bytes the brokers between them passed on: "
                  f"{c['relayed'] / MB:,.0f} MB")  # fmt: skip
        if not args.no_group:
            photo = root / "photo.bin"
            make_file(photo, args.photo_mb * MB)
            g = bench_group(root / "group", photo, args.members)
            print(f"{args.photo_mb} MB photo to a group of {args.members}: "
                  f"{g['first_ms']:,.0f} ms (upload + the group message stored); the same photo "
                  f"to another group of them: {g['second_ms']:,.0f} ms, "
                  f"{g['moved']:,.0f} chunk bytes moved")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
