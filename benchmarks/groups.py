"""Groups: rekey time, group-message open rate, and group fan-out, in one run.

    python benchmarks/groups.py [--sizes 10,50,500] [--rounds 3] [--open 5000] [--no-e2e]

1. rekey, end to end (10 members): one real broker, ten real clients (`Messenger`, real GnuPG,
   each its own home) in this process; an admin removes or re-invites a member, and the time
   runs until every member's client holds the new epoch's key (so it can read the next text).
2. rekey by size (10, 50, 500 members), without sockets: 500 client processes do not fit
   this machine, so this measures the two parts a rekey costs on the critical path, with the
   client library's own code (`Groups`, `Keyring`): the sender's part (sign the entry, make
   the key, wrap it for every member in ONE gpg process) and one member's part (unwrap,
   verify the new entry, take the key), on a sample member. Members work in parallel on their
   own devices, so sender + member is the time until every member can read the next message
   (the broker's fan-out of one message is a few ms beside it: see 4).
3. open rate: `Inbox.process` over N sealed group texts (AEAD + device signature + every check
   of `open_body` + the store's transaction before the ack), batches of 100, one thread: per
   core. Also `open_body` alone.
4. fan-out: `benchmarks/broker.py`'s `run_fanout`, when it has one (one sender to a group of
   10, durable acks), beside the 1:1 msgs/s of the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from tits import wire
from tits.client import Incoming
from tits.client.blocking import Messenger
from tits.client.devices import DeviceChecker
from tits.client.groups import Groups, require_key
from tits.client.inbox import Inbox
from tits.client.keyring import Keyring
from tits.client.opener import open_body
from tits.client.store import LocalStore
from tits.home import Home
from tits.session import Envelope, seal

TARGETS = "targets (issue 9): 50-member rekey ≤ 1 s, 500-member ≤ 3 s; open ≥ 5,000/s per core"
TEXT = ("群組基準測試 group benchmark text " * 4).encode()[:120]


class Side:
    """One user's client library without sockets: the parts a rekey and an open touch."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.me = home.fingerprint
        self.store = LocalStore(home.path)
        self.keyring = Keyring(self.store, home.identity, self.me)
        _, cert, sig = home.certificate
        card = (cert, sig, home.device.prove(cert))  # what key messages carry
        self.groups = Groups(
            self.store, home.identity, self.me, self.keyring, card,
            require_key(home.identity, None),
        )  # fmt: skip
        self.devices = DeviceChecker(self.store, home.identity, self.me, (cert, sig))

    def inbox(self) -> Inbox:
        return Inbox(
            self.store, self.home.identity, self.me, self.keyring, self.groups, self.devices,
            require_key(self.home.identity, None), lambda _b: "",
        )  # fmt: skip

    def close(self) -> None:
        self.store.close()


def make_home(path: Path, name: str) -> Home:
    h = Home(path)
    h.create(name, f"{name.lower()}@bench.invalid", f"{name.lower()}-dev")
    return h


def batch_keys(gnupghome: Path, n: int) -> tuple[list[str], str]:
    """n member keys (ed25519 + cv25519) made in ONE gpg process; (fingerprints, armored)."""
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    params = "".join(
        "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\n"
        "Subkey-Type: ECDH\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n"
        f"Name-Real: Member {i}\nName-Email: m{i}@bench.invalid\n"
        "Expire-Date: 0\n%no-protection\n%commit\n"
        for i in range(n)
    )
    gpg = ["gpg", "--homedir", str(gnupghome), "--batch", "--quiet"]
    subprocess.run([*gpg, "--gen-key"], input=params.encode(), check=True, timeout=900,
                   capture_output=True)  # fmt: skip
    out = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    fps, prev = [], ""
    for line in out.splitlines():
        f = line.split(":")
        if f[0] == "fpr" and prev == "pub":
            fps.append(f[9])
        prev = f[0] if f[0] != "fpr" else prev
    armored = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True,
                             text=True).stdout  # fmt: skip
    subprocess.run(["gpgconf", "--homedir", str(gnupghome), "--kill", "all"], check=False)
    return fps, armored


