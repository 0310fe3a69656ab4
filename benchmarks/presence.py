"""Presence at scale: what one login anywhere costs every broker's directory.

    python benchmarks/presence.py [--brokers 30] [--users 1000000]

DESIGN promises full presence gossip for hundreds of brokers and about a million users. Every
broker holds every broker's list; a login changes one shard (1/16) of its broker's list, and
each broker applies that shard (`Directory.apply`: a diff of that shard's users). The figure
beside it is what a broker did before shards: rebuild the index of every user of the cloud on
every update — measured here on the same data with the same dictionaries. Real Ed25519
verification of each shard update is timed too. One process, one core; medians of 5.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable

from nacl.signing import VerifyKey
from rich.console import Console
from rich.table import Table

from tits import wire
from tits.broker.directory import SHARDS, Directory, split
from tits.device import DeviceKey

console = Console()
NO_UPDATE = wire.PresenceUpdate()


def fingerprints(n: int, salt: bytes) -> list[str]:
    return [hashlib.sha1(salt + b"%d" % k).hexdigest().upper() for k in range(n)]


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", type=int, default=30)
    ap.add_argument("--users", type=int, default=1_000_000, help="online in the whole cloud")
    args = ap.parse_args()
    per = args.users // args.brokers
    brokers = fingerprints(args.brokers, b"broker")
    directory = Directory("F" * 40)
    lists: dict[str, list[wire.PresenceEntry]] = {}
    t0 = time.perf_counter()
    seq = 1
    for b in brokers:
        entries = [
            wire.PresenceEntry(fp, ["0123456789abcdef"]) for fp in fingerprints(per, b.encode())
        ]
        lists[b] = entries
        for shard, part in enumerate(split(entries)):
            directory.apply(wire.Presence(broker=b, seq=seq, users=part, shard=shard), NO_UPDATE)
    console.print(
        f"{args.brokers} brokers × {per:,} users = {per * args.brokers:,} online; "
        f"directory built in {time.perf_counter() - t0:.1f} s"
    )

    # one login at brokers[0]: its shard gains a user
    newcomer = fingerprints(1, b"newcomer")[0]
    shard = int(newcomer[0], 16)
    before = split(lists[brokers[0]])[shard]
    part = [*before, wire.PresenceEntry(newcomer, ["fedcba9876543210"])]

    def apply_login() -> None:  # a login, then its logout: each changes one user
        nonlocal seq
        seq += 1
        users = part if seq % 2 == 0 else before
        p = wire.Presence(broker=brokers[0], seq=seq, users=users, shard=shard)
        changed = directory.apply(p, NO_UPDATE)
        assert changed == {newcomer}

    t_apply = median_time(apply_login)

    def reindex_all() -> None:  # what each update cost before shards
        where: dict[str, dict[str, list[str]]] = {}
        for b, entries in lists.items():
            for e in entries:
                where.setdefault(e.fingerprint, {})[b] = list(e.devices)

    t_reindex = median_time(reindex_all, 3)

    key = DeviceKey.generate()
    presence = wire.Presence(broker=brokers[0], seq=seq + 1, users=part, shard=shard)
    data = wire.encode(presence)
    sig = key.sign(data)
    verify_key = VerifyKey(key.public_key)
    t_verify = median_time(lambda: verify_key.verify(data, sig), 50)
    t_decode = median_time(lambda: wire.PRESENCE_DECODER.decode(data), 20)

    table = Table(title=f"presence: one login, with {per * args.brokers:,} users online")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row(f"shard update size ({len(part):,} users)", f"{len(data) / 1024:,.0f} KiB")
    table.add_row("decode the update", f"{t_decode * 1e3:.2f} ms")
    table.add_row("verify its signature (Ed25519)", f"{t_verify * 1e3:.3f} ms")
    table.add_row("apply it to the directory", f"{t_apply * 1e3:.2f} ms")
    table.add_row("before shards: re-index every user", f"{t_reindex * 1e3:,.0f} ms")
    table.add_row("speed-up of the apply", f"{t_reindex / t_apply:,.0f}×")
    whole = wire.encode(wire.Presence(broker=brokers[0], seq=1, users=lists[brokers[0]]))
    table.add_row("one broker's whole list, unsharded", f"{len(whole) / 1024:,.0f} KiB")
    console.print(table)
    console.print(
        f"[dim]{SHARDS} shards; every broker applies every login of the cloud, so at "
        f"{1 / (t_decode + t_verify + t_apply):,.0f} updates/s a broker would spend one core "
        "on presence alone[/dim]"
    )


if __name__ == "__main__":
    main()
