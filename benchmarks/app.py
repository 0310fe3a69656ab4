"""The full-screen app: how fast it draws a big home (headless Textual, the real app code).

    start → chat list drawn   50 chats, 100,000 stored messages (the store filled directly)
    open a chat               10,000 messages in it (its last page is drawn)
    scroll back               PageUp through 2,000 messages (older pages loaded at the top)
    keystroke → input         while 200 messages a second arrive in another chat (the key
                              event posted as the terminal driver posts it, until the input
                              holds it; drawing follows on the next refresh, ≤ 1/60 s)
    memory                    resident set, peak

Targets (issue 11): list ≤ 1 s, open ≤ 150 ms, a keystroke ≤ 16 ms, ≤ 150 MB.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events  # noqa: E402

from tits.app.app import TitsApp  # noqa: E402
from tits.app.data import PAGE  # noqa: E402
from tits.app.screens import ConversationScreen  # noqa: E402
from tits.client.model import Message, Shown  # noqa: E402
from tits.client.store import LocalStore  # noqa: E402
from tits.config import write_toml  # noqa: E402
from tits.session import direct_conversation_id  # noqa: E402

ME = "A" * 40
CHATS = 50
TOTAL = 100_000
BIG = 10_000


def peer(i: int) -> str:
    return f"{i:040X}"


def fill(home: Path) -> bytes:
    """50 direct chats; chat 0 holds 10,000 messages, the other 90,000 are spread evenly."""
    home.mkdir(parents=True)
    write_toml(home / "config.toml", {"fingerprint": ME, "name": "我"})
    (home / "contacts.toml").write_text(
        "".join(f'"友{i:02d}" = "{peer(i)}"\n' for i in range(CHATS)), encoding="utf-8"
    )
    store = LocalStore(home)
    store.db.execute("PRAGMA synchronous=OFF")
    t0 = int(time.time() * 1000) - TOTAL * 1000
    batch: list[Message] = []
    n = 0
    for i in range(TOTAL):
        chat = 0 if i < BIG else 1 + (i % (CHATS - 1))
        fp = peer(chat)
        mine = i % 3 == 0
        batch.append(
            Message(
                id=i.to_bytes(16, "big"), conv=direct_conversation_id(ME, fp),
                sender=ME if mine else fp, to=[fp] if mine else [ME], group=None, kind="text",
                text=f"第 {i} 則訊息 message {i} 🍵", verified=True, ts=t0 + i * 1000,
                outgoing=mine, read=i < TOTAL - 500,
            )
        )  # fmt: skip
        if len(batch) == 5000:
            store.record(batch)
            n += len(batch)
            batch = []
    store.record(batch)
    store.close()
    return direct_conversation_id(ME, peer(0))


async def wait(pilot: object, pred: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.001)


async def measure(home: Path, big: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    app = TitsApp(home, offline=True, tz=UTC)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.ready.wait()
        await pilot.pause()  # one frame drawn with the list
        out["list_s"] = time.perf_counter() - t0
        rows = app.main.rows
        assert len(rows) == CHATS, len(rows)
        app.main.chat_list.highlighted = [r.chat.conv for r in rows].index(big)
        await pilot.pause()
        chat = rows[[r.chat.conv for r in rows].index(big)].chat
        t1 = time.perf_counter()
        await app.open_chat(chat)  # what Enter on the row runs: the screen, the page, drawn
        screen = app.screen
        assert isinstance(screen, ConversationScreen)
        await pilot._wait_for_screen()
        out["open_s"] = time.perf_counter() - t1
        out["open_drawn"] = len(screen.shown)
        await pilot.pause()
        view = screen.view
        pages: list[float] = []
        loads: list[float] = []
        while len(screen.shown) < 2000:
            n = len(screen.shown)
            t2 = time.perf_counter()
            await screen.action_page(-1)
            await pilot._wait_for_screen()
            (loads if len(screen.shown) > n else pages).append(time.perf_counter() - t2)
        out["page_ms"] = statistics.median(pages) * 1000
        out["load_ms"] = statistics.median(loads) * 1000
        out["scroll_loaded"] = len(screen.shown)
        out["scroll_pages"] = len(pages) + len(loads)
        assert view.scroll_y >= 0

        # keystrokes while 200 messages a second arrive in another chat (through the same
        # path as the client's Shown events: the store, then the app's handler)
        other = direct_conversation_id(ME, peer(1))
        stop = asyncio.Event()

        async def arrive() -> None:
            k = 0
            while not stop.is_set():
                now = int(time.time() * 1000)
                ms = [Message(id=(10**9 + k + j).to_bytes(16, "big"), conv=other,
                              sender=peer(1), to=[ME], group=None, kind="text",
                              text=f"湧入 {k + j}", verified=True, ts=now, read=False)
                      for j in range(20)]  # fmt: skip
                k += 20
                await app.backend.work(app.backend.store.record, ms)
                for m in ms:
                    await app._handle(Shown(message=m))
                await asyncio.sleep(0.1)  # 20 per 100 ms

        flood = asyncio.create_task(arrive())
        line = screen.query_one("#line")
        lat: list[float] = []
        driver = app._driver
        assert driver is not None
        await asyncio.sleep(1.0)  # the flood running
        for ch in "abcdefghijklmnopqrstuvwxyz" * 2:
            before = line.value  # type: ignore[attr-defined]
            k0 = time.perf_counter()
            driver.send_message(events.Key(ch, ch))  # as the terminal driver does
            while line.value == before:  # type: ignore[attr-defined]
                await asyncio.sleep(0)
            lat.append(time.perf_counter() - k0)
            await asyncio.sleep(0.05)  # a typist, not a paste
        stop.set()
        await flood
        out["key_median_ms"] = statistics.median(lat) * 1000
        out["key_p95_ms"] = sorted(lat)[int(len(lat) * 0.95) - 1] * 1000
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    os.environ.setdefault("TITS_LANG", "zh_TW.UTF-8")
    root = Path(tempfile.mkdtemp(prefix="bench-app-"))
    try:
        t = time.perf_counter()
        big = fill(root / "home")
        print(f"filled {TOTAL:,} messages in {CHATS} chats in {time.perf_counter() - t:.1f} s")
        r = asyncio.run(measure(root / "home", big))
        print(
            f"start → chat list drawn ({CHATS} chats, {TOTAL:,} messages): "
            f"{r['list_s'] * 1000:.0f} ms   (target ≤ 1000 ms)"
        )
        print(
            f"open a chat of {BIG:,} messages ({int(r['open_drawn'])} drawn): "
            f"{r['open_s'] * 1000:.0f} ms   (target ≤ 150 ms)"
        )
        print(
            f"scroll back to {int(r['scroll_loaded']):,} messages "
            f"({int(r['scroll_pages'])} PageUps): median {r['page_ms']:.1f} ms a page, "
            f"{r['load_ms']:.0f} ms when it loads the next {PAGE} older"
        )
        print(
            f"keystroke → input while 200 msg/s arrive: median {r['key_median_ms']:.1f} ms, "
            f"p95 {r['key_p95_ms']:.1f} ms   (target ≤ 16 ms)"
        )
        print(f"peak resident memory: {r['maxrss_mb']:.0f} MB   (target ≤ 150 MB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
