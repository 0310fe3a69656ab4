"""Linking a device, and moving its history, across two brokers (issue 12).

    python benchmarks/devices.py [--messages 10000,100000] [--rounds 3]

A real cloud on loopback (keyd and two `titsd`, `tits.localcloud`); Alice's home holds one
chat with N stored messages (the store filled directly). The linking device waits at broker
0, the new device joins at broker 1 (the code's broker rewritten: the cloud routes between
them), both ends in this process, each in its own thread, with the real client code
(`tits.client.linking`: throwaway rendezvous identities, logins, gpg, keyd).

    link        `join` called → the new home written and its certificate at keyd,
                `--history none` (two rendezvous keys made and logged in, the identity
                exported, imported and checked, the certificate signed and published)
    history N   the same with `--history all` and N messages: archive made, chunked,
                sealed, relayed broker 0 → broker 1, checked and installed
    memory      this process's peak resident set after each size (both ends run here):
                it should grow with the chunk size and the broker's window, not with N

Targets: link ≤ 3 s; 10,000 messages ≤ 5 s; memory bounded by the chunk size.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tits import pairing as P  # noqa: E402
from tits import wire  # noqa: E402
from tits.client import linking  # noqa: E402
from tits.client.model import Message  # noqa: E402
from tits.client.store import LocalStore  # noqa: E402
from tits.home import Home  # noqa: E402
from tits.keyclient import KeyClient  # noqa: E402
from tits.localcloud import LocalCloud  # noqa: E402
from tits.log import configure  # noqa: E402
from tits.session import direct_conversation_id  # noqa: E402

BOB = "B" * 40


def fill(home: Home, n: int) -> None:
    store = LocalStore(home.path)
    me = home.fingerprint
    conv = direct_conversation_id(me, BOB)
    t0 = int(time.time() * 1000) - n
    for start in range(0, n, 5000):
        batch = [
            Message(
                id=wire.new_msg_id(),
                conv=conv,
                sender=me if i % 2 else BOB,
                to=[BOB if i % 2 else me],
                group=None,
                kind="text",
                text=f"第 {i} 則訊息：今天天氣很好，我們去淡水看夕陽吧。",
                verified=True,
                ts=t0 + i,
                read=True,
            )  # fmt: skip
            for i in range(start, min(n, start + 5000))
        ]
        store.record(batch)
    store.close()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_link(alice: Home, new: Path, join_broker: str, history: str) -> tuple[float, int]:
    """(seconds from join to a written home, messages brought)."""
    codes: list[P.Code] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    def on_code(code: P.Code) -> None:
        codes.append(code)
        ready.set()

    def run_link() -> None:
        try:
            linking.link(alice, lambda sas: True, on_code, ttl_s=120)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)
            ready.set()

    t = threading.Thread(target=run_link)
    t.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    code = codes[0]
    code.broker = join_broker  # the new device logs in at the other broker
    t0 = time.perf_counter()
    done = linking.join(Home(new), code.text(), lambda sas: True, "bench", history=history)
    took = time.perf_counter() - t0
    t.join(60)
    if failure:
        raise failure[0]
    return took, done.messages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(x) for x in args.messages.split(",") if x]
    configure("warning")
    root = Path(tempfile.mkdtemp(prefix="tits-bench-devices-"))
    cloud = LocalCloud(root / "cloud", 0)
    try:
        cloud.start(2)
        cloud.wait_whole()
        b0, b1 = (str(b["url"]) for b in cloud.brokers)
        alice = Home(root / "alice")
        alice.create("Alice", "alice@example.org", "alice-pc", broker=b0,
                     keyserver=cloud.keyserver)  # fmt: skip
        kc = KeyClient(cloud.keyserver)
        kc.publish_key(alice.identity.export_public(alice.fingerprint))
        _, cert, sig = alice.certificate
        kc.publish_device(cert, sig, alice.device.prove(cert))

        links = []
        for r in range(args.rounds):
            took, _ = one_link(alice, root / f"link{r}", b1, "none")
            links.append(took)
        print(f"link (history none), {args.rounds} rounds: median {statistics.median(links):.2f} s"
              f"  min {min(links):.2f} s  max {max(links):.2f} s   target ≤ 3 s")  # fmt: skip
        stored = 0
        for n in sizes:
            fill(alice, n - stored)
            stored = n
            size = (alice.path / "store.db").stat().st_size
            took, got = one_link(alice, root / f"hist{n}", b1, "all")
            assert got == n, (got, n)
            print(f"history {n:>7,} messages ({size / 1e6:.1f} MB store): {took:.2f} s"
                  f"  ({n / took:,.0f} msgs/s)   peak RSS {peak_mb():.0f} MB"
                  + ("   target ≤ 5 s" if n == 10_000 else ""))  # fmt: skip
    finally:
        cloud.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
