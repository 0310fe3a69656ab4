"""Per-message crypto: seal+sign and open+verify of 200-byte texts, against one GnuPG call per
message (the naive way). Prints medians of several rounds, measured in this one run."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tits import wire
from tits.device import CertificateCache
from tits.home import Home
from tits.session import Envelope, SessionKey, open_sealed, seal

TEXT = ("ω IM 測試訊息 " * 20).encode()[:200]
ROUNDS, N, N_GPG = 5, 2000, 40


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def median_rate(fn, n: int) -> float:
    return statistics.median(rate(fn, n) for _ in range(ROUNDS))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        alice, bob = Home(Path(tmp, "a")), Home(Path(tmp, "b"))
        fa, _ = alice.create("Alice", "a@example.org", "a")
        fb, _ = bob.create("Bob", "b@example.org", "b")
        bob.identity.import_public(alice.identity.export_public(fa))
        certs = CertificateCache(bob.identity)
        _, data, sig = alice.certificate
        certs.add(data, sig)
        key = SessionKey.generate(b"c" * 16)
        env = Envelope(wire.new_msg_id(), fa, [fb], None)
        body = seal(key, alice.device, env, TEXT)

        seal_rate = median_rate(lambda: seal(key, alice.device, env, TEXT), N)
        open_rate = median_rate(
            lambda: open_sealed(wire.BODY_DECODER.decode(body), key, env, certs), N
        )
        gsig = alice.identity.sign_detached(TEXT, fa)
        gpg_sign = median_rate(lambda: alice.identity.sign_detached(TEXT, fa), N_GPG)
        gpg_verify = median_rate(lambda: bob.identity.verify_detached(TEXT, gsig, fa), N_GPG)
        for h in (alice, bob):
            subprocess.run(["gpgconf", "--homedir", str(h.path / "gnupg"), "--kill", "all"])

    table = Table(title=f"200-byte texts, one core, median of {ROUNDS} rounds")
    for col in ("operation", "per second", "µs each", "GnuPG per message /s", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("seal + sign", f"{seal_rate:,.0f}", f"{1e6 / seal_rate:.1f}",
                  f"{gpg_sign:,.0f}", f"{seal_rate / gpg_sign:,.0f}×")  # fmt: skip
    table.add_row("open + verify", f"{open_rate:,.0f}", f"{1e6 / open_rate:.1f}",
                  f"{gpg_verify:,.0f}", f"{open_rate / gpg_verify:,.0f}×")  # fmt: skip
    Console().print(table)
    ratio = min(seal_rate / gpg_sign, open_rate / gpg_verify)
    print(
        f"targets: seal >= 10,000/s {'MET' if seal_rate >= 10_000 else 'MISSED'}; "
        f"open >= 5,000/s {'MET' if open_rate >= 5_000 else 'MISSED'}; "
        f">= 50x GnuPG {'MET' if ratio >= 50 else 'MISSED'} ({ratio:.0f}x)"
    )


if __name__ == "__main__":
    main()
