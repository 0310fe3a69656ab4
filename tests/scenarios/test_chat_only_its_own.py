"""`tits chat @bob` shows only that conversation: a text from someone else raises a notice and
stays unread, so `tits recv` still shows it (it was once marked read and lost from view)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    people_fixture,
)
from tits.client.blocking import Messenger
from tits.contacts import Contacts


def tits(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TITS_LANG="en", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), *args],
        capture_output=True, text=True, timeout=90, env=env, input=stdin,
    )  # fmt: skip


def test_a_chat_shows_only_its_own_messages(broker: BrokerProc, people: People) -> None:
    a, b, m = people.alice, people.bob, people.mallory
    a.save_config(broker=broker.url)
    Contacts(a.path).add("bob", b.fingerprint)
    for who, text in ((b, "Bob 的訊息"), (m, "別人的訊息")):
        sender = Messenger(who, broker=broker.url)
        sender.send_text([a.fingerprint], text)
        sender.close()
    r = tits(a.path, "chat", "@bob", stdin="好\n")
    assert r.returncode == 0, r.stderr
    assert "Bob 的訊息" in r.stdout and "別人的訊息" not in r.stdout
    assert "1 unread" in r.stderr  # the other chat is counted, not shown
    got = [json.loads(x) for x in tits(a.path, "recv", "--json").stdout.splitlines()]
    assert [g["text"] for g in got if g["kind"] == "text"] == ["別人的訊息"]  # still unread
