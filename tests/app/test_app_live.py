"""The app against a real broker, with real users: Bob (the blocking Messenger) and Alice (the
app on its own asyncio loop, driven by Textual's pilot)."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input

from tests.app.support import ready, rows, screen_text, until
from tests.broker_fixtures import BrokerProc, People, broker_fixture, people_fixture  # noqa: F401
from tits.app.app import TitsApp
from tits.app.msgview import SENT
from tits.app.screens import ConversationScreen
from tits.client.blocking import Message, Messenger


@pytest.fixture(autouse=True)
def _zh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITS_LANG", "zh_TW.UTF-8")


def test_alice_reads_bob_and_answers_in_chinese(broker: BrokerProc, people: People) -> None:
    bob = Messenger(people.bob, broker=broker.url)
    try:
        bob.send_text([people.alice.fingerprint], "Alice 妳好 👋 今晚有空嗎？")

        async def go() -> None:
            app = TitsApp(people.alice.path, broker=broker.url)
            async with app.run_test(size=(80, 24)) as pilot:
                await ready(pilot)
                # the message comes in after the login: a row with one unread
                row = (await until(pilot, lambda: rows(app), what="a chat row"))[0]
                assert row.chat.peer == people.bob.fingerprint and row.chat.unread == 1
                await until(pilot, lambda: "今晚有空嗎" in screen_text(app))
                assert "已連線" in screen_text(app)
                await pilot.press("enter")
                screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                     and app.screen.shown and app.screen)  # fmt: skip
                assert "Alice 妳好 👋 今晚有空嗎？" in screen_text(app)
                for ch in "有空七點見":  # typed key by key, as a 注音 IME commits them
                    await pilot.press(ch)
                # the pilot cannot press "！" or an emoji (it reads them as key names): pasted
                screen.query_one("#line", Input).insert_text_at_cursor("！🍜")
                await pilot.press("enter")
                mine = await until(pilot, lambda: [b for b in screen.shown.values() if b.mine])
                # pending at once, marked when the broker stored it
                await until(pilot, lambda: mine[0].state == SENT, what="Stored")
                assert "已傳送" in screen_text(app)
                await pilot.press("escape")
                await until(pilot, lambda: [r.chat.unread for r in rows(app)] == [0])
                assert (await app.backend.work(app.backend.store.unread_counts)) == {}

        asyncio.run(go())
        got: list[Message] = []
        bob.receive(got.append, timeout=30, until=lambda: bool(got))
        assert [(m.text, m.sender, m.verified) for m in got] == [
            ("有空七點見！🍜", people.alice.fingerprint, True)
        ]
    finally:
        bob.close()


def test_the_app_opens_with_history_when_the_broker_is_down(broker: BrokerProc,
                                                           people: People) -> None:  # fmt: skip
    bob = Messenger(people.bob, broker=broker.url)
    try:
        bob.send_text([people.alice.fingerprint], "在嗎")
    finally:
        bob.close()
    alice = Messenger(people.alice, broker=broker.url)
    try:
        alice.receive(lambda m: None, timeout=30)
    finally:
        alice.close()
    broker.stop()

    async def go() -> None:
        app = TitsApp(people.alice.path, broker=broker.url, connect_timeout=5.0)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            assert "在嗎" in screen_text(app)
            await until(pilot, lambda: "離線" in screen_text(app), what="offline shown")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen))
            screen = app.screen
            assert isinstance(screen, ConversationScreen)
            await pilot.press(*"later")
            await pilot.press("enter")
            mine = await until(pilot, lambda: [b for b in screen.shown.values() if b.mine])
            assert mine[0].state != SENT and "傳送中…" in screen_text(app)
        # it waits in the outbox for the next connection
        alice2 = Messenger(people.alice, broker=broker.url)
        try:
            assert [i.payload for i in alice2.store.outbox()] == [b"later"]
        finally:
            alice2.close()

    asyncio.run(go())


def test_invite_and_leave_from_the_input_line(broker: BrokerProc, people: People) -> None:
    from tits.app.msgview import NoticeItem
    from tits.client.model import Event, GroupChanged
    from tits.contacts import Contacts

    alice = Messenger(people.alice, broker=broker.url)
    try:
        gid = alice.group_create("讀書會")
    finally:
        alice.close()
    Contacts(people.alice.path).add("bob", people.bob.fingerprint)
    bob = Messenger(people.bob, broker=broker.url)
    try:

        async def go() -> None:
            app = TitsApp(people.alice.path, broker=broker.url)
            async with app.run_test(size=(80, 24), notifications=True) as pilot:
                await ready(pilot)
                await until(pilot, lambda: "已連線" in screen_text(app))
                group = next(r for r in rows(app) if r.chat.group == gid)
                await app.open_chat(group.chat)
                screen = app.screen
                assert isinstance(screen, ConversationScreen)
                line = screen.query_one("#line", Input)
                line.value = "/invite @bob"
                await pilot.press("enter")
                await until(pilot, lambda: any(
                    isinstance(i, NoticeItem) and "邀請 bob 加入群組" in i.text
                    for i in screen.view.items))  # fmt: skip
                line.value = "歡迎加入"
                await pilot.press("enter")
                mine = await until(pilot, lambda: [b for b in screen.shown.values() if b.mine])
                await until(pilot, lambda: mine[0].state == SENT, what="Stored")
                # Bob reads it before Alice leaves: a text processed after the leave is
                # refused ("not a member"), even one sent while she was a member
                await asyncio.to_thread(
                    bob.receive, got.append, timeout=60, on_event=events.append,
                    until=lambda: bool(got),
                )  # fmt: skip
                line.value = "/leave"
                await pilot.press("enter")
                await until(pilot, lambda: "已退出群組" in [n.message for n in app._notifications])
                # the changes are durable in the outbox at once; wait until a broker took them
                # (else they go with the next start, and Bob would wait for that)
                deadline = time.monotonic() + 60
                while await app.backend.work(app.backend.store.outbox):
                    assert time.monotonic() < deadline, "the outbox never emptied"
                    await pilot.pause(0.1)

        got: list[Message] = []
        events: list[Event] = []
        asyncio.run(go())

        def left() -> bool:
            return any(isinstance(e, GroupChanged) and e.event == "leave" for e in events)

        bob.receive(got.append, timeout=60, on_event=events.append, until=left)
        changes = [(e.event, e.actor) for e in events if isinstance(e, GroupChanged)]
        assert ("invite", people.alice.fingerprint) in changes
        assert ("leave", people.alice.fingerprint) in changes
        assert [(m.text, m.group) for m in got] == [("歡迎加入", gid)]
    finally:
        bob.close()


def test_a_mention_notifies_and_react_announce_and_complete_from_the_input_line(
    broker: BrokerProc, people: People
) -> None:
    from tits.client.model import Announced, Event, Reacted, Unsent

    alice = Messenger(people.alice, broker=broker.url)
    try:
        gid = alice.group_create("讀書會")
        alice.group_change(gid, "invite", [people.bob.fingerprint])
    finally:
        alice.close()
    bob = Messenger(people.bob, broker=broker.url)
    events: list[Event] = []
    try:
        got: list[Message] = []
        sent: list[bytes] = []
        bob.receive(got.append, timeout=30, on_event=events.append,
                    until=lambda: bob.client.groups.state(gid) is not None)  # fmt: skip
        target = "#" + gid.hex()

        async def go() -> None:
            app = TitsApp(people.alice.path, broker=broker.url)
            async with app.run_test(size=(80, 24), notifications=True) as pilot:
                await ready(pilot)
                await until(pilot, lambda: "已連線" in screen_text(app))
                # Bob names Alice while she looks at the chat list: a notification, and "@"
                text = "@Alice 明天讀第三章"
                opts = await asyncio.to_thread(bob.options_for, target, text)
                assert opts.mentions == [people.alice.fingerprint]
                item = await asyncio.to_thread(bob.enqueue, target, text.encode(), "text",
                                               "text/plain", None, opts)  # fmt: skip
                await asyncio.to_thread(bob.flush_and_wait, [item], 30)
                sent.append(item)
                await until(pilot, lambda: app.notified, what="the notification")
                assert app.notified[0][1] == "提到了你"
                group = await until(
                    pilot,
                    lambda: next(
                        (r for r in rows(app) if r.chat.group == gid and r.chat.mentions), None
                    ),
                )
                await app.open_chat(group.chat)
                screen = app.screen
                assert isinstance(screen, ConversationScreen)
                await until(pilot, lambda: screen.members and screen.shown)
                line = screen.query_one("#line", Input)
                line.value = "謝謝 @B"  # completes from the members
                line.cursor_position = len(line.value)
                await until(pilot, lambda: line._suggestion == "謝謝 @Bob", what="@ completion")
                line.value = "/react thanks"
                await pilot.press("enter")
                line.value = "/announce 週四 8 點線上讀書"
                await pilot.press("enter")
                await until(pilot, lambda: "週四 8 點線上讀書" in screen_text(app))
                line.value = "/rep"
                await until(pilot, lambda: line._suggestion == "/reply", what="/ completion")
                line.value = "/reply 好，我帶零食"
                await pilot.press("enter")
                await until(pilot, lambda: "↩ " in screen_text(app), what="the quote")
                line.value = "/unsend"  # takes back that reply
                await pilot.press("enter")
                await until(pilot, lambda: "你 已收回訊息" in screen_text(app), what="收回")
                deadline = time.monotonic() + 60
                while await app.backend.work(app.backend.store.outbox):
                    assert time.monotonic() < deadline, "the outbox never emptied"
                    await pilot.pause(0.1)

        asyncio.run(go())

        def seen() -> bool:
            kinds = {type(e) for e in events}
            return {Reacted, Announced, Unsent} <= kinds

        bob.receive(got.append, timeout=60, on_event=events.append, until=seen)
        reacted = [e for e in events if isinstance(e, Reacted)]
        assert [(e.id, e.name, e.by) for e in reacted] == [
            (sent[0], "thanks", people.alice.fingerprint)
        ]
        ann = bob.store.extras.announcement(gid)
        assert ann is not None and ann.text == "週四 8 點線上讀書"
        (unsent,) = [e for e in events if isinstance(e, Unsent)]
        reply = bob.store.message(unsent.id)  # the reply quoted Bob's text, then went
        assert reply is not None and reply.unsent and reply.reply_to == sent[0]
    finally:
        bob.close()
