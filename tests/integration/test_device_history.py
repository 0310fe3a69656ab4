"""A device linked late brings the whole history (real broker, keyd, GnuPG): a direct chat of
1,000 texts and a 10-member group, readable on it, including what was said before it existed,
and what follows in both opens on it with the keys that came along."""

from __future__ import annotations

import threading

import pytest

from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    Received,
    cloud1_fixture,
    crowd_fixture,
)
from tests.proc_cloud import ProcCloud
from tests.support import kill_agent
from tits import pairing as P
from tits.client import linking
from tits.client.blocking import Messenger
from tits.home import Home
from tits.session import direct_conversation_id

pytestmark = pytest.mark.timeout(300)


def link_new_device(alice: Home, new: Home, broker: str, keyserver: str) -> linking.Joined:
    codes: list[P.Code] = []
    ready = threading.Event()
    errors: list[BaseException] = []

    def on_code(code: P.Code) -> None:
        codes.append(code)
        ready.set()

    def run() -> None:
        try:
            linking.link(alice, lambda sas: True, on_code, broker=broker, keyserver=keyserver)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            errors.append(exc)
            ready.set()

    t = threading.Thread(target=run)
    t.start()
    assert ready.wait(60) and not errors, errors
    progress: list[tuple[int, int]] = []
    done = linking.join(new, codes[0].text(), lambda sas: True, "new-phone",
                        progress=lambda a, b: progress.append((a, b)))  # fmt: skip
    t.join(60)
    assert not errors, errors
    assert progress and progress[-1][0] == progress[-1][1]
    return done


def test_a_late_device_reads_a_long_chat_and_a_big_group(cloud1: ProcCloud, crowd: Crowd) -> None:  # noqa: F811
    url, keyserver = cloud1.url(0), cloud1.local.keyserver
    names = crowd.names[:10]
    alice = crowd.messenger("alice", url, keyserver)
    bob = Received(crowd.messenger("bob", url, keyserver))
    gid = alice.group_create("十人")
    alice.group_change(gid, "invite", [crowd.fp(n) for n in names[1:]])
    bob.until(lambda r: r.m.client.groups.state(gid) is not None, 60, "the group")
    for i in range(5):
        bob.m.send_text([], f"群組 {i}", group=gid)
    items = [alice.enqueue(crowd.fp("bob"), f"長聊 {i}".encode()) for i in range(1000)]
    alice.connect(30)
    alice.flush_and_wait(items, 120)
    got = Received(alice)
    got.until(lambda r: len(r.texts(gid)) == 5, 60, "Bob's group texts")
    alice.close()

    new = Home(crowd.root / "alice-new")
    try:
        done = link_new_device(crowd.homes["alice"], new, url, keyserver)
        assert done.fingerprint == crowd.fp("alice") and done.messages == 1005
        m = Messenger(new, broker=url, keyserver=keyserver)
        crowd.clients.append(m)
        conv = direct_conversation_id(crowd.fp("alice"), crowd.fp("bob"))
        chat = m.store.history(conv, limit=2000)
        assert [x.text for x in chat] == [f"長聊 {i}" for i in range(1000)]
        assert sorted(x.text or "" for x in m.store.history(gid)) == [f"群組 {i}" for i in range(5)]
        state = m.client.groups.state(gid)
        assert state is not None and sorted(state.members) == sorted(crowd.fp(n) for n in names)

        # what follows opens on the new device, in both conversations
        bob.m.send_text([], "之後", group=gid)
        bob.m.send_text(crowd.fp("alice"), "還在嗎")
        r = Received(m)
        r.until(lambda r: {"之後", "還在嗎"} <= {x.text for x in r.messages}, 60, "new texts")
        assert all(x.verified for x in r.messages)
    finally:
        kill_agent(new.path / "gnupg")
