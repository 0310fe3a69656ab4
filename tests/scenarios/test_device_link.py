"""`tits device link` / `device join` against a real broker and key server: the new device
gets the account, logs in with its own certificate and receives what is sent to the user; a
used code and a wrong code are clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc
from tests.keyd_fixtures import KeydProcess
from tests.scenarios.test_chat_cli import cloud, tits  # noqa: F401 - the fixture
from tits.keyclient import KeyClient

pytestmark = pytest.mark.timeout(480)  # a dozen CLI runs, each a Python start and gpg


def start_link(home: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, TITS_LANG="en", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tits.cli", "--home", str(home), "device", "link", "--json",
         "--yes", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, proc.stderr.read() if proc.stderr else ""
    return proc, json.loads(first)["code"]


def finish_link(proc: subprocess.Popen[str]) -> list[dict[str, object]]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def new_user(root: Path, who: str, broker: BrokerProc, keyd: KeydProcess) -> tuple[Path, str]:
    home = root / who
    out = tits(
        home, "init", "--name", who.title(), "--email", f"{who}@example.org",
        "--broker", broker.url, "--keyserver", keyd.url, "--json", "--device-name", f"{who}-pc",
    )  # fmt: skip
    tits(home, "key", "publish")
    return home, json.loads(out.stdout)["fingerprint"]


def test_link_a_device_that_then_gets_the_users_messages(
    cloud: tuple[Path, KeydProcess, BrokerProc],  # noqa: F811
) -> None:
    root, keyd, broker = cloud
    alice, afp = new_user(root, "alice", broker, keyd)
    bob, bfp = new_user(root, "bob", broker, keyd)

    proc, code = start_link(alice, "--timeout", "120")
    joined = tits(root / "alice2", "device", "join", code, "--yes", "--json", "--name", "tablet")
    lines = [json.loads(line) for line in joined.stdout.splitlines()]
    sas = lines[0]["sas"]
    assert lines[-1]["fingerprint"] == afp and lines[-1]["published"] is True
    linked = finish_link(proc)
    assert linked[0] == {"sas": sas}  # both ends showed the same short code
    assert linked[-1]["name"] == "tablet" and linked[-1]["linked"] == lines[-1]["device"]

    me = json.loads(tits(root / "alice2", "whoami", "--json").stdout)
    assert me["fingerprint"] == afp and me["device"]["name"] == "tablet"
    assert me["broker"] == broker.url and me["keyserver"] == keyd.url
    devices = {d["name"] for d in KeyClient(keyd.url).devices(afp) if not d["revoked"]}
    assert devices == {"alice-pc", "tablet"}

    # the code worked once: a third device gets a clear error, the linking device is gone
    r = tits(root / "alice3", "device", "join", code, "--yes", "--timeout", "3", ok=False)
    assert r.returncode == 1 and "did not answer" in r.stderr
    assert not (root / "alice3" / "device.key").exists()
    r = tits(root / "alice3", "device", "join", "tits-link:garbage", ok=False)
    assert r.returncode == 1 and "not a pairing code" in r.stderr
    # a home that already holds an identity does not join another
    r = tits(bob, "device", "join", code, "--yes", ok=False)
    assert r.returncode == 1 and "already holds identity" in r.stderr

    # Bob writes to Alice: both of her devices read it
    tits(bob, "contact", "add", "alice", afp)
    tits(bob, "key", "fetch", afp)
    tits(bob, "send", "@alice", "早安")
    for home in (alice, root / "alice2"):
        got = [json.loads(line) for line in tits(home, "recv", "--json").stdout.splitlines()]
        texts = [(g["text"], g["from"], g["verified"]) for g in got if g["kind"] == "text"]
        assert texts == [("早安", bfp, True)], (home, got)


def test_the_new_device_brings_the_history_it_asks_for(
    cloud: tuple[Path, KeydProcess, BrokerProc],  # noqa: F811
) -> None:
    root, keyd, broker = cloud
    alice, afp = new_user(root, "alice", broker, keyd)
    bob, bfp = new_user(root, "bob", broker, keyd)
    tits(bob, "contact", "add", "alice", afp)
    tits(bob, "key", "fetch", afp)
    tits(alice, "contact", "add", "bob", bfp)
    tits(alice, "key", "fetch", bfp)
    for i in range(3):
        tits(bob, "send", "@alice", f"bob {i}")
    tits(alice, "recv")
    tits(alice, "send", "@bob", "alice 0")

    for home, choice, count in ((root / "alice2", "all", 4), (root / "alice3", "none", 0)):
        proc, code = start_link(alice, "--timeout", "120")
        joined = tits(home, "device", "join", code, "--yes", "--json", "--history", choice)
        assert json.loads(joined.stdout.splitlines()[-1])["messages"] == count
        finish_link(proc)
        # the contacts came too
        assert tits(home, "contact", "list").stdout.count("bob") >= 1
    old = root / "alice2" / "store.db"
    import sqlite3

    db = sqlite3.connect(old)
    got = sorted(t for (t,) in db.execute("SELECT text FROM messages"))
    db.close()
    assert got == ["alice 0", "bob 0", "bob 1", "bob 2"]

    # the chat's session key came with the history: Bob's next text opens on both new devices
    # (the one that brought none still gets what the broker's mailbox kept for the account)
    tits(bob, "send", "@alice", "還是同一個聊天")
    for home, before in (
        (root / "alice2", []),
        (root / "alice3", ["alice 0", "bob 0", "bob 1", "bob 2"]),
    ):
        got2 = [json.loads(x) for x in tits(home, "recv", "--json").stdout.splitlines()]
        texts = [(g["text"], g["verified"]) for g in got2 if g["kind"] == "text"]
        assert sorted(texts) == sorted([(t, True) for t in [*before, "還是同一個聊天"]]), (
            home,
            got2,
        )
        assert [g for g in got2 if g["kind"] == "refused"] == [], got2


def test_a_code_nobody_uses_shows_a_qr_and_expires(
    cloud: tuple[Path, KeydProcess, BrokerProc],  # noqa: F811
) -> None:
    root, keyd, broker = cloud
    alice, _ = new_user(root, "alice", broker, keyd)
    r = tits(alice, "device", "link", "--timeout", "10", ok=False)
    assert r.returncode == 1 and "expired" in r.stderr
    assert "█" in r.stdout and "device join tits-link:" in r.stdout
    code = r.stdout.split("device join ", 1)[1].split()[0]
    r = tits(root / "late", "device", "join", code, "--yes", ok=False)
    assert r.returncode == 1 and "expired" in r.stderr
