"""The cloud: throughput and latency across hops, join convergence, repair after kill -9.

    python benchmarks/cloud.py [--brokers 12] [--hops 3] [--sizes 10,30] [--kills 2] [--quick]

Real `titsd` processes and keyd on loopback (`LocalCloud`, as `tits cloud up` starts them:
CURVE, every broker's GnuPG key made at its first start, SQLite with `durability=full`: the
sender's and the receiver's brokers fsync before they acknowledge; relays pass forwards on from
memory and acknowledge when the next hop does). Clients reuse benchmarks/broker.py: users,
logins, bodies sealed in advance (client crypto is not measured) and one poll loop for every
socket.

1. throughput and latency: a cloud of `--brokers` (more are added, up to `--max-brokers`,
   until two brokers are `--hops` apart); senders on broker A and receivers on a broker B
   exactly `--hops` from it (a cloud can come out wider), against the same workload
   with senders and receivers both on A, in the same run, rounds interleaved. The receivers log
   in first, and the clock starts only once A's status page lists them at B. A message counts
   when A has stored it (`Accepted`) and its receiver has got it. A run in which nothing new
   arrives for STALL_S ends there, and the messages it never got are reported as lost. The
   brokers' `arrived` counters show which relays carried the traffic and how many hops a
   message really travelled (routes follow measured RTTs, so they move under load); CPU that
   other processes used meanwhile is shown, as this machine may be shared.
2. join convergence for each of `--sizes`: brokers started one after another, each joining
   broker 0 (each start makes its GnuPG key); "ready" is when the last one has written its
   ready.json, "converged" when every broker's /api/status shows all of them alive, each with
   ≥ 3 links and no bridge.
3. repair: `kill -9` of one broker (the one whose loss leaves the most brokers short of links),
   `--kills` times per size; the time from SIGKILL until every survivor's status page shows the
   cloud healthy without it. The brokers' logs tell when the loss was noticed and when the last
   new link came up.

Status pages are refreshed every 0.5 s (SNAPSHOT_S in the broker), so the convergence and
repair times include up to that much lag; the log-based figures do not. A cloud that is slow to
become whole gets a diagnosis: which brokers each one does not see alive, or never heard of.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
from rich.table import Table

from tits.keyclient import KeyClient
from tits.localcloud import _status, graph_of, hop_counts

sys.path.insert(0, str(Path(__file__).parent))
from _cloudfleet import Fleet, bench, console, diagnose, log_events, say, sys_busy  # noqa: E402
from _cloudload import STALL_S, CountingLoad  # noqa: E402

TARGET_RATIO = 0.5  # throughput over --hops (3) hops ≥ 50 % of one broker's
TARGET_REPAIR_S = 3.0
TARGET_CONVERGE_S = 5.0  # 30 brokers
CONVERGE_TIMEOUT = 60.0
REPAIR_TIMEOUT = 45.0
ms = 1000.0


# -- 1. throughput and latency over --hops hops vs one broker ----------------------------------


def _role(i: int, tput: dict[str, Any]) -> str:
    return " (sender)" if i == tput["a"] else " (receiver)" if i == tput["b"] else ""


def _loss(m: dict[str, Any]) -> str:
    if not m["lost"]:
        return ""
    return (
        f" — {m['lost']} of {m['n']} NEVER DELIVERED (no progress for {STALL_S:.0f} s; "
        "the rate counts what arrived, up to the last arrival)"
    )


def bench_throughput(args: argparse.Namespace, root: Path, fleets: list[Fleet]) -> dict[str, Any]:
    fleet = Fleet(root / "tput")
    fleets.append(fleet)
    keyserver = fleet.start_keyd()
    for i in range(args.brokers):
        fleet.start_broker(i)
    while True:
        if fleet.wait_whole(CONVERGE_TIMEOUT) is None:
            raise SystemExit(f"the cloud of {len(fleet.brokers)} did not become whole")
        status = _status(fleet.brokers[0]["http"])
        assert status is not None
        dist = hop_counts(graph_of(status))
        hops = max(d for row in dist.values() for d in row.values())
        if hops >= args.hops or len(fleet.brokers) >= args.max_brokers:
            break
        say(f"cloud of {len(fleet.brokers)} brokers is only {hops} hops across; adding a broker")
        fleet.start_broker(len(fleet.brokers))
    # a pair exactly --hops apart, as the issue asks (a cloud may be wider: then say so)
    diameter = hops
    hops = min(hops, args.hops)
    a, b = min((x, y) for x in dist for y in dist[x] if dist[x][y] == hops)
    idx = {br["id"]: i for i, br in enumerate(fleet.brokers)}
    broker_a, broker_b = fleet.brokers[idx[a]], fleet.brokers[idx[b]]
    pairs = sum(1 for x in dist for y in dist[x] if x < y and dist[x][y] == hops)
    say(
        f"cloud of {len(fleet.brokers)} brokers, {len(status['links'])} links, {diameter} hops "
        f"across; the pair: broker{idx[a]} → broker{idx[b]}, {hops} hops ({pairs} pairs that far)"
    )

    p = args.pairs
    homes = bench.make_users(root / "users", 4 * p)
    client = KeyClient(keyserver)
    for h in homes:
        client.publish_key(h.identity.export_public(h.fingerprint))
        _, cert, sig = h.certificate
        client.publish_device(cert, sig, h.device.prove(cert))
    far_s, far_r, loc_s, loc_r = (homes[k * p : (k + 1) * p] for k in range(4))
    ctx = zmq.Context()
    try:
        # receivers first, so that the senders' broker has heard of them before any send
        conns = {"far_r": [bench.login(h, broker_b["url"], ctx) for h in far_r]}
        conns["loc_r"] = [bench.login(h, broker_a["url"], ctx) for h in loc_r]
        conns["far_s"] = [bench.login(h, broker_a["url"], ctx) for h in far_s]
        conns["loc_s"] = [bench.login(h, broker_a["url"], ctx) for h in loc_s]
        want = {h.fingerprint for h in far_r}
        t0 = time.monotonic()
        while True:
            st = _status(broker_a["http"]) or {}
            there = {u["fingerprint"] for u in st.get("users", []) if u["broker"] == b}
            if want <= there:
                break
            if time.monotonic() - t0 > 30:
                raise SystemExit("the far receivers' presence did not reach the senders' broker")
            time.sleep(0.05)
        say(f"far receivers' presence at the senders' broker after {time.monotonic() - t0:.2f} s")

        kinds = {
            "far": (far_s, far_r, conns["far_s"], conns["far_r"]),
            "one": (loc_s, loc_r, conns["loc_s"], conns["loc_r"]),
        }

        def work(kind: str, n: int) -> list[list[tuple[bytes, bytes, bytes]]]:
            senders, receivers = kinds[kind][0], kinds[kind][1]
            return [bench.prepare(senders[i], receivers[i].fingerprint, n) for i in range(p)]

        def load(kind: str) -> CountingLoad:
            return CountingLoad([c.sock for c in kinds[kind][2]], [c.sock for c in kinds[kind][3]])

        for kind in kinds:  # warm-up: relay devices, routes, SQLite pages
            load(kind).measure(work(kind, 100), args.window, fleet.cpu)

        time.sleep(0.6)  # a fresh status snapshot for the counters below
        counters0 = {
            br["id"]: (_status(br["http"]) or {}).get("counters", {}) for br in fleet.brokers
        }
        per = args.messages // p
        rounds: dict[str, list[dict[str, Any]]] = {"far": [], "one": []}
        per_hop: dict[int, float] = {}  # broker index → CPU seconds in the far rounds
        far_sent = 0
        for r in range(args.rounds):
            for kind in ("far", "one") if r % 2 == 0 else ("one", "far"):
                w = work(kind, per)
                ld = load(kind)
                busy0, ours0, t0 = sys_busy(), fleet.cpu() + bench.self_cpu(), time.monotonic()
                each0 = fleet.cpu_each()
                m = ld.measure(w, args.window, fleet.cpu)
                each1 = fleet.cpu_each()
                ours = fleet.cpu() + bench.self_cpu() - ours0
                if kind == "far":
                    for i, c in each1.items():
                        per_hop[i] = per_hop.get(i, 0.0) + c - each0.get(i, c)
                m["other_cores"] = (sys_busy() - busy0 - ours) / (time.monotonic() - t0)
                m["dups"] = ld.dups
                rounds[kind].append(m)
                far_sent += m["n"] if kind == "far" else 0
                say(
                    f"  round {r + 1} {kind:>3}: {m['rate']:8,.0f} msgs/s ({m['got']} in "
                    f"{m['dt']:.2f} s; brokers' CPU {m['cpu_us']:.0f} µs a message"
                    + (
                        f"; other processes used {m['other_cores']:.1f} cores meanwhile"
                        if m["other_cores"] > 0.15
                        else ""
                    )
                    + ")"
                    + _loss(m)
                )
        lat = {}
        for kind in ("far", "one"):
            ld = load(kind)
            n_rate = int(args.rate * args.seconds) // p
            m = ld.measure(work(kind, n_rate), args.window, fleet.cpu, rate=args.rate, record=True)
            far_sent += m["n"] if kind == "far" else 0
            lat[kind] = {
                "ack_p50": bench.pct(ld.ack_lat, 50),
                "ack_p99": bench.pct(ld.ack_lat, 99),
                "e2e_p50": bench.pct(ld.e2e_lat, 50),
                "e2e_p99": bench.pct(ld.e2e_lat, 99),
                "dups": ld.dups,
                "lost": m["lost"],
            }
            say(
                f"  latency {kind:>3} at {args.rate:,.0f} msgs/s: ack p50 "
                f"{lat[kind]['ack_p50'] * ms:.1f} ms, p99 {lat[kind]['ack_p99'] * ms:.1f} ms; "
                f"delivered p50 {lat[kind]['e2e_p50'] * ms:.1f} ms, p99 "
                f"{lat[kind]['e2e_p99'] * ms:.1f} ms" + _loss(m)
            )
        time.sleep(0.6)
        counters1 = {
            br["id"]: (_status(br["http"]) or {}).get("counters", {}) for br in fleet.brokers
        }
        end = _status(broker_a["http"])
        hops_end = hop_counts(graph_of(end)).get(a, {}).get(b) if end else None
        for conn_list in conns.values():
            for c in conn_list:
                c.close()
    finally:
        ctx.destroy(linger=0)

    arrived = {  # stored at a hop, or passed through it from memory
        bid: sum(counters1[bid].get(k, 0) - counters0[bid].get(k, 0) for k in ("arrived", "passed"))
        for bid in counters1
    }
    relays = sorted(idx[bid] for bid, n in arrived.items() if n > 0 and bid not in (a, b))
    travelled = sum(arrived.values()) / far_sent if far_sent else float("nan")
    med = {k: statistics.median(x["rate"] for x in v) for k, v in rounds.items()}
    hop_limit = len(log_events(fleet, 0, {"forward.hop_limit"}))
    far_rounds_n = max(sum(m["got"] for m in rounds["far"]), 1)
    fleet.stop()
    fleets.remove(fleet)
    return {
        "brokers": len(fleet.brokers),
        "hops": hops,
        "a": idx[a],
        "b": idx[b],
        "rounds": rounds,
        "median": med,
        "ratio": med["far"] / med["one"],
        "lat": lat,
        "relays": relays,
        "travelled": travelled,
        "hops_end": hops_end,
        "hop_limit": hop_limit,
        "cpu_us": {  # the busiest brokers' CPU per far message, in µs
            i: c / far_rounds_n * 1e6 for i, c in sorted(per_hop.items(), key=lambda kv: -kv[1])[:6]
        },
    }


# -- 2 and 3. join convergence and repair -----------------------------------------------------


def pick_victim(fleet: Fleet) -> tuple[int, int, int]:
    """(broker index, its links, neighbours its loss leaves with < 3 links): the live broker
    whose loss needs the most repair, ties to the one with the most links."""
    status = _status(fleet.live()[0]["http"])
    assert status is not None
    graph = graph_of(status)
    idx = {br["id"]: i for i, br in enumerate(fleet.brokers)}

    def cost(bid: str) -> tuple[int, int, str]:
        short = sum(1 for nb in graph[bid] if len(graph[nb]) <= 3)
        return short, len(graph[bid]), bid

    victim = max(graph, key=cost)
    short, links, _ = cost(victim)
    return idx[victim], links, short


def bench_cloud(n: int, kills: int, root: Path, fleets: list[Fleet]) -> dict[str, Any]:
    fleet = Fleet(root / f"cloud{n}")
    fleets.append(fleet)
    fleet.start_keyd()
    t0 = time.monotonic()
    for i in range(n):
        fleet.start_broker(i)
    ready = time.monotonic()
    ready_wall = time.time()
    start_s = statistics.median(
        b - a for a, b in zip([t0, *fleet.ready_at], fleet.ready_at, strict=False)
    )
    say(
        f"{n} brokers: all ready {ready - t0:.1f} s after the first started "
        f"(median start {start_s:.2f} s)"
    )
    done = fleet.wait_whole(CONVERGE_TIMEOUT, slow=20.0)
    converged = None if done is None else done - ready
    events = log_events(fleet, ready_wall - 60, {"peer.up", "peer.down", "cloud.joined"})
    last_link = max((t for t, _, ev, _ in events if ev in ("peer.up", "peer.down")), default=None)
    res: dict[str, Any] = {
        "n": n,
        "ready_s": ready - t0,
        "start_s": start_s,
        "converged_s": converged,
        "last_link_s": None if last_link is None else last_link - ready_wall,
        "repairs": [],
    }
    conv = "NOT within %.0f s" % CONVERGE_TIMEOUT if converged is None else f"{converged:.2f} s"
    say(
        f"  converged {conv} after the last was ready"
        + (f" (last link change in the logs at {res['last_link_s']:+.2f} s)" if last_link else "")
    )
    if converged is None:
        say("    at the time-out:")
        diagnose(fleet)
        fleet.stop()
        fleets.remove(fleet)
        return res
    cpu0, t_idle = fleet.cpu(), time.monotonic()
    time.sleep(2.0)
    res["idle_cores"] = (fleet.cpu() - cpu0) / (time.monotonic() - t_idle)
    say(f"  idle: the {n} brokers use {res['idle_cores']:.2f} cores together")

    for _ in range(kills):
        victim, links, short = pick_victim(fleet)
        vid = fleet.brokers[victim]["id"]
        t_kill = time.monotonic()
        wall = fleet.kill9(victim)
        done = fleet.wait_whole(REPAIR_TIMEOUT, slow=2 * TARGET_REPAIR_S)
        repair = None if done is None else done - t_kill
        ev = log_events(fleet, wall, {"peer.up", "peer.down"})
        noticed = [t - wall for t, _, e, rest in ev if e == "peer.down" and vid[:16] in rest]
        new_links = [t - wall for t, _, e, _ in ev if e == "peer.up"]
        item = {
            "victim": victim,
            "links": links,
            "short": short,
            "repair_s": repair,
            "noticed_s": min(noticed) if noticed else None,
            "all_noticed_s": max(noticed) if noticed else None,
            "new_links": len(new_links) // 2,
            "last_link_s": max(new_links) if new_links else None,
        }
        res["repairs"].append(item)
        rep = f"NOT within {REPAIR_TIMEOUT:.0f} s" if repair is None else f"{repair:.2f} s"
        say(
            f"  kill -9 broker{victim} ({links} links, {short} neighbours left short): healthy "
            f"again after {rep}; logs: first neighbour noticed at "
            f"{_fmt(item['noticed_s'])}, the last at {_fmt(item['all_noticed_s'])}, "
            f"{item['new_links']} new link(s), the last up at {_fmt(item['last_link_s'])}"
        )
        if repair is None:
            say("    at the time-out:")
            diagnose(fleet)
            break
        time.sleep(1.0)  # let the repaired cloud settle before the next kill
    fleet.stop()
    fleets.remove(fleet)
    return res


def _fmt(t: float | None) -> str:
    return "—" if t is None else f"{t:.2f} s"


# -- main -------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def report(
    args: argparse.Namespace, tput: dict[str, Any] | None, clouds: list[dict[str, Any]]
) -> None:
    table = Table(title=f"ω IM cloud benchmark ({os.cpu_count()} cores, fsync at both ends)")
    for col in ("figure", "value", "target", "verdict"):
        table.add_column(col)
    if tput:
        med, lat = tput["median"], tput["lat"]
        for kind, label in (("one", "one broker"), ("far", f"{tput['hops']} hops")):
            runs = ", ".join(f"{x['rate']:,.0f}" for x in tput["rounds"][kind])
            lost = sum(x["lost"] for x in tput["rounds"][kind])
            cpu_us = statistics.median(x["cpu_us"] for x in tput["rounds"][kind])
            table.add_row(
                f"throughput, {label} (median of {len(tput['rounds'][kind])})",
                f"{med[kind]:,.0f} msgs/s  [{runs}]; brokers' CPU {cpu_us:.0f} µs/msg"
                + (f"; {lost} NEVER DELIVERED" if lost else ""), "", "",
            )  # fmt: skip
        ratio = tput["ratio"]
        lost = sum(x["lost"] for k in ("far", "one") for x in tput["rounds"][k])
        lost += sum(x["lost"] for x in lat.values())
        table.add_row("messages accepted but never delivered", f"{lost}", "0", verdict(lost == 0))
        table.add_row(
            f"{tput['hops']}-hop / one broker", f"{ratio:.0%}", f"≥ {TARGET_RATIO:.0%}",
            verdict(ratio >= TARGET_RATIO if tput["hops"] >= 3 else None)
            + ("" if tput["hops"] >= 3 else f" (only {tput['hops']} hops)"),
        )  # fmt: skip
        for kind, label in (("one", "one broker"), ("far", f"{tput['hops']} hops")):
            x = lat[kind]
            table.add_row(
                f"latency at {args.rate:,.0f} msgs/s, {label}",
                f"ack p50 {x['ack_p50'] * ms:.1f} / p99 {x['ack_p99'] * ms:.1f} ms; delivered "
                f"p50 {x['e2e_p50'] * ms:.1f} / p99 {x['e2e_p99'] * ms:.1f} ms"
                + (f"; {x['lost']} NEVER DELIVERED" if x["lost"] else ""), "", "",
            )  # fmt: skip
    for c in clouds:
        n = c["n"]
        table.add_row(f"{n} brokers: all processes ready", f"{c['ready_s']:.1f} s", "", "")
        conv = c["converged_s"]
        target = TARGET_CONVERGE_S if n >= 30 else None
        table.add_row(
            f"{n} brokers: converged after the last was ready",
            "timed out" if conv is None else f"{conv:.2f} s",
            "" if target is None else f"≤ {target:.0f} s",
            "" if target is None else verdict(conv is not None and conv <= target),
        )
        reps = [r["repair_s"] for r in c["repairs"]]
        if reps:
            good = [r for r in reps if r is not None]
            value = (
                f"{statistics.median(good):.2f} s" if len(good) == len(reps) else "timed out"
            ) + f"  [{', '.join(_fmt(r) for r in reps)}]"
            table.add_row(
                f"{n} brokers: repair after kill -9 (median of {len(reps)})",
                value, f"≤ {TARGET_REPAIR_S:.0f} s",
                verdict(len(good) == len(reps) and statistics.median(good) <= TARGET_REPAIR_S),
            )  # fmt: skip
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(
        description="ω IM cloud benchmark: hop throughput/latency, join convergence, repair",
    )
    ap.add_argument("--brokers", type=int, default=12, help="cloud size for the hop test")
    ap.add_argument("--hops", type=int, default=3, help="add brokers until a pair is this far")
    ap.add_argument("--max-brokers", type=int, default=24, help="... but no more than this")
    ap.add_argument("--pairs", type=int, default=4, help="sender → receiver pairs")
    ap.add_argument("--messages", type=int, default=40_000, help="messages per throughput round")
    ap.add_argument("--rounds", type=int, default=5, help="throughput rounds per workload")
    ap.add_argument("--window", type=int, default=500, help="unacknowledged sends per sender")
    ap.add_argument("--rate", type=float, default=1000.0, help="msgs/s for the latency phase")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of the latency phase")
    ap.add_argument("--sizes", default="10,30", help="cloud sizes for convergence and repair")
    ap.add_argument("--kills", type=int, default=2, help="kill -9 rounds per size")
    ap.add_argument("--only", choices=["throughput", "cloud"], help="run just one part")
    ap.add_argument(
        "--quick", action="store_true",
        help="scaled down: 8 brokers, 2 hops, 8,000 messages, 1 round, sizes 6,12, 1 kill",
    )  # fmt: skip
    args = ap.parse_args()
    if args.quick:
        args.brokers, args.messages, args.rounds, args.sizes, args.kills = 8, 8000, 1, "6,12", 1
        args.seconds, args.hops = 2.0, 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    root = Path(tempfile.mkdtemp(prefix="tcb", dir="/tmp"))  # short: GnuPG socket paths
    fleets: list[Fleet] = []
    tput = None
    clouds: list[dict[str, Any]] = []
    t_start = time.monotonic()
    say(
        f"ω IM cloud benchmark on {os.cpu_count()} cores; brokers are Python processes, "
        "the first and last hop store (fsync) before they acknowledge, relays pass on from memory"
    )
    try:
        if args.only != "cloud":
            say(
                f"== 1. throughput and latency: {args.hops} hops apart vs one broker "
                f"({args.brokers}+ brokers)"
            )
            tput = bench_throughput(args, root, fleets)
        if args.only != "throughput":
            for n in sizes:
                say(f"== 2/3. join convergence and repair: {n} brokers")
                clouds.append(bench_cloud(n, args.kills, root, fleets))
        report(args, tput, clouds)
        if tput:
            dups = {
                k: tput["lat"][k]["dups"] + sum(x["dups"] for x in tput["rounds"][k])
                for k in tput["lat"]
            }
            say(
                f"hop test: broker{tput['a']} → broker{tput['b']}; relays that carried the far "
                f"traffic: {', '.join(f'broker{i}' for i in tput['relays']) or 'none'}; "
                f"hops between them in the sender broker's view at the end: {tput['hops_end']}; "
                "hops "
                f"travelled per message (Σ arrived / sent): {tput['travelled']:.2f}; duplicate "
                f"deliveries: far {dups['far']}, one {dups['one']}; forwards dropped at the hop "
                f"limit (forward.hop_limit in the logs): {tput['hop_limit']}; busiest brokers' "
                "CPU per far message: "
                + ", ".join(
                    f"broker{i}{_role(i, tput)} {us:.0f} µs" for i, us in tput["cpu_us"].items()
                )
            )
        say(
            f"targets: {TARGET_RATIO:.0%} of one broker's throughput over 3 hops; repair ≤ "
            f"{TARGET_REPAIR_S:.0f} s; 30 brokers converge ≤ {TARGET_CONVERGE_S:.0f} s (judged on "
            "the time after the last broker is ready: starting 30 processes one by one, each "
            "making a GnuPG key, is not the cloud's convergence)"
        )
        say(f"benchmark took {time.monotonic() - t_start:.0f} s")
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # clean-up below
        say("interrupted; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for fleet in fleets:
            fleet.stop()
        for home in root.glob("users/*/gnupg"):  # the users' gpg-agents
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True, check=False,
            )  # fmt: skip
        if os.environ.get("TITS_BENCH_KEEP"):
            say(f"kept {root} (TITS_BENCH_KEEP)")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
