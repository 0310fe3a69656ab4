"""Alice and Bob use the `tits` command against a real key server and broker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc, kill_agent, short_tmpdir
from tests.keyd_fixtures import KeydProcess


@pytest.fixture
def cloud() -> Iterator[tuple[Path, KeydProcess, BrokerProc]]:
    root = short_tmpdir("ts")
    keyd = KeydProcess(root / "keyd").start()
    broker = BrokerProc(root / "broker", "--keyserver", keyd.url).start()
    yield root, keyd, broker
    broker.cleanup()
    keyd.stop()
    for d in root.iterdir():
        kill_agent(d / "gnupg")
    shutil.rmtree(root, ignore_errors=True)


def tits(
    home: Path, *args: str, ok: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TITS_LANG="en", COLUMNS="120")
    r = subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        input=stdin if stdin is not None else "",
    )
    if ok:
        assert r.returncode == 0, f"tits {' '.join(args)} failed: {r.stderr}"
    return r


def test_a_conversation_on_the_command_line(cloud: tuple[Path, KeydProcess, BrokerProc]) -> None:
    root, keyd, broker = cloud
    homes, fps = two_users(root, keyd, broker)
    tits(homes["alice"], "contact", "add", "bob", fps["bob"])

    sent = []
    for text in ("你好，Bob！", "第二則 — with an emoji 🎉"):
        r = tits(homes["alice"], "send", "@bob", text, "--json")
        sent.append(json.loads(r.stdout)["id"])
    r = tits(homes["alice"], "send", "@bob", "plain output")
    assert "sent → bob" in r.stdout

    r = tits(homes["bob"], "recv", "--json")
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [g["text"] for g in got] == ["你好，Bob！", "第二則 — with an emoji 🎉", "plain output"]
    assert [g["id"] for g in got[:2]] == sent
    for g in got:
        # Bob has no petname for her: the key's own name, marked, never bare "Alice 陳"
        assert g["from"] == fps["alice"] and g["from_name"] == f"~Alice 陳 ({fps['alice'][:8]})"
        assert g["to"] == [fps["bob"]] and g["group"] is None
        assert g["kind"] == "text" and g["verified"] is True and isinstance(g["ts"], int)

    # nothing twice
    r = tits(homes["bob"], "recv", "--json")
    assert r.stdout == ""

    # Bob answers by fingerprint; Alice reads the human rendering
    tits(homes["bob"], "send", fps["alice"], "收到，謝謝！")
    r = tits(homes["alice"], "recv")
    assert "bob ✓: 收到，謝謝！" in r.stdout  # her petname for him

    # an interactive chat: history, what waits, a line typed, then Ctrl-D
    tits(homes["alice"], "send", "@bob", "are you there?")
    r = tits(homes["bob"], "chat", fps["alice"], stdin="yes — 我在這裡\n")
    assert "are you there?" in r.stdout and "yes — 我在這裡" in r.stdout
    assert "收到，謝謝！" in r.stdout  # history
    r = tits(homes["alice"], "recv", "--json")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [g["text"] for g in lines if g["kind"] == "text"] == ["yes — 我在這裡"]
    # and Bob's 已讀 for what he read came with it: one receipt, naming her texts
    assert [g["from"] for g in lines if g["kind"] == "receipt"] == [fps["bob"]]

    # media: signed, not encrypted, kept content-addressed on the receiving side
    picture = root / "cat.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    r = tits(homes["alice"], "send", "@bob", "look", "--file", str(picture), "--json")
    assert len(json.loads(r.stdout)["ids"]) == 2
    r = tits(homes["bob"], "recv", "--json")
    got = [g for g in map(json.loads, r.stdout.splitlines()) if g["kind"] != "receipt"]
    assert [(g["kind"], g["verified"]) for g in got] == [("text", True), ("media", True)]
    assert got[1]["mime"] == "image/png"
    kept = Path(got[1]["file"])
    assert kept.read_bytes() == picture.read_bytes()

    # a broker that is not there: a clear error and a non-zero exit, no traceback
    r = tits(
        homes["alice"], "send", "@bob", "x", "--broker",
        "tcp://127.0.0.1:9#" + "00" * 32, "--timeout", "1", ok=False,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip()
    # ... and the text is not lost: it waits in the outbox, and goes with the next command
    r = tits(homes["alice"], "outbox", "--json")
    waiting = [json.loads(line) for line in r.stdout.splitlines()]
    assert [w["text"] for w in waiting] == ["x"]
    tits(homes["alice"], "recv", "--timeout", "3")
    assert tits(homes["alice"], "outbox", "--json").stdout == ""
    r = tits(homes["bob"], "recv", "--json")
    texts = [g["text"] for g in map(json.loads, r.stdout.splitlines()) if g["kind"] == "text"]
    assert texts == ["x"]


def two_users(
    root: Path, keyd: KeydProcess, broker: BrokerProc
) -> tuple[dict[str, Path], dict[str, str]]:
    """Alice and Bob made with `tits init` and their keys published: homes and fingerprints."""
    homes, fps = {}, {}
    for who, name in (("alice", "Alice 陳"), ("bob", "Bob 林")):
        homes[who] = root / who
        out = tits(
            homes[who], "init", "--name", name, "--email", f"{who}@example.org",
            "--broker", broker.url, "--keyserver", keyd.url, "--json",
        )  # fmt: skip
        fps[who] = json.loads(out.stdout)["fingerprint"]
        tits(homes[who], "key", "publish")
    return homes, fps


def test_react_announce_and_lifetime_on_the_command_line(
    cloud: tuple[Path, KeydProcess, BrokerProc],
) -> None:
    root, keyd, broker = cloud
    homes, fps = two_users(root, keyd, broker)
    tits(homes["alice"], "contact", "add", "bob", fps["bob"])
    tits(homes["bob"], "contact", "add", "alice", fps["alice"])

    r = tits(homes["alice"], "send", "@bob", "看完就刪", "--lifetime", "10m", "--json")
    sent = json.loads(r.stdout)["id"]
    got = [json.loads(x) for x in tits(homes["bob"], "recv", "--json").stdout.splitlines()]
    assert [(g["id"], g["lifetime_s"]) for g in got if g["kind"] == "text"] == [(sent, 600)]

    tits(homes["bob"], "react", sent, "love")
    lines = [json.loads(x) for x in tits(homes["alice"], "recv", "--json").stdout.splitlines()]
    reactions = [g for g in lines if g["kind"] == "reaction"]
    assert [(g["id"], g["reaction"], g["from"]) for g in reactions] == [(sent, "love", fps["bob"])]
    tits(homes["alice"], "announce", "@bob", "週五交報告")
    lines = [json.loads(x) for x in tits(homes["bob"], "recv", "--json").stdout.splitlines()]
    assert [g["text"] for g in lines if g["kind"] == "announcement"] == ["週五交報告"]
    shown = json.loads(tits(homes["bob"], "announce", "@alice", "--json").stdout)
    assert shown["text"] == "週五交報告" and shown["from"] == fps["alice"]
    r = tits(homes["bob"], "announce", "@alice")
    assert "週五交報告" in r.stdout

    # mistakes: one clear line each, a non-zero exit, nothing sent
    for args, words in (
        (("react", sent, "bomb"), "no reaction"),
        (("react", sent), "--remove"),
        (("react", "xyz", "love"), "32 hex"),
        (("send", "@bob", "x", "--lifetime", "3s"), "lifetime"),
        (("announce", "@bob", "\x1b[2J"), "control"),
        (("announce", "@bob", "x", "--clear"), "--clear"),
    ):
        r = tits(homes["alice"], *args, ok=False)
        assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert tits(homes["alice"], "outbox", "--json").stdout == ""


def test_friends_add_each_other_from_a_code(cloud: tuple[Path, KeydProcess, BrokerProc]) -> None:
    root, keyd, broker = cloud
    homes, fps = two_users(root, keyd, broker)
    mine = json.loads(tits(homes["bob"], "friend", "me", "--json").stdout)
    assert mine["fingerprint"] == fps["bob"] and mine["code"].startswith("omega-im:friend?fp=")
    shown = tits(homes["bob"], "friend", "me").stdout
    assert "▀" in shown or "█" in shown  # the QR code, drawn with half blocks
    grouped = " ".join(fps["bob"][i : i + 4] for i in range(0, 40, 4))
    assert grouped in shown

    added = json.loads(tits(homes["alice"], "friend", "add", mine["code"], "--json").stdout)
    assert added["contact"] == "Bob" and added["met_before"] is False
    assert added["fingerprint"] == fps["bob"]
    again = tits(homes["alice"], "friend", "add", grouped)  # the ID as read aloud
    assert "met before: @Bob" in again.stdout
    # and Bob is reachable by the name at once
    tits(homes["alice"], "send", "@Bob", "加好友了！")
    texts = [
        json.loads(x)["text"] for x in tits(homes["bob"], "recv", "--json").stdout.splitlines()
    ]
    assert texts == ["加好友了！"]

    for bad, words in (
        ("omega-im:friend?fp=xyz", "40 hex"),
        (f"omega-im:friend?fp={fps['bob']}&ks=file:///etc/passwd", "http"),
        ("hello", "friend code"),
        (fps["alice"], "your own"),
    ):
        r = tits(homes["alice"], "friend", "add", bad, "--yes", ok=False)
        assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