def deliveries(frames: list[tuple[bytes, bytes]], to: str) -> list[tuple[wire.Deliver, bytes]]:
    """The frames of a change as `to` would receive them from the broker."""
    out = []
    for env, body in frames:
        s = wire.CLIENT_DECODER.decode(env)
        if to in s.to:
            d = wire.Deliver(id=s.id, sender=s.sender, to=s.to, group=s.group,
                             ts=time.time_ns() // 1_000_000)  # fmt: skip
            out.append((d, body))
    return out


def member_takes(member: Side, frames: list[tuple[bytes, bytes]]) -> None:
    for d, body in deliveries(frames, member.me):
        decoded = wire.BODY_DECODER.decode(body)
        assert isinstance(decoded, wire.GroupBody)
        member.groups.receive(d, decoded, require_key(member.home.identity, None))


def bench_rekey(n: int, root: Path, rounds: int) -> dict[str, float]:
    """The sender's part and one member's part of a rekey in a group of n (no sockets)."""
    sender = Side(make_home(root / f"s{n}", "Sender"))
    member = Side(make_home(root / f"m{n}", "Member"))
    try:
        others, armored = batch_keys(root / f"batch{n}", n - 2)
        sender.home.identity.import_public(armored)
        sender.home.identity.import_public(member.home.identity.export_public(member.me))
        member.home.identity.import_public(sender.home.identity.export_public(sender.me))
        gid = sender.groups.create(f"{n} 人", secure=False)
        everyone = [member.me, *others]
        for i in range(0, len(everyone), 100):  # at most 100 names an entry
            change = sender.groups.change(gid, "invite", everyone[i : i + 100])
            member_takes(member, change.frames)
        state = sender.groups.state(gid)
        assert state is not None and len(state.members) == n
        victim = others[-1]
        sends, takes = [], []
        for r in range(rounds):
            op = "remove" if r % 2 == 0 else "invite"
            t0 = time.perf_counter()
            change = sender.groups.change(gid, op, [victim])  # type: ignore[arg-type]
            t1 = time.perf_counter()
            member_takes(member, change.frames)
            t2 = time.perf_counter()
            now = sender.groups.state(gid)
            assert now is not None
            key = member.keyring.for_sending(gid, sorted(now.members), time.time())
            assert key is not None, "the member cannot read the next message"
            sends.append(t1 - t0)
            takes.append(t2 - t1)
        return {
            "members": float(n),
            "send": statistics.median(sends),
            "take": statistics.median(takes),
            "total": statistics.median(s + t for s, t in zip(sends, takes, strict=True)),
        }
    finally:
        sender.close()
        member.close()
        for h in (sender.home, member.home):
            subprocess.run(["gpgconf", "--homedir", str(h.path / "gnupg"), "--kill", "all"],
                           check=False)  # fmt: skip


def bench_open(root: Path, count: int) -> dict[str, float]:
    sender = Side(make_home(root / "os", "Sender"))
    reader = Side(make_home(root / "or", "Reader"))
    try:
        sender.home.identity.import_public(reader.home.identity.export_public(reader.me))
        reader.home.identity.import_public(sender.home.identity.export_public(sender.me))
        gid = sender.groups.create("讀", secure=False)
        change = sender.groups.change(gid, "invite", [reader.me])
        inbox = reader.inbox()
        batch = inbox.process([Incoming(d, b) for d, b in deliveries(change.frames, reader.me)])
        assert not [e for e in batch.events if type(e).__name__ == "Refused"], batch.events
        state = sender.groups.state(gid)
        assert state is not None
        key = sender.keyring.for_sending(gid, sorted(state.members), time.time())
        assert key is not None
        to = [reader.me]
        texts = []
        ts = time.time_ns() // 1_000_000
        for i in range(count):
            env = Envelope(wire.new_msg_id(), sender.me, to, gid)
            body = seal(key, sender.home.device, env, TEXT, serial=i + 1)
            d = wire.Deliver(id=env.id, sender=sender.me, to=to, group=gid, ts=ts)
            texts.append(Incoming(d, body))
        # open_body alone: every check, no store
        group = reader.groups.state(gid)
        t0, c0 = time.perf_counter(), time.process_time()
        for inc in texts:
            body = wire.BODY_DECODER.decode(inc.body)
            assert isinstance(body, wire.SealedBody)
            open_body(inc.envelope, body, me=reader.me, keys=reader.keyring, group=group,
                      check_device=reader.devices)  # fmt: skip
        bare = (time.perf_counter() - t0, time.process_time() - c0)
        # the inbox: decode, open, record in one transaction per batch, events out
        t0, c0 = time.perf_counter(), time.process_time()
        shown = 0
        for i in range(0, count, 100):
            out = inbox.process(texts[i : i + 100])
            shown += sum(1 for e in out.events if type(e).__name__ == "Shown")
        full = (time.perf_counter() - t0, time.process_time() - c0)
        assert shown == count, f"{shown} of {count} shown"
        return {
            "n": float(count),
            "bare_wall": count / bare[0],
            "bare_cpu": count / bare[1],
            "inbox_wall": count / full[0],
            "inbox_cpu": count / full[1],
        }
    finally:
        sender.close()
        reader.close()
        for h in (sender.home, reader.home):
            subprocess.run(["gpgconf", "--homedir", str(h.path / "gnupg"), "--kill", "all"],
                           check=False)  # fmt: skip


def bench_e2e(root: Path, n: int, rounds: int) -> list[float]:
    """Membership change → every member's client holds the new key, with a real broker."""
    start_broker = broker_bench().start_broker

    homes = [make_home(root / f"e{i}", f"E{i}") for i in range(n)]
    armored = "".join(h.identity.export_public(h.fingerprint) for h in homes)
    for h in homes:
        h.identity.import_public(armored)
    proc, info = start_broker(root / "broker")
    clients: list[Messenger] = []
    try:
        clients = [Messenger(h, broker=info["url"]) for h in homes]
        for m in clients:  # one at a time: the broker's first logins import keys
            m.connect(60)
        admin = clients[0]
        gid = admin.group_create("端到端")
        admin.group_change(gid, "invite", [h.fingerprint for h in homes[1:]])
        stop = threading.Event()

        def pump(m: Messenger) -> None:
            while not stop.is_set():
                m.receive(lambda _m: None, timeout=0.5)

        threads = [threading.Thread(target=pump, args=(m,), daemon=True) for m in clients[1:]]
        for t in threads:
            t.start()
        wait_until(lambda: all(m.client.groups.state(gid) is not None for m in clients), 120)
        victim = homes[-1].fingerprint
        times = []
        for r in range(rounds):
            op = "remove" if r % 2 == 0 else "invite"
            t0 = time.perf_counter()
            admin.group_change(gid, op, [victim])
            state = admin.client.groups.state(gid)
            assert state is not None
            members = sorted(state.members)
            readers = [m for m in clients if m.me in members and m is not admin]
            wait_until(lambda: all(can_read(m, gid, members) for m in readers), 120)  # noqa: B023
            times.append(time.perf_counter() - t0)
        stop.set()
        for t in threads:
            t.join(10)
        return times
    finally:
        for m in clients:
            m.close()
        proc.terminate()
        proc.wait(15)
        for h in homes:
            subprocess.run(["gpgconf", "--homedir", str(h.path / "gnupg"), "--kill", "all"],
                           check=False)  # fmt: skip


def can_read(m: Messenger, gid: bytes, members: list[str]) -> bool:
    """This member's client holds a key for the group as it now is."""
    return m.client.keyring.for_sending(gid, members, time.time()) is not None


def wait_until(pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.005)


def broker_bench() -> ModuleType:
    """benchmarks/broker.py, by path (`import broker` may find the repository's broker/)."""
    path = Path(__file__).resolve().parent / "broker.py"
    spec = importlib.util.spec_from_file_location("bench_broker", path)
    assert spec is not None and spec.loader is not None
    if "bench_broker" in sys.modules:
        return sys.modules["bench_broker"]
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_broker"] = module  # msgspec resolves its Structs' annotations there
    spec.loader.exec_module(module)
    return module


def fanout() -> str:
    run = getattr(broker_bench(), "run_fanout", None)
    if run is None:
        return "fan-out: benchmarks/broker.py has no run_fanout yet (branch broker-core adds it)"
    r = run()
    return (
        f"group fan-out, one broker, fsync on, one sender to {r['members']} members, durable "
        f"acks: {r['deliveries_per_s']:,.0f} deliveries/s (median of "
        f"{', '.join(f'{x:,.0f}' for x in r['rounds'])}); 1:1 in the same run: "
        f"{r['one_to_one_msgs_per_s']:,.0f} msgs/s ({r['pairs']} pairs) "
        f"[benchmarks/broker.py run_fanout]"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,50,500")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--open", type=int, default=5000, help="group texts to open")
    ap.add_argument("--no-e2e", action="store_true", help="skip the 10-client rekey")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tgb", dir="/tmp"))
    try:
        if not args.no_e2e:
            e2e = bench_e2e(root / "e2e", 10, args.rounds)
            print(
                f"rekey end to end, 10 members, one broker, 10 real clients: median "
                f"{statistics.median(e2e) * 1000:.0f} ms (change → every member holds the new "
                f"key; rounds {', '.join(f'{t * 1000:.0f}' for t in e2e)} ms)"
            )
        print(
            "rekey by size, no sockets (sender: sign, make the key, wrap for all in one gpg; "
            "member: unwrap, verify, take; a sample member, members run in parallel):"
        )
        for n in (int(x) for x in args.sizes.split(",")):
            r = bench_rekey(n, root / f"r{n}", args.rounds)
            print(
                f"  {n:4d} members: {r['total'] * 1000:7.0f} ms  (sender {r['send'] * 1000:.0f} ms"
                f" + member {r['take'] * 1000:.0f} ms; median of {args.rounds})"
            )
        o = bench_open(root / "open", args.open)
        print(
            f"group message open, one thread: Inbox.process (open + store + events) "
            f"{o['inbox_wall']:,.0f}/s wall, {o['inbox_cpu']:,.0f}/s per CPU-second; "
            f"open_body alone {o['bare_wall']:,.0f}/s wall, {o['bare_cpu']:,.0f}/s per CPU-second"
            f" ({int(o['n'])} texts)"
        )
        print(fanout())
        print(TARGETS)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
