"""`scripts/run`: a local ω IM cloud on loopback, until Ctrl-C.

Starts the key server (`tits-keyd`) and a cloud of brokers (`titsd`, 4 by default) that join
one another, waits until every broker has ≥ 3 links and the graph has no bridge, makes two demo
users in throwaway homes (Alice 陳 and Bob 林) on two different brokers, publishes their keys and
devices, and has them talk across the cloud: every text signed by the device key, sealed with a
session key that travelled wrapped with GnuPG, stored by each broker before it is acknowledged.
It prints every broker's status page address, then keeps both users online (a line every few
seconds) until Ctrl-C, and cleans up after itself.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tits.i18n import translate_argparse

TALK_EVERY_S = 8.0

SCRIPT = [
    ("alice", "晚安，Bob！明天見 🌙"),
    ("bob", "晚安 Alice～ 明天早上九點，老地方？"),
    ("alice", "好，九點見。記得帶那本《三體》。"),
    ("bob", "Sure — and every line here is signed and encrypted end to end ✓"),
]
TICKS = ["還在線上嗎？", "在！", "ping 🏓", "pong 🏓"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="scripts/run", description="a local ω IM cloud demo")
    ap.add_argument("--once", action="store_true", help="talk once and exit (no Ctrl-C wait)")
    ap.add_argument("--brokers", type=int, default=4, help="how many brokers [4]")
    args = translate_argparse(ap).parse_args(argv)
    if not 1 <= args.brokers <= 32:
        ap.error("--brokers must be between 1 and 32")

    from rich.progress import Progress

    from tits.client.blocking import Message, Messenger

    from .home import Home
    from .keyclient import KeyClient
    from .localcloud import LocalCloud

    console = Console(highlight=False, soft_wrap=True)
    root = Path(tempfile.mkdtemp(prefix="tits-demo-", dir="/tmp"))
    cloud = LocalCloud(root / "cloud", 0)
    people: dict[str, Messenger] = {}
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("啟動 keyd 與伺服器 starting keyd and brokers…",
                                     total=args.brokers + 2)  # fmt: skip
            cloud.start(args.brokers, on_started=lambda: progress.advance(task))
            cloud.wait_whole()
            progress.advance(task)
        table = Table(
            title=f"ω IM 本機雲 local cloud: {args.brokers} brokers, keyd {cloud.keyserver}"
        )
        for col in ("#", "broker id", "狀態頁 status page"):
            table.add_column(col)
        for i, b in enumerate(cloud.brokers):
            table.add_row(str(i), b["id"], f"{b['http']}/")
        console.print(table)
        where = {"alice": cloud.brokers[0], "bob": cloud.brokers[-1]}
        kinfo = {"url": cloud.keyserver}

        kc = KeyClient(kinfo["url"])
        homes: dict[str, Home] = {}
        for who, name in (("alice", "Alice 陳"), ("bob", "Bob 林")):
            h = Home(root / who)
            h.create(name, f"{who}@example.org", f"{who}-demo", broker=where[who]["url"],
                     keyserver=kinfo["url"])  # fmt: skip
            kc.publish_key(h.identity.export_public(h.fingerprint))
            _, cert_bytes, sig = h.certificate
            kc.publish_device(cert_bytes, sig, h.device.prove(cert_bytes))
            homes[who] = h
            console.print(f"  {name}: [bold]{h.fingerprint}[/] @ broker {where[who]['id'][:16]}…")
        people = {who: Messenger(h) for who, h in homes.items()}
        other = {"alice": "bob", "bob": "alice"}

        def show(msg: Message, listener: Messenger) -> None:
            line = Text()
            line.append(time.strftime("%H:%M:%S ", time.localtime(msg.ts / 1000)), style="dim")
            line.append(listener.name_of(msg.sender), style="bold cyan")
            line.append(" ✓" if msg.verified else " ? 未驗證", style="bold green")
            line.append(f" → {listener.name_of(msg.to[0])}: ", style="dim")
            line.append(msg.text or "")
            console.print(line)

        def say(who: str, text: str) -> None:
            to = homes[other[who]].fingerprint
            people[who].send_text([to], text)
            listener = people[other[who]]
            got: list[Message] = []
            listener.receive(got.append, follow=True, timeout=10, until=lambda: bool(got))
            for m in got:
                show(m, listener)

        for who in people:
            people[who].connect()  # both online: they show on the status page
        console.print(Panel("Alice 陳 ⇄ Bob 林, across the cloud", expand=False))
        for who, text in SCRIPT:
            say(who, text)
        if args.once:
            return
        console.print(
            f"[dim]兩位使用者保持上線；狀態頁 {cloud.brokers[0]['http']}/ — 按 Ctrl-C 結束 "
            "(both users stay online; Ctrl-C to stop)[/]"
        )
        i = 0
        while True:
            time.sleep(TALK_EVERY_S)
            who = "alice" if i % 2 == 0 else "bob"
            say(who, TICKS[i % len(TICKS)])
            i += 1
    except KeyboardInterrupt:
        console.print("\n[dim]stopping…[/]")
    finally:
        for m in people.values():
            m.close()
        cloud.stop()
        for d in ("alice", "bob"):
            subprocess.run(["gpgconf", "--homedir", str(root / d / "gnupg"), "--kill", "all"],
                           capture_output=True, check=False, timeout=10)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
