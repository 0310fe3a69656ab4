"""A device away longer than its broker's mailbox retention (real titsd, GnuPG, the `tits`
command): /api/status and the status page show the retention; the broker counts what its
prune took from that device, tells it once at its next login, and `tits recv` says so (JSON
and words, zh-TW), while what came after still arrives. A short `max_age_s` keeps it quick."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.support import ready, until
from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    connect,
    people_fixture,
    wait_for,
)
from tests.support import short_tmpdir
from tits import wire
from tits.app.app import TitsApp
from tits.client.blocking import Messenger

pytestmark = pytest.mark.timeout(240)
MAX_AGE_S = 6.0
TITS = [sys.executable, "-m", "tits.cli"]


@pytest.fixture(name="broker")
def short_retention_broker() -> Iterator[BrokerProc]:
    root = short_tmpdir("tg")
    cfg = root / "titsd.toml"
    cfg.write_text(f"keep_s = 0.0\nmax_age_s = {MAX_AGE_S}\n")
    b = BrokerProc(root / "broker", "--config", str(cfg)).start()
    yield b
    b.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def env(lang: str) -> dict[str, str]:
    return dict(os.environ, TITS_LANG=lang, COLUMNS="300")


def gaps(b: BrokerProc, fp: str) -> int:
    db = sqlite3.connect(f"file:{b.data / 'mailbox.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT sum(missed) FROM gaps WHERE user=?", (fp,)).fetchone()
        return int(row[0] or 0)
    finally:
        db.close()


def lost_while_away(b: BrokerProc, people: People, n: int) -> None:
    """Bob sends Alice `n` texts while she is away; the broker's prune takes them."""
    conn = connect(people.bob, b.url)
    try:
        for i in range(n):
            msg = wire.Send(id=wire.new_msg_id(), sender=people.bob.fingerprint,
                            to=[people.alice.fingerprint])  # fmt: skip
            assert conn.send_and_wait([(msg, f"lost {i}".encode())]) == [msg.id]
    finally:
        conn.close()
    wait_for(lambda: gaps(b, people.alice.fingerprint) >= n, 60, "the prune's count")


Follow = tuple[subprocess.Popen[str], queue.Queue[dict[str, Any]], threading.Thread]


def follow(home: Path, url: str) -> Follow:
    proc = subprocess.Popen(
        [*TITS, "--home", str(home), "recv", "--json", "--follow", "--timeout", "90",
         "--broker", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env("en"),
    )  # fmt: skip
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                lines.put(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, lines, reader


async def app_notices(home: Path, url: str, words: str) -> None:
    before = os.environ.get("TITS_LANG")
    os.environ["TITS_LANG"] = "zh_TW.UTF-8"
    try:
        app = TitsApp(home, broker=url)
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await until(pilot, lambda: any(words in n.message for n in app._notifications),
                        60, "the notice")  # fmt: skip
    finally:
        if before is None:
            del os.environ["TITS_LANG"]
        else:
            os.environ["TITS_LANG"] = before


def test_a_device_away_past_retention_is_told_what_it_missed(
    broker: BrokerProc, people: People
) -> None:
    b, alice, bob = broker, people.alice, people.bob
    assert b.status()["retention"] == {"keep_s": 0.0, "max_age_s": MAX_AGE_S}
    _, _, page = b.get("/?lang=en")
    assert "every message is kept at most 6 seconds" in page.decode()
    _, _, page = b.get("/?lang=zh-TW")
    assert "信箱保留期限：每則訊息最多保留 6 秒" in page.decode()

    connect(alice, b.url).close()  # her device is known here, then she goes away
    lost_while_away(b, people, 3)

    proc, lines, reader = follow(alice.path, b.url)
    try:
        gap = lines.get(timeout=60)
        assert gap["kind"] == "gap" and gap["missed"] == 3, gap
        assert gap["retention_s"] == int(MAX_AGE_S) and gap["since"] and gap["oldest"]
        # what comes within the retention still arrives
        sender = Messenger(bob, broker=b.url)
        try:
            sender.send_text(alice.fingerprint, "還在嗎")
        finally:
            sender.close()
        while (row := lines.get(timeout=60)).get("kind") != "text":
            assert row.get("kind") != "gap", "told twice"
        assert row["text"] == "還在嗎" and row["verified"]
    finally:
        proc.kill()
        proc.wait(timeout=30)
        reader.join(30)
        assert proc.stdout is not None
        proc.stdout.close()

    # in words, in her language; and said once
    lost_while_away(b, people, 2)
    r = subprocess.run(
        [*TITS, "--home", str(alice.path), "recv", "--timeout", "20", "--broker", b.url],
        capture_output=True, text=True, timeout=120, env=env("zh-TW"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert "你離線超過 6 秒" in said and "之前的 2 則訊息已無法取得" in said, r.stdout
    # the app shows it as a notice
    lost_while_away(b, people, 1)
    asyncio.run(app_notices(alice.path, b.url, "之前的 1 則訊息已無法取得"))
    r = subprocess.run(
        [*TITS, "--home", str(alice.path), "recv", "--json", "--timeout", "20", "--broker", b.url],
        capture_output=True, text=True, timeout=120, env=env("en"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # the count is said once (a loaded machine may take longer than max_age_s to log in
    # again: then the device is told, rightly, that it was away that long, with no count)
    told = [json.loads(x) for x in r.stdout.splitlines() if '"gap"' in x]
    assert not [x for x in told if x["missed"]], r.stdout
    assert gaps(b, alice.fingerprint) == 0
