"""tits-keyd: HKP lookups per second with 10,000 keys stored, and the time to accept a key
carrying 500 third-party certifications (the 2019 flooding attack); then lookup latency
while one client floods `/pks/add` with malformed uploads (issue 15, hole 5): with the
default per-client budget (most are answered 429), and with the budget lifted so every
upload is read and parsed (small malformed multipart and non-UTF-8 forms; 1 MiB armor whose
checksum fails only after the whole body is dearmored, just under the 1 MiB cap).

Setup: one real ed25519 key is made with gpg and accepted through keyd's own validation; the
10,000 stored keys are that key's row copied under random fingerprints and e-mail addresses,
inserted straight into the SQLite store (generating 10,000 real keys would take minutes and
measure gpg, not keyd). The server then runs as its own process, pinned to one core where the
machine has two; the load generator (keep-alive HTTP/1.1 over asyncio streams) runs on another.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tits.keyclient import KeyClient
from tits.keyd import openpgp
from tits.keyd.store import Store
from tits.keyd.validate import KeyValidator, UserId

N_KEYS = 10_000
CONNECTIONS = 32
DURATION = 5.0
CERTIFIERS = 500
TARGET = 2_000
FLOOD_DURATION = 5.0
UNLIMITED = ["--upload-burst", "1000000", "--upload-rate", "100000"]


def gpg(home: Path, *args: str, input: bytes | None = None) -> bytes:
    r = subprocess.run(["gpg", "--homedir", str(home), "--batch", *args], input=input,
                       capture_output=True, timeout=300, check=True)  # fmt: skip
    return r.stdout


def fingerprints(home: Path) -> list[str]:
    out = gpg(home, "--with-colons", "--list-keys").decode().splitlines()
    fps, want = [], False
    for line in out:
        f = line.split(":")
        if f[0] == "pub":
            want = True
        elif f[0] == "fpr" and want:
            fps.append(f[9])
            want = False
    return fps


def make_flooded(home: Path) -> tuple[str, bytes]:
    params = "".join(
        "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign,cert\n"
        f"Name-Real: Flooder {i}\nName-Email: f{i}@flood.example\nExpire-Date: 0\n"
        "%no-protection\n%commit\n"
        for i in range(CERTIFIERS)
    )
    gpg(home, "--gen-key", input=params.encode())
    gpg(home, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key",
        "Victim <victim@example.org>", "future-default", "default", "never")  # fmt: skip
    victim = fingerprints(home)[-1]
    users = [a for fp in fingerprints(home)[:-1] for a in ("-u", fp)]
    gpg(home, "--yes", *users, "--quick-sign-key", victim)
    return victim, gpg(home, "--armor", "--export", victim)


async def seed(data: Path, armored: bytes) -> list[str]:
    """Validate one real key the way keyd does, then store N_KEYS copies of its row."""
    (block,) = openpgp.parse_armored_keys(armored.decode())
    valid = await KeyValidator(data / "tmp").validate(block, None)
    store = Store(data / "keys.sqlite")
    rng = random.Random(7)
    fps = []
    store.db.execute("BEGIN")
    for i in range(N_KEYS):
        fp = "%040X" % rng.getrandbits(160)
        uid = UserId(f"Bench User {i} <user{i}@bench.example>", f"user{i}@bench.example",
                     valid.created, None, False)  # fmt: skip
        row = replace(valid, fingerprint=fp, keyids=(fp[-16:],), uids=(uid,))
        store.db.execute(
            "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fp, row.armored, row.binary, row.algo, row.bits, row.created, row.expires, 0,
             f"uid:{openpgp.mr_escape(uid.uid)}:{row.created}::\n", row.vindex, "bench", 0),
        )  # fmt: skip
        store.db.execute("INSERT INTO keyids VALUES (?, ?)", (fp[-16:], fp))
        store.db.execute("INSERT INTO uids VALUES (?, ?, ?, ?)",
                         (fp, uid.uid, uid.email, uid.uid.casefold()))  # fmt: skip
        fps.append(fp)
    store.db.execute("COMMIT")
    store.put_key(valid, "bench")
    assert store.key_count() == N_KEYS + 1
    store.close()
    return fps


def start_server(data: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    (data / "ready.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tits.keyd.main", "--port", "0", "--data", str(data),
           "--log-level", "error", *extra]  # fmt: skip
    if (
        hasattr(os, "sched_setaffinity")
        and len(os.sched_getaffinity(0)) >= 2
        and shutil.which("taskset")
    ):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return proc, json.loads((data / "ready.json").read_text())["port"]
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("tits-keyd did not start")


async def load(port: int, fps: list[str], duration: float) -> tuple[int, list[float], int]:
    """Keep-alive GETs of op=get by fingerprint from CONNECTIONS connections for `duration`."""
    done = 0
    errors = 0
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    async def worker(seed: int) -> None:
        nonlocal done, errors
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                fp = fps[rng.randrange(len(fps))]
                t0 = time.perf_counter()
                writer.write(
                    f"GET /pks/lookup?op=get&options=mr&search=0x{fp} HTTP/1.1\r\n"
                    f"Host: 127.0.0.1\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200") or b"PUBLIC KEY BLOCK" not in body:
                    errors += 1
                done += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(CONNECTIONS)))
    return done, latencies, errors


def malformed_bodies() -> list[tuple[bytes, str]]:
    """(body, content type): what hole 5 sent, small and 1 MiB."""
    big = openpgp.armor(random.Random(5).randbytes(680 * 1024)).splitlines()  # 1.0 MB as a form
    crc = max(i for i, line in enumerate(big) if line.startswith("="))
    big[crc] = "=AAAA"  # the checksum fails, but only once every byte is dearmored
    form = "application/x-www-form-urlencoded"
    return [
        (b'--XX\r\nContent-Disposition: form-data; name="keytext"\r\n\r\nabc\r\n--YY--',
         "multipart/form-data; boundary=XX"),
        (b"keytext=\xff\xfe\xfd", form),
        (b"keytext=" + urllib.parse.quote("\n".join(big) + "\n").encode(), form),
    ]  # fmt: skip


async def flood(port: int, bodies: list[tuple[bytes, str]], stop_at: float) -> Counter[str]:
    """One client posting `bodies` in turn as fast as it is answered; statuses counted."""
    statuses: Counter[str] = Counter()
    i = 0
    while time.perf_counter() < stop_at:
        body, ctype = bodies[i % len(bodies)]
        i += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST /pks/add HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            head = await reader.readline()
            statuses[head.split(b" ")[1].decode() if head.count(b" ") >= 2 else "?"] += 1
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            statuses["reset"] += 1
    return statuses


async def lookups_under_flood(
    port: int, fps: list[str], bodies: list[tuple[bytes, str]] | None
) -> tuple[list[float], int, Counter[str]]:
    stop_at = time.perf_counter() + FLOOD_DURATION
    flooding = flood(port, bodies, stop_at) if bodies else asyncio.sleep(0, Counter[str]())
    (_, lat, errors), statuses = await asyncio.gather(load(port, fps, FLOOD_DURATION), flooding)
    return sorted(lat), errors, statuses


def post(url: str, armored: bytes) -> tuple[float, dict[str, object]]:
    kc = KeyClient(url, timeout=60)
    t0 = time.perf_counter()
    result = kc.publish_key(armored.decode())
    return time.perf_counter() - t0, result


def main() -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[1]})
    root = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp"))
    homes = [root / "g1", root / "g2"]
    for h in homes:
        h.mkdir(mode=0o700)
    proc = None
    try:
        gpg(homes[0], "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key",
            "Bench Real <real@bench.example>", "future-default", "default", "never")  # fmt: skip
        real = gpg(homes[0], "--armor", "--export")
        t0 = time.perf_counter()
        fps = asyncio.run(seed(root / "data", real))
        seed_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        victim, flooded = make_flooded(homes[1])
        flood_setup = time.perf_counter() - t0

        proc, port = start_server(root / "data")
        url = f"http://127.0.0.1:{port}"
        asyncio.run(load(port, fps, 1.0))  # warm-up
        rounds = [asyncio.run(load(port, fps, DURATION)) for _ in range(3)]
        rates = [done / DURATION for done, _, _ in rounds]
        lat = sorted(x for _, lats, _ in rounds for x in lats)
        errors = sum(e for _, _, e in rounds)

        t_flood, r_flood = post(url, flooded)
        t_again, r_again = post(url, flooded)
        t_plain, r_plain = post(url, real)

        # lookups with and without a flood of malformed uploads, in the same run
        bad = malformed_bodies()
        floods = [("no flood (default budget)", None),
                  ("malformed flood, default budget", bad)]  # fmt: skip
        flood_rows = [(what, asyncio.run(lookups_under_flood(port, fps, b))) for what, b in floods]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc, port = start_server(root / "data", *UNLIMITED)
        asyncio.run(load(port, fps, 1.0))  # warm-up
        floods = [("no flood (budget lifted)", None),
                  ("small malformed (multipart, non-UTF-8), budget lifted", bad[:2]),
                  ("1 MB armor, bad checksum, budget lifted", bad[2:])]  # fmt: skip
        flood_rows += [(what, asyncio.run(lookups_under_flood(port, fps, b))) for what, b in floods]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        for h in homes:
            subprocess.run(["gpgconf", "--homedir", str(h), "--kill", "all"], check=False,
                           capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)

    rate = statistics.median(rates)
    console = Console()
    console.print(
        f"setup: {N_KEYS:,} synthetic rows (one real key's row under random fingerprints) "
        f"inserted directly into the store in {seed_s:.1f} s; flooded key ({CERTIFIERS} "
        f"certifications, {len(flooded):,} bytes armored) made by gpg in {flood_setup:.1f} s"
    )
    table = Table(title=f"tits-keyd, server pinned to one core, {CONNECTIONS} keep-alive clients")
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_row("op=get by fingerprint, lookups/s (median of 3×5 s)", f"{rate:,.0f}")
    table.add_row("  rounds", ", ".join(f"{r:,.0f}" for r in rates))
    table.add_row("  latency p50 / p99", f"{lat[len(lat) // 2] * 1e3:.2f} / "
                  f"{lat[int(len(lat) * 0.99)] * 1e3:.2f} ms")  # fmt: skip
    table.add_row("  failed lookups", str(errors))
    table.add_row(f"accept flooded key ({r_flood['status']}, {r_flood['stripped']} stripped)",
                  f"{t_flood * 1e3:.0f} ms")  # fmt: skip
    table.add_row(f"re-upload flooded key ({r_again['status']})", f"{t_again * 1e3:.0f} ms")
    table.add_row(f"accept plain key ({r_plain['status']})", f"{t_plain * 1e3:.0f} ms")
    console.print(table)
    ft = Table(
        title=f"op=get latency while one client floods /pks/add ({FLOOD_DURATION:.0f} s each)"
    )
    for col in ("flood", "lookups p50 / p99", "lookups/s", "failed", "uploads answered"):
        ft.add_column(col, justify="left" if col in ("flood", "uploads answered") else "right")
    for what, (lat, errs, statuses) in flood_rows:
        ft.add_row(
            what,
            f"{lat[len(lat) // 2] * 1e3:.2f} / {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms",
            f"{len(lat) / FLOOD_DURATION:,.0f}",
            str(errs),
            ", ".join(f"{n} × {s}" for s, n in sorted(statuses.items())) or "-",
        )
    console.print(ft)
    print(
        f"target: >= {TARGET:,} lookups/s on one core {'MET' if rate >= TARGET else 'MISSED'} "
        f"({rate:,.0f}/s); flooded key accepted in {t_flood * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
