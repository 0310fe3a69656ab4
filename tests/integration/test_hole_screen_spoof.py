"""Issue 15, hole 1: a forged "Alice ✓" on Bob's screen. Mallory's text carrying ESC[2K ESC[1G
made `tits recv` erase its own line and draw a fake sender; and a second key whose user id says
"Alice" was shown as "Alice ✓" to a Bob with no petname for it. Now every text, name and file
name from the wire is shown with control and bidi characters visible, never interpreted, and a
key's own name is marked (~name (fingerprint)) unless it is the user's own petname."""

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

TRICK = "ok\x1b[2K\x1b[1G20:10:57 Alice ✓: the new account is 0123-456\u202e"


def recv(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TITS_LANG="en", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), "recv", "--timeout", "10", *args],
        capture_output=True, text=True, timeout=90, env=env,
    )  # fmt: skip


def test_no_control_character_reaches_the_terminal(broker: BrokerProc, people: People) -> None:
    a, b, m = people.alice, people.bob, people.mallory
    Contacts(b.path).add("alice", a.fingerprint)  # Bob's own name for the real Alice
    mallory = Messenger(m, broker=broker.url)
    mallory.send_text([b.fingerprint], TRICK)
    mallory.close()
    b.save_config(broker=broker.url)
    r = recv(b.path)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout
    line = next(x for x in r.stdout.splitlines() if "0123-456" in x)
    assert "␛[2K␛[1G" in line and "<U+202E>" in line  # shown, visibly, not interpreted
    assert "alice ✓" not in line.split(":")[0]  # it does not start as if from Bob's alice
    # Mallory's key says "Mallory"; with no petname Bob sees it marked, with her fingerprint
    assert f"~Mallory ({m.fingerprint[:8]})" in line


def test_a_key_named_like_a_contact_is_marked_not_trusted(
    broker: BrokerProc, people: People
) -> None:
    a, b, m = people.alice, people.bob, people.mallory
    # Mallory's key claims nothing special, but Bob has no petname for it: the JSON and the
    # screen both mark the key's own name; only Bob's petname is shown bare
    mallory = Messenger(m, broker=broker.url)
    mallory.send_text([b.fingerprint], "hi")
    mallory.close()
    alice = Messenger(a, broker=broker.url)
    alice.send_text([b.fingerprint], "hi from the real one")
    alice.close()
    Contacts(b.path).add("alice", a.fingerprint)
    b.save_config(broker=broker.url)
    r = recv(b.path, "--json")
    lines = [x for x in map(json.loads, r.stdout.splitlines()) if x["kind"] == "text"]
    got = {x["from"]: x["from_name"] for x in lines}
    assert got[a.fingerprint] == "alice"
    assert got[m.fingerprint].startswith("~") and m.fingerprint[:8] in got[m.fingerprint]


def test_a_key_whose_name_holds_escapes_cannot_draw_on_the_screen(tmp_path: Path) -> None:
    """The name inside a key is the key owner's to choose: `key fetch`, `contact list` and
    `whoami` show it with its control characters visible."""
    from tests.broker_fixtures import kill_agent, short_tmpdir
    from tests.keyd_fixtures import KeydProcess
    from tits.home import Home
    from tits.keyclient import KeyClient

    root = short_tmpdir("tk")
    keyd = KeydProcess(root / "keyd").start()
    try:
        evil = Home(root / "evil")
        evil.create("Mal\x1b[2K\x1b[1GAlice ✓\u202e", "evil@example.org", "evil-phone")
        KeyClient(keyd.url).publish_key(evil.identity.export_public(evil.fingerprint))
        bob = Home(root / "bob")
        bob.create("Bob", "bob@example.org", "bob-phone")
        env = dict(os.environ, TITS_LANG="en", COLUMNS="200")

        def tits(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "tits.cli", "--home", str(home.path), *args],
                capture_output=True, text=True, timeout=90, env=env,
            )  # fmt: skip

        outs = [
            tits(bob, "key", "fetch", evil.fingerprint, "--keyserver", keyd.url, "--as", "m"),
            tits(bob, "contact", "list"),
            tits(evil, "whoami"),
        ]
        for r in outs:
            assert r.returncode == 0, r.stderr
            assert "\x1b" not in r.stdout + r.stderr and "\u202e" not in r.stdout + r.stderr
        assert "␛[2K" in outs[0].stdout + outs[1].stdout
    finally:
        keyd.stop()
        for d in root.iterdir():
            kill_agent(d / "gnupg")
