"""Broker throughput and latency: many clients through one `titsd`, durable acknowledgements.

    python benchmarks/broker.py [--pairs 8] [--messages 20000] [--rate 2000] [--seconds 3]

One real broker (a subprocess, CURVE, SQLite WAL with `durability=full`: every group commit is
fsynced before its `Accepted` goes out). `--pairs` senders each talk to their own receiver; all
clients live in this process in one poll loop, with bodies sealed (and envelopes encoded) in
advance, so client crypto is not measured. A message counts when the broker has stored it
(`Accepted`), and the receiver has got it and acknowledged it (`Received`).

1. login: the median time of a real login (challenge, GnuPG sign+encrypt, broker checks).
2. throughput: every sender keeps up to `--window` messages unacknowledged.
3. latency at a fixed rate (`--rate` msgs/s for `--seconds`): send → `Accepted` (durable ack)
   and send → delivered to the receiver, p50/p99.
4. the same workload through a bare pyzmq ROUTER relay (CURVE, no storage, no checks,
   acknowledgements batched per poll round like the broker's), in a subprocess: the ceiling.
5. fanout (`--only fanout`, or `run_fanout()` from other benchmarks): one sender to a group
   of `--members` (10) on one broker, durable acknowledgements, every member acknowledging
   every delivery: deliveries/s, beside the 1:1 msgs/s of the same run (the members in pairs).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import zmq

from tits import wire
from tits.client import Connection
from tits.home import Home
from tits.session import Envelope, SessionKey, direct_conversation_id, seal

TARGETS = "targets: ≥ 36,000 msgs/s durable; p50 ≤ 2 ms, p99 ≤ 10 ms at 2,000 msgs/s; login ≤ 50 ms"


# -- set-up ---------------------------------------------------------------------------------


def start_broker(data: Path) -> tuple[subprocess.Popen[bytes], dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tits.broker.main", "--data", str(data), "--durability", "full"]
        + [f"--{p}-port=0" for p in ("client", "peer", "pub", "http")]
        + ["--log-level", "warning"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            info = json.loads((data / "ready.json").read_text())
            if info["pid"] == proc.pid:
                return proc, info
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("titsd did not start")


def make_users(root: Path, n: int) -> list[Home]:
    homes = []
    for i in range(n):
        h = Home(root / f"u{i}")
        h.create(f"User {i}", f"u{i}@bench.invalid", f"dev{i}")
        homes.append(h)
    return homes


def login(home: Home, url: str, ctx: zmq.Context, batch: bool = False) -> Connection:
    _, cert_bytes, sig = home.certificate
    conn = Connection(
        url, home.identity, home.fingerprint, cert_bytes, sig, context=ctx, batch=batch
    )
    conn.login()
    return conn


def prepare_group(
    sender: Home, members: list[str], count: int, group: bytes
) -> list[tuple[bytes, bytes, bytes]]:
    """(id, encoded Send, sealed body) for `count` group texts from `sender` to `members`."""
    key = SessionKey.generate(group)
    out = []
    text = "群組基準測試 group benchmark message, about a hundred bytes to seal and send".encode()
    for _ in range(count):
        env = Envelope(wire.new_msg_id(), sender.fingerprint, members, group)
        body = seal(key, sender.device, env, text)
        send = wire.Send(id=env.id, sender=sender.fingerprint, to=members, group=group)
        out.append((env.id, wire.encode(send), body))
    return out


def prepare(sender: Home, receiver: str, count: int) -> list[tuple[bytes, bytes, bytes]]:
    """(id, encoded Send, sealed body) for `count` texts from `sender` to `receiver`."""
    key = SessionKey.generate(direct_conversation_id(sender.fingerprint, receiver))
    out = []
    text = "基準測試 benchmark message, about a hundred bytes of text to seal and send ...".encode()
    for _ in range(count):
        env = Envelope(wire.new_msg_id(), sender.fingerprint, [receiver], None)
        body = seal(key, sender.device, env, text)
        send = wire.Send(id=env.id, sender=sender.fingerprint, to=[receiver])
        out.append((env.id, wire.encode(send), body))
    return out


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


# -- the load loop (shared by the broker and the bare relay) --------------------------------


class _DeliverId(msgspec.Struct, tag="deliver", tag_field="k", forbid_unknown_fields=False):
    id: bytes


class _DeliveriesIds(msgspec.Struct, tag="deliveries", tag_field="k", forbid_unknown_fields=False):
    items: list[_DeliverId]


_deliver_id = msgspec.msgpack.Decoder(_DeliverId | _DeliveriesIds)


def login_batching(home: Home, url: str, ctx: zmq.Context) -> zmq.Socket:
    """A client socket logged in with `batch`: it takes `Deliveries` (as the coming client
    library does); `Connection` is not used, so the bench owns the frames."""
    from zmq.utils import z85

    from tits.client import BrokerURL
    from tits.login import build_blob

    broker = BrokerURL.parse(url)
    sock = ctx.socket(zmq.DEALER)
    public, secret = zmq.curve_keypair()
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (
        broker.server_key, public, secret,
    )  # fmt: skip
    sock.linger = 0
    sock.sndhwm = sock.rcvhwm = 100_000
    sock.connect(broker.address)
    sock.send(wire.encode(wire.Hello()))
    ch = wire.SERVER_DECODER.decode(sock.recv_multipart()[0])
    home.identity.import_public(ch.key)
    _, cert, sig = home.certificate
    blob = build_blob(
        home.identity, home.fingerprint, ch.nonce, ch.broker, z85.decode(public), cert, sig
    )
    pubkey = home.identity.export_public(home.fingerprint).encode()
    sock.send(wire.encode(wire.Login(blob=blob, fingerprint=home.fingerprint, pubkey=pubkey,
                                     batch=True)))  # fmt: skip
    while not isinstance(wire.SERVER_DECODER.decode(sock.recv_multipart()[0]), wire.Welcome):
        pass
    return sock


class Load:
    """Senders and receivers on raw sockets; `ack_of` and `deliver_of` parse replies."""

    def __init__(self, senders: list[zmq.Socket], receivers: list[zmq.Socket], proto: str):
        self.senders, self.receivers, self.proto = senders, receivers, proto
        self.poller = zmq.Poller()
        for s in senders + receivers:
            self.poller.register(s, zmq.POLLIN)
        self.is_sender = {s: i for i, s in enumerate(senders)}
        self.sent_at: dict[bytes, float] = {}
        self.ack_lat: list[float] = []
        self.e2e_lat: list[float] = []

    def _acks(self, frames: list[bytes]) -> list[bytes]:
        if self.proto == "relay":
            return [frames[0][i : i + 16] for i in range(0, len(frames[0]), 16)]
        msg = wire.SERVER_DECODER.decode(frames[0])
        if isinstance(msg, wire.Accepted):
            return [msg.id, *msg.ids]
        if isinstance(msg, wire.Error):
            raise SystemExit(f"broker refused: {msg.code} {msg.message}")
        return []

    def _delivered(self, frames: list[bytes]) -> list[bytes]:
        if self.proto == "relay":
            return [frames[0]]
        try:  # only the ids: the receivers count, they do not check (a client would)
            msg = _deliver_id.decode(frames[0])
        except msgspec.ValidationError:
            return []
        return [msg.id] if isinstance(msg, _DeliverId) else [d.id for d in msg.items]

    def _received(self, ids: list[bytes]) -> bytes:
        if self.proto == "relay":
            return b"R" + b"".join(ids[:1])
        return wire.encode(wire.Received(ids=ids))

    def run(
        self,
        work: list[list[tuple[bytes, bytes, bytes]]],
        window: int,
        rate: float | None = None,
        record: bool = False,
        copies: int = 1,
    ) -> tuple[int, float]:
        """Send everything in `work` (per sender), each message delivered `copies` times (to
        that many receivers); returns (messages completed, seconds)."""
        total = sum(len(w) for w in work)
        nxt = [0] * len(work)
        outstanding = [0] * len(work)
        accepted = delivered = 0
        now = time.perf_counter
        start = now()
        interval = 1.0 / rate if rate else 0.0
        due = start
        rr = 0
        while accepted < total or delivered < total * copies:
            if rate:
                t = now()
                while due <= t and rr < total:
                    i = rr % len(work)
                    j = nxt[i]
                    if j < len(work[i]):
                        msg_id, env, body = work[i][j]
                        if record:
                            self.sent_at[msg_id] = now()
                        self.senders[i].send_multipart([env, body])
                        nxt[i] += 1
                    rr += 1
                    due += interval
                # sleep until the next send is due (at least 1 ms: poll counts in ms; a
                # 0 ms poll would spin and steal a core from the broker)
                timeout = max(1, math.ceil((due - now()) * 1000)) if rr < total else 50
            else:
                for i, w in enumerate(work):
                    room = window - outstanding[i]
                    j = nxt[i]
                    if room > 0 and j < len(w):
                        sock = self.senders[i]
                        for _id, env, body in w[j : j + room]:
                            sock.send_multipart([env, body])
                        k = min(room, len(w) - j)
                        nxt[i] += k
                        outstanding[i] += k
                timeout = 50
            events = self.poller.poll(timeout)
            for sock, _ in events:
                who = self.is_sender.get(sock)
                ids: list[bytes] = []
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if who is not None:
                        got = self._acks(frames)
                        accepted += len(got)
                        outstanding[who] -= len(got)
                        if record:
                            t = now()
                            self.ack_lat.extend(t - self.sent_at[g] for g in got)
                    else:
                        ids += self._delivered(frames)
                if ids:
                    delivered += len(ids)
                    if record:
                        t = now()
                        self.e2e_lat.extend(t - self.sent_at[d] for d in ids)
                    for k in range(0, len(ids), wire.RECEIVED_MAX):
                        sock.send(self._received(ids[k : k + wire.RECEIVED_MAX]))
        return total, now() - start


# -- a bare ROUTER relay: the ceiling -------------------------------------------------------


def relay(port_q: mp.Queue, public: bytes, secret: bytes) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.curve_server = True
    s.curve_secretkey = secret
    s.curve_publickey = public
    s.router_mandatory = 1
    s.sndhwm = s.rcvhwm = 50_000
    port_q.put(s.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        s.poll()
        acks: dict[bytes, list[bytes]] = {}
        for _ in range(2048):
            try:
                frames = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) == 3:  # [from, env = target routing id + msg id, body]
                target, msg_id = frames[1][:2], frames[1][2:]
                s.send_multipart([target, msg_id, frames[2]])
                acks.setdefault(frames[0], []).append(msg_id)
            elif frames[1] == b"quit":
                return
        for sender, ids in acks.items():  # acknowledgements batched, as the broker does
            s.send_multipart([sender, b"".join(ids)])


def bench_relay(pairs: int, work_n: int, window: int, rate: float, seconds: float) -> dict:
    public, secret = zmq.curve_keypair()
    q: mp.Queue = mp.Queue()
    p = mp.Process(target=relay, args=(q, public, secret), daemon=True)
    p.start()
    port = q.get(timeout=10)
    ctx = zmq.Context()

    def sock(rid: bytes | None = None) -> zmq.Socket:
        s = ctx.socket(zmq.DEALER)
        if rid:
            s.routing_id = rid
        pub, sec = zmq.curve_keypair()
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = public, pub, sec
        s.linger = 0
        s.sndhwm = s.rcvhwm = 100_000
        s.connect(f"tcp://127.0.0.1:{port}")
        return s

    senders = [sock() for _ in range(pairs)]
    receivers = [sock(b"r%d" % i) for i in range(pairs)]
    for r in receivers:  # make sure every receiver is connected before anything is sent
        r.send(b"hello")
    time.sleep(0.3)
    body = os.urandom(220)

    def work(n: int) -> list[list[tuple[bytes, bytes, bytes]]]:
        return [
            [((mid := os.urandom(16)), b"r%d" % i + mid, body) for _ in range(n)]
            for i in range(pairs)
        ]

    load = Load(senders, receivers, "relay")
    n, dt = load.run(work(work_n // pairs), window)
    lat = Load(senders, receivers, "relay")
    lat.run(work(int(rate * seconds) // pairs), window, rate=rate, record=True)
    senders[0].send(b"quit")
    time.sleep(0.1)
    for s in senders + receivers:
        s.close(linger=0)
    ctx.term()
    p.join(timeout=5)
    if p.is_alive():
        p.kill()
    return {
        "throughput": n / dt,
        "ack_p50": pct(lat.ack_lat, 50),
        "ack_p99": pct(lat.ack_lat, 99),
        "e2e_p50": pct(lat.e2e_lat, 50),
        "e2e_p99": pct(lat.e2e_lat, 99),
    }


# -- group fan-out ---------------------------------------------------------------------------


def run_fanout(
    members: int = 10,
    messages: int = 6_000,
    rounds: int = 3,
    window: int = 500,
    pairs: int = 5,
    batch: bool = True,
) -> dict:
    """One sender to a group of `members` on one broker (fsync on), durable acknowledgements,
    every delivery acknowledged by its member: deliveries/s (median of `rounds`), and the 1:1
    msgs/s of the same broker and run (`pairs` members sending to `pairs` others). `batch`:
    the members log in taking `Deliveries` (many deliveries a message)."""
    root = Path(tempfile.mkdtemp(prefix="tfan", dir="/tmp"))
    proc = None
    homes: list[Home] = []
    try:
        proc, info = start_broker(root / "broker")
        homes = make_users(root, members + 1)
        ctx = zmq.Context()
        conns = [login(h, info["url"], ctx) for h in homes]
        sender, group_homes = homes[0], homes[1:]
        fps = [h.fingerprint for h in group_homes]
        gid = wire.new_group_id()
        socks = [c.sock for c in conns]
        if batch:  # the members take many deliveries a message
            for c in conns[1:]:
                c.close()
            socks[1:] = [login_batching(h, info["url"], ctx) for h in group_homes]
        load = Load([socks[0]], socks[1:], "broker")
        load.run([prepare_group(sender, fps, 200, gid)], window, copies=members)  # warm up
        fan = []  # (deliveries/s, messages, seconds, broker CPU s)
        for _ in range(rounds):
            work = [prepare_group(sender, fps, messages, gid)]
            b0 = proc_cpu(proc.pid)
            n, dt = Load([socks[0]], socks[1:], "broker").run(work, window, copies=members)
            fan.append((n * members / dt, n, dt, proc_cpu(proc.pid) - b0))
        pairs = min(pairs, members // 2)
        one = []
        for _ in range(rounds):
            work = [
                prepare(group_homes[i], fps[pairs + i], messages * members // pairs // 2)
                for i in range(pairs)
            ]
            src = [socks[1 + i] for i in range(pairs)]
            dst = [socks[1 + pairs + i] for i in range(pairs)]
            n, dt = Load(src, dst, "broker").run(work, window)
            one.append(n / dt)
        for c in conns[:1] if batch else conns:
            c.close()
        if batch:
            for sock in socks[1:]:
                sock.close(linger=0)
        ctx.term()
        fan.sort()
        rate, n, dt, cpu = fan[len(fan) // 2]
        return {
            "members": members,
            "deliveries_per_s": rate,
            "rounds": [r[0] for r in fan],
            "messages": n,
            "seconds": dt,
            "broker_cpu_s": cpu,
            "one_to_one_msgs_per_s": statistics.median(one),
            "one_to_one_rounds": sorted(one),
            "pairs": pairs,
            "batch": batch,
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        for h in homes:
            subprocess.run(
                ["gpgconf", "--homedir", str(h.path / "gnupg"), "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
            )
        subprocess.run(
            ["gpgconf", "--homedir", str(root / "broker" / "gnupg"), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def print_fanout(r: dict) -> None:
    print(
        f"group fan-out, one sender to {r['members']} members, durable acks, every delivery "
        f"acknowledged: {r['deliveries_per_s']:,.0f} deliveries/s (median of "
        f"{len(r['rounds'])} rounds: {', '.join(f'{x:,.0f}' for x in sorted(r['rounds']))}; "
        f"{r['messages']} messages in {r['seconds']:.2f} s, broker CPU {r['broker_cpu_s']:.2f} s"
        f" = {r['broker_cpu_s'] * 1e6 / (r['messages'] * r['members']):.1f} µs a delivery)"
        f"; 1:1 in the same run ({r['pairs']} pairs): {r['one_to_one_msgs_per_s']:,.0f} msgs/s"
        + ("; members take batched deliveries" if r.get("batch") else "")
    )
    print(FANOUT_TARGET)


FANOUT_TARGET = "target: fan-out ≥ 100,000 deliveries/s durable (ejabberd MUC ~33,000 in memory)"


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds; the median counts")
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", choices=["throughput", "latency", "fanout"], help="one phase")
    ap.add_argument("--members", type=int, default=10, help="fanout: the group's size")
    ap.add_argument(
        "--batch",
        action="store_true",
        help="1:1: clients take batched deliveries (as tits.client does), not one a message",
    )
    args = ap.parse_args()
    if args.only == "fanout":
        print_fanout(run_fanout(args.members, rounds=args.rounds, window=args.window))
        return

    # a benchmark stopped with SIGTERM (a timeout) still stops its broker and gpg-agents
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="tbench", dir="/tmp"))
    proc = None
    homes: list[Home] = []
    try:
        proc, info = start_broker(root / "broker")
        homes = make_users(root, 2 * args.pairs)
        ctx = zmq.Context()
        conns = []
        login_ms = []
        first_ms = []
        for h in homes:
            c = login(h, info["url"], ctx, batch=args.batch)
            conns.append(c)
            first_ms.append(c.login_ms)
        # the first login of a user imports keys on both sides; measure logins after that
        for c in conns:
            c.login()
            login_ms.append(c.login_ms)
        senders = [c.sock for c in conns[: args.pairs]]
        receivers = [c.sock for c in conns[args.pairs :]]
        per = args.messages // args.pairs
        rate_n = int(args.rate * args.seconds) // args.pairs
        lwork = [
            prepare(homes[i], homes[args.pairs + i].fingerprint, rate_n) for i in range(args.pairs)
        ]
        warm = [
            prepare(homes[i], homes[args.pairs + i].fingerprint, 200) for i in range(args.pairs)
        ]
        Load(senders, receivers, "broker").run(warm, args.window)

        rounds = []  # (msgs/s, n, seconds, broker CPU s, clients CPU s)
        for _ in range(args.rounds if args.only != "latency" else 0):
            work = [
                prepare(homes[i], homes[args.pairs + i].fingerprint, per) for i in range(args.pairs)
            ]
            b0, c0 = proc_cpu(proc.pid), self_cpu()
            n, dt = Load(senders, receivers, "broker").run(work, args.window)
            rounds.append((n / dt, n, dt, proc_cpu(proc.pid) - b0, self_cpu() - c0))
        rounds.sort()
        best = rounds[len(rounds) // 2] if rounds else (float("nan"), 0, 0.0, 0.0, 0.0)
        lat = Load(senders, receivers, "broker")
        if args.only != "throughput":
            lat.run(lwork, args.window, rate=args.rate, record=True)
        for c in conns:
            c.close()
        ctx.term()
        if args.only:
            ceiling = dict.fromkeys(("throughput", "ack_p50", "ack_p99"), float("nan"))
        else:
            ceiling = bench_relay(args.pairs, args.messages, args.window, args.rate, args.seconds)

        ms = 1000.0
        print(f"clients: {args.pairs} senders → {args.pairs} receivers, one broker, fsync on")
        print(
            f"login (median of {len(login_ms)}): {statistics.median(login_ms):.1f} ms; a user's "
            f"first login, which also imports keys on both sides: "
            f"{statistics.median(first_ms):.1f} ms"
        )
        rate, n, dt, cpu_broker, cpu_clients = best
        print(
            f"throughput, durable acks, delivered and acknowledged: {rate:,.0f} msgs/s "
            f"(median of {len(rounds)} rounds: {', '.join(f'{r[0]:,.0f}' for r in rounds)}; "
            f"{n} in {dt:.2f} s; CPU: broker {cpu_broker:.2f} s = "
            f"{cpu_broker * 1e6 / max(n, 1):.1f} µs a message, clients {cpu_clients:.2f} s, "
            f"{os.cpu_count()} cores{'; batched deliveries' if args.batch else ''})"
        )
        print(
            f"latency at {args.rate:,.0f} msgs/s: ack p50 {pct(lat.ack_lat, 50) * ms:.2f} ms, "
            f"p99 {pct(lat.ack_lat, 99) * ms:.2f} ms; delivery p50 "
            f"{pct(lat.e2e_lat, 50) * ms:.2f} ms, p99 {pct(lat.e2e_lat, 99) * ms:.2f} ms"
        )
        print(
            f"bare ROUTER relay (CURVE, no storage) ceiling: {ceiling['throughput']:,.0f} msgs/s; "
            f"ack p50 {ceiling['ack_p50'] * ms:.2f} ms, p99 {ceiling['ack_p99'] * ms:.2f} ms"
        )
        print(TARGETS)
        if not args.only:
            print_fanout(run_fanout(args.members, rounds=args.rounds, window=args.window))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        for h in homes:
            subprocess.run(
                ["gpgconf", "--homedir", str(h.path / "gnupg"), "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
            )
        subprocess.run(
            ["gpgconf", "--homedir", str(root / "broker" / "gnupg"), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
