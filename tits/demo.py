"""`scripts/run`: a local ω IM on loopback, until Ctrl-C.

Starts the key server (`tits-keyd`) and one broker (`titsd`) on random loopback ports, makes
two demo users in throwaway homes (Alice 陳 and Bob 林), publishes their keys and devices, and
has them talk through the broker: every text signed by the device key, sealed with a session
key that travelled wrapped with GnuPG, stored durably by the broker before it is acknowledged.
It prints the broker URL and the status page address, then keeps both users online (a line
every few seconds) until Ctrl-C, and cleans up after itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

READY_TIMEOUT = 30.0
TALK_EVERY_S = 8.0

SCRIPT = [
    ("alice", "晚安，Bob！明天見 🌙"),
    ("bob", "晚安 Alice～ 明天早上九點，老地方？"),
    ("alice", "好，九點見。記得帶那本《三體》。"),
    ("bob", "Sure — and every line here is signed and encrypted end to end ✓"),
]
TICKS = ["還在線上嗎？", "在！", "ping 🏓", "pong 🏓"]


def _start(cmd: list[str], data: Path, log: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = data / "ready.json"
    ready.unlink(missing_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[2]} exited early; see {log}:\n{log.read_text()[-2000:]}")
        try:
            info = json.loads(ready.read_text())
            if info.get("pid") == proc.pid:
                return proc, info
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{cmd[2]} did not start within {READY_TIMEOUT:.0f} s; see {log}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _kill_agent(gnupghome: Path) -> None:
    if gnupghome.exists():
        subprocess.run(
            ["gpgconf", "--homedir", str(gnupghome), "--kill", "all"],
            capture_output=True,
            check=False,
            timeout=10,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="scripts/run", description="a local ω IM demo")
    ap.add_argument("--once", action="store_true", help="talk once and exit (no Ctrl-C wait)")
    args = ap.parse_args(argv)

    from tits.cli.messenger import Message, Messenger

    from .home import Home
    from .keyclient import KeyClient

    console = Console(highlight=False, soft_wrap=True)
    root = Path(tempfile.mkdtemp(prefix="tits-demo-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    people: dict[str, Messenger] = {}
    try:
        py = sys.executable
        keyd, kinfo = _start(
            [py, "-m", "tits.keyd.main", "--port", "0", "--data", str(root / "keyd")],
            root / "keyd",
            root / "keyd.log",
        )
        procs.append(keyd)
        broker, binfo = _start(
            [py, "-m", "tits.broker.main", "--data", str(root / "broker"),
             "--client-port", "0", "--peer-port", "0", "--pub-port", "0", "--http-port", "0",
             "--keyserver", kinfo["url"], "--name", "demo"],
            root / "broker",
            root / "broker.log",
        )  # fmt: skip
        procs.append(broker)
        console.print(f"[bold]ω IM[/] key server  {kinfo['url']}")
        console.print(f"[bold]ω IM[/] broker      {binfo['url']}")
        console.print(f"[bold]ω IM[/] 狀態頁 status page: [bold underline]{binfo['http']}/[/]")

        kc = KeyClient(kinfo["url"])
        homes: dict[str, Home] = {}
        for who, name in (("alice", "Alice 陳"), ("bob", "Bob 林")):
            h = Home(root / who)
            h.create(name, f"{who}@example.org", f"{who}-demo", broker=binfo["url"],
                     keyserver=kinfo["url"])  # fmt: skip
            kc.publish_key(h.identity.export_public(h.fingerprint))
            _, cert_bytes, sig = h.certificate
            kc.publish_device(cert_bytes, sig)
            homes[who] = h
            console.print(f"  {name}: [bold]{h.fingerprint}[/]  (home {h.path})")
        people = {who: Messenger(h) for who, h in homes.items()}
        other = {"alice": "bob", "bob": "alice"}

        def show(msg: Message, listener: Messenger) -> None:
            line = Text()
            line.append(time.strftime("%H:%M:%S ", time.localtime(msg.ts / 1000)), style="dim")
            line.append(msg.sender_name, style="bold cyan")
            line.append(" ✓" if msg.verified else " ? 未驗證", style="bold green")
            line.append(f" → {listener.name_of(msg.to[0])}: ", style="dim")
            line.append(msg.text or "")
            console.print(line)

        def say(who: str, text: str) -> None:
            to = homes[other[who]].fingerprint
            people[who].send_text([to], text)
            listener = people[other[who]]
            conn = listener.connection()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                items = [x for x in conn.poll(0.5) if hasattr(x, "envelope")]
                if items:
                    shown = listener.process(items)  # type: ignore[arg-type]
                    conn.ack([x.envelope.id for x in items])  # type: ignore[union-attr]
                    for m in shown:
                        show(m, listener)
                    if shown:
                        return

        for who in people:
            people[who].connection()  # both online: they show on the status page
        console.print(Panel("Alice 陳 ⇄ Bob 林, through the broker", expand=False))
        for who, text in SCRIPT:
            say(who, text)
        if args.once:
            return
        console.print(
            f"[dim]兩位使用者保持上線；狀態頁 {binfo['http']}/ — 按 Ctrl-C 結束 "
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
        for p in reversed(procs):
            _stop(p)
        for d in ("alice", "bob", "broker"):
            _kill_agent(root / d / "gnupg")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
