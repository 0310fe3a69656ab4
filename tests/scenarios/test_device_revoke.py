"""Three devices of Alice (linked with `device link`/`join`) and Bob, with a real broker, key
server and GnuPG: a message to Alice reaches all three, each one's sends show on the others;
then the third revokes the second: its next login is refused, a text it signs is refused by
Bob with a warning, and the group moves to a new epoch without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc
from tests.keyd_fixtures import KeydProcess
from tests.scenarios.test_chat_cli import cloud, tits  # noqa: F401 - the fixture
from tests.scenarios.test_device_link import finish_link, new_user, start_link
from tits import wire
from tits.client.blocking import Messenger
from tits.client.connection import Connection
from tits.home import Home

pytestmark = pytest.mark.timeout(480)  # a dozen CLI runs, each a Python start and gpg


def recv(home: Path) -> list[dict[str, object]]:
    out = tits(home, "recv", "--json").stdout
    return [json.loads(line) for line in out.splitlines()]


def texts(got: list[dict[str, object]]) -> list[object]:
    return [g["text"] for g in got if g["kind"] == "text"]


def pair(alice: Path, new: Path, name: str) -> None:
    proc, code = start_link(alice, "--timeout", "120")
    tits(new, "device", "join", code, "--yes", "--name", name)
    finish_link(proc)


def test_three_devices_then_one_revoked(cloud: tuple[Path, KeydProcess, BrokerProc]) -> None:  # noqa: F811
    root, keyd, broker = cloud
    a1, afp = new_user(root, "alice", broker, keyd)
    bob, bfp = new_user(root, "bob", broker, keyd)
    a2, a3 = root / "alice2", root / "alice3"
    pair(a1, a2, "tablet")
    pair(a2, a3, "laptop")  # a linked device links the next one
    listed = [json.loads(x) for x in tits(a3, "device", "list", "--json").stdout.splitlines()]
    assert sorted((d["name"], d["this"]) for d in listed) == [
        ("alice-pc", False), ("laptop", True), ("tablet", False),
    ]  # fmt: skip
    tits(bob, "contact", "add", "alice", afp)
    tits(bob, "key", "fetch", afp)
    for home in (a1, a2, a3):
        tits(home, "contact", "add", "bob", bfp)
        tits(home, "key", "fetch", bfp)

    # a message to Alice reaches all three devices
    tits(bob, "send", "@alice", "三台都收到嗎？")
    for home in (a1, a2, a3):
        assert texts(recv(home)) == ["三台都收到嗎？"], home
    # what each device sends, Bob reads, and the other two see
    for i, home in enumerate((a1, a2, a3)):
        tits(home, "send", "@bob", f"from {i + 1}")
    assert texts(recv(bob)) == ["from 1", "from 2", "from 3"]
    for home in (a1, a2, a3):
        recv(home)  # (what came while a device was sending was taken in then)
        assert sorted(_texts_stored(home, "from %")) == ["from 1", "from 2", "from 3"], home

    # a group of Alice and Bob, read on every device
    gid = json.loads(tits(a1, "group", "create", "家", "--json").stdout)["group"]
    tits(a1, "group", "invite", f"#{gid}", "@bob")
    recv(bob)
    tits(bob, "send", f"#{gid}", "晚安")
    for home in (a2, a3):
        assert texts(recv(home)) == ["晚安"], home
    recv(bob)
    epochs_before = {e for (e,) in _epochs(bob, gid)}

    # the laptop revokes the tablet
    out = json.loads(tits(a3, "device", "revoke", "tablet", "--json").stdout)
    tablet = out["revoked"]
    assert out["groups_rekeyed"] == 1
    listed = [json.loads(x) for x in tits(a1, "device", "list", "--json").stdout.splitlines()]
    assert [d["revoked"] for d in listed if d["name"] == "tablet"] == [True]
    r = tits(a3, "device", "revoke", "laptop", ok=False)  # itself: from another device
    assert r.returncode == 1 and "another of your devices" in r.stderr
    r = tits(a2, "device", "revoke", "laptop", ok=False)  # the revoked one strikes back
    assert r.returncode == 1 and "this device was revoked" in r.stderr

    # its next login is refused
    r = tits(a2, "recv", ok=False)
    assert r.returncode == 1 and "revoked" in r.stderr, r.stderr

    # a text it signs (carried by a device that can still log in) is refused by Bob, who
    # learnt of the revocation with the group's new key
    m2 = Messenger(Home(a2), broker=broker.url)
    frames, *_ = m2.prepare_text([bfp], "我是平板，還在喔")
    m2.close()
    h3 = Home(a3)
    _, cert, sig = h3.certificate
    with Connection(broker.url, h3.identity, afp, cert, sig) as conn:
        conn.login()
        sealed = [(s, b) for s, b in frames
                  if isinstance(wire.BODY_DECODER.decode(b), wire.SealedBody)]  # fmt: skip
        conn.send_and_wait(sealed)
    got = recv(bob)
    assert texts(got) == []
    refused = [g for g in got if g["kind"] == "refused"]
    assert refused and all("revoked" in str(g["reason"]) for g in refused), got
    assert tablet in json.loads((bob / "revoked-devices.json").read_text())[0]["device"]

    # the group moved on without it: a new epoch, which the tablet never received
    epochs_after = {e for (e,) in _epochs(bob, gid)}
    new = epochs_after - epochs_before
    assert new, "no rekey reached Bob"
    assert not new & {e for (e,) in _epochs(a2, gid)}
    tits(bob, "send", f"#{gid}", "之後的話")
    assert texts(recv(a3)) == ["之後的話"]


def _epochs(home: Path, gid: str) -> list[tuple[int]]:
    import sqlite3

    db = sqlite3.connect(home / "store.db")
    try:
        return db.execute(
            "SELECT epoch FROM epochs WHERE conv = ?", (bytes.fromhex(gid),)
        ).fetchall()
    finally:
        db.close()


def _texts_stored(home: Path, like: str) -> list[str]:
    import sqlite3

    db = sqlite3.connect(home / "store.db")
    try:
        return [t for (t,) in db.execute("SELECT text FROM messages WHERE text LIKE ?", (like,))]
    finally:
        db.close()
