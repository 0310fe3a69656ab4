"""The app on a home whose store was filled directly, without a broker (`offline=True`): the
chat list, opening a chat, keys, slash commands, themes, hostile text, tiny terminals."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from pathlib import Path

import pytest
from rich.cells import cell_len
from textual.widgets import Input

from tests.app.homes import BOB, CAROL, NOW, fill
from tests.app.support import ready, rows, screen_text, until
from tits.app.app import TitsApp
from tits.app.modals import HelpScreen
from tits.app.screens import ConversationScreen
from tits.app.settings import Settings
from tits.client.store import LocalStore


@pytest.fixture(autouse=True)
def _zh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITS_LANG", "zh_TW.UTF-8")


def make_app(home: Path) -> TitsApp:
    return TitsApp(home, offline=True, now=lambda: NOW, tz=UTC)


def test_chat_list_shows_last_messages_times_and_unread(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            chats = rows(app)
            assert [r.chat.unread for r in chats] == [1, 2, 0]
            assert chats[0].chat.group is not None and chats[1].chat.peer == BOB
            text = screen_text(app)
            assert "讀書會 📚 (3)" in text and "下午 02:02" in text and "上午 09:06" in text
            assert "10/22" in text  # an older chat shows its date
            # hostile text is shown as typed: no markup applied, ESC and RLO made visible
            assert "[bold]不是標記[/] ␛[2K<U+202E>evil" in text
            assert "\x1b" not in text and "\u202e" not in text

    asyncio.run(go())


def test_opening_a_chat_clears_its_unread_count_and_shows_sides(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("down", "enter")
            screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                 and app.screen.shown and app.screen)  # fmt: skip
            bubbles = list(screen.shown.values())
            assert [b.mine for b in bubbles] == [True, False, False]
            text = screen_text(app)
            assert "── 昨天 ──" in text and "── 今天 ──" in text and "已傳送  下午 10:10" in text
            # yours on the right, theirs on the left
            mine_line = next(ln for ln in text.splitlines() if "晚安 🌙" in ln)
            theirs_line = next(ln for ln in text.splitlines() if "早安！" in ln)
            assert mine_line.index("晚安") > 40 > theirs_line.index("早安")
            await pilot.press("escape")
            await until(pilot, lambda: [r.chat.unread for r in rows(app)] == [1, 0, 0])
        store = LocalStore(home)
        try:
            assert set(store.unread_counts().values()) == {1}  # the group's is still unread
        finally:
            store.close()

    asyncio.run(go())


def test_a_group_shows_membership_notices_centred(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("enter")
            await until(
                pilot, lambda: isinstance(app.screen, ConversationScreen) and app.screen.notices
            )
            text = screen_text(app)
            assert "我 建立了群組「讀書會 📚」" in text
            line = next(ln for ln in text.splitlines() if "我 邀請 小美、bob 加入群組" in ln)
            left = len(line) - len(line.lstrip())
            assert left > 10  # centred, not at the left edge

    asyncio.run(go())


def test_keys_next_unread_help_search_and_escape(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("n")  # from the first (unread) row to the next unread one
            assert app.main.chat_list.highlighted == 1
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            text = screen_text(app)
            assert "下一個未讀聊天" in text and "/theme light|dark|contrast" in text
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("enter")
            screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                 and app.screen.shown and app.screen)  # fmt: skip
            await pilot.press("ctrl+f")
            for ch in "早安":
                await pilot.press(ch)
            await pilot.press("enter")
            await until(pilot, lambda: [b for b in screen.shown.values() if b.hit])
            hits = [b.message.text for b in screen.shown.values() if b.hit]
            assert hits == ["早安！今天要開會嗎？"]
            await pilot.press("escape")  # closes the search
            assert isinstance(app.screen, ConversationScreen)
            await pilot.press("pageup", "pagedown")
            await pilot.press("escape")  # back to the list
            assert app.screen is app.main

    asyncio.run(go())


def test_slash_commands_theme_pin_unknown_and_offline_send(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await ready(pilot)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen))
            screen = app.screen
            assert isinstance(screen, ConversationScreen)

            async def type_line(line: str) -> None:
                screen.query_one("#line").value = line  # type: ignore[attr-defined]
                await pilot.press("enter")
                await pilot.pause()

            await type_line("/theme dark")
            assert app.theme == "tits-dark"
            await type_line("/theme purple")
            assert app.theme == "tits-dark"
            await type_line("/frobnicate")
            await type_line("/pin")
            await type_line("hello")  # offline: not sent, said so
            notes = [n.message for n in app._notifications]
            assert "用法：/theme light|dark|contrast" in notes
            assert "沒有「/frobnicate」這個指令，輸入 /help 查看" in notes
            assert "已置頂" in notes and "離線模式：無法傳送訊息" in notes
            await type_line("/help")
            assert isinstance(app.screen, HelpScreen)
        s = Settings.load(home)
        assert s.theme == "dark" and len(s.pinned) == 1
        # remembered: the next start uses them
        app2 = make_app(home)
        async with app2.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            assert app2.theme == "tits-dark"
            assert rows(app2)[0].pinned

    asyncio.run(go())


def test_wide_characters_line_up(tmp_path: Path) -> None:
    """CJK and emoji take two cells each: the times in the chat list end in one column."""
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            lines = screen_text(app).splitlines()
            timed = [ln for ln in lines if ln.endswith(("下午 02:02", "上午 09:06", "10/22"))]
            assert len(timed) == 3
            assert {cell_len(ln) for ln in timed} == {79}  # one cell of padding on the right

    asyncio.run(go())


@pytest.mark.parametrize("size", [(20, 10), (10, 5), (80, 24), (200, 60)])
def test_small_and_large_terminals_draw_without_a_traceback(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=size) as pilot:
            await ready(pilot)
            await pilot.press("question_mark", "escape", "enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen))
            screen_text(app)
            await pilot.press("escape")
            await pilot.resize_terminal(20, 10)
            await pilot.pause()
            screen_text(app)
        assert app.return_code in (0, None)

    asyncio.run(go())


def test_english(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITS_LANG", "en_US.UTF-8")
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            text = screen_text(app)
            assert "Chats" in text and "Friends" in text and "2:02 PM" in text
            assert "聊天" not in text and "下午" not in text

    asyncio.run(go())


def test_friends_list_marks_verified_contacts(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(100, 24)) as pilot:
            await ready(pilot)
            await pilot.press("2")
            await pilot.pause()
            text = screen_text(app)
            bob = next(ln for ln in text.splitlines() if "bob" in ln)
            carol = next(ln for ln in text.splitlines() if "小美" in ln)
            assert "✓ 已驗證" in bob and "✓" not in carol
            assert CAROL[:4] in carol

    asyncio.run(go())


def test_enter_on_a_friend_opens_the_chat_and_ctrl_c_says_how_to_quit(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await ready(pilot)
            await pilot.press("2", "enter")  # the friends are sorted by name: bob first
            screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                 and len(app.screen.shown) == 3 and app.screen)  # fmt: skip
            assert screen.chat.peer == BOB and screen.target == BOB
            await pilot.press("ctrl+c")
            assert "按 Ctrl+Q 離開" in [n.message for n in app._notifications]
            await pilot.press("ctrl+q")
        assert app.return_code == 0

    asyncio.run(go())


class _OffLoopOnly:
    """A store connection that fails any statement run on the app's (main) thread."""

    def __init__(self, db: object, seen: list[str]) -> None:
        self._db = db
        self._seen = seen

    def _check(self) -> None:
        import threading

        self._seen.append(threading.current_thread().name)
        assert threading.current_thread() is not threading.main_thread(), "store read on the loop"

    def execute(self, *a: object) -> object:
        self._check()
        return self._db.execute(*a)  # type: ignore[attr-defined]

    def executemany(self, *a: object) -> object:
        self._check()
        return self._db.executemany(*a)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def test_the_store_is_never_read_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fill(tmp_path / "h")
    seen: list[str] = []
    original = LocalStore.__init__

    def init(self: LocalStore, path: Path) -> None:
        original(self, path)
        self.db = _OffLoopOnly(self.db, seen)  # type: ignore[assignment]

    monkeypatch.setattr(LocalStore, "__init__", init)

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("enter")
            screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                 and app.screen.shown and app.screen)  # fmt: skip
            await pilot.press("ctrl+f", *"hi", "enter", "escape", "pageup", "escape", "n", "p")
            await pilot.press("down", "enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                        and app.screen is not screen)  # fmt: skip
            await pilot.press("escape", "2", "enter")
            await pilot.pause()
        assert app.return_code in (0, None)

    asyncio.run(go())
    assert seen and all(name.startswith("tits-app-store") for name in seen), set(seen)


def test_an_unsent_message_shows_only_its_notice(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("down", "down", "enter")  # dave: an unsent message, then one
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                        and len(app.screen.shown) == 2)  # fmt: skip
            line = next(ln for ln in screen_text(app).splitlines() if "已收回訊息" in ln)
            assert line.strip() == "dave 已收回訊息" and line.index("dave") > 20  # centred

    asyncio.run(go())


def test_mentions_reactions_announcement_and_lifetimes_are_drawn(tmp_path: Path) -> None:
    from tests.app.homes import fill_gestures

    gids: list[bytes] = []
    home = fill(tmp_path / "h", group_id_out=gids)
    fill_gestures(home, gids[0])

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 30)) as pilot:
            await ready(pilot)
            group = next(r for r in rows(app) if r.chat.group == gids[0])
            assert group.chat.mentions == 1 and group.chat.unread == 4
            assert " @ " in screen_text(app)  # the chat list's "someone named you"
            await app.open_chat(group.chat)
            await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                        and len(app.screen.shown) == 6)  # fmt: skip
            await until(pilot, lambda: "📢 公告" in screen_text(app), what="the 公告 bar")
            text = screen_text(app)
            assert "📢 公告  小美: 週六晚上 7 點 聚餐 🍲" in text  # pinned at the top
            assert "@ @我 週六有空嗎？" in text  # highlighted for me
            assert "❤️ 1  😆 1" in text  # under my welcome
            assert "⏱ 10 分鐘" in text and "訊息已過期" in text
            assert "已讀 2" in text  # two members read my welcome
            assert "↩ 小美: 大家好 👋 我是小美" in text  # Bob's reply quotes her
            screen = app.screen
            assert isinstance(screen, ConversationScreen)
            await pilot.press("ctrl+r")  # jump to what the newest reply answers
            await until(pilot, lambda: screen.shown[(4).to_bytes(16, "big")].hit)
            # shown now: its lifetime counts from here, and it goes when that runs out
            store = app.backend.store
            later = time.time() + 601
            assert await app.backend.work(store.extras.expire, later) == [(9).to_bytes(16, "big")]
            assert (await app.backend.work(store.extras.mention_counts, "A" * 40)) == {}

    asyncio.run(go())


def test_lifetime_react_and_announce_commands_offline(tmp_path: Path) -> None:
    home = fill(tmp_path / "h")

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await ready(pilot)
            await pilot.press("enter")
            screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                 and app.screen)  # fmt: skip
            line = screen.query_one("#line", Input)
            line.value = "/lifetime 10m"
            await pilot.press("enter")
            assert screen.lifetime_s == 600 and "10 分鐘" in line.placeholder
            line.value = "/lifetime 3s"  # under the shortest
            await pilot.press("enter")
            assert screen.lifetime_s == 600
            line.value = "/react bomb"
            await pilot.press("enter")
            line.value = "/announce 明天放假"
            await pilot.press("enter")
            line.value = "/lifetime off"
            await pilot.press("enter")
            await pilot.pause()
            notes = [n.message for n in app._notifications]
            assert "用法：/lifetime 30s|10m|2h|1d|off" in notes
            assert "用法：/react like|love|haha|wow|sad|thanks" in notes
            assert "離線模式：無法傳送" in notes  # nothing goes out offline
            assert screen.lifetime_s == 0 and line.placeholder == "輸入訊息"

    asyncio.run(go())


def test_pictures_stickers_and_the_picker(tmp_path: Path) -> None:
    from tests.app.homes import fill_media
    from tits.app.modals import StickerPicker

    home = fill(tmp_path / "h")
    conv = fill_media(home)

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 40), notifications=True) as pilot:
            await ready(pilot)
            bob = next(r for r in rows(app) if r.chat.conv == conv)
            await app.open_chat(bob.chat)
            screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                 and len(app.screen.shown) == 5 and app.screen)  # fmt: skip
            text = screen_text(app)
            assert "[圖片] 夜市.jpg  2.3 MB" in text
            assert "(♥‿♥)" in text  # the sticker, drawn from our own built-in pack
            line = screen.query_one("#line", Input)
            line.value = "/sticker"
            await pilot.press("enter")
            picker = await until(pilot, lambda: isinstance(app.screen, StickerPicker)
                                 and app.screen)  # fmt: skip
            assert "表情" in screen_text(app) and "(^_^)" in screen_text(app)
            await pilot.press("right")  # the next pack's tab
            await until(pilot, lambda: "[OK ✓]" in screen_text(app))
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is screen)
            assert picker not in app.screen_stack
            line.value = "(love)"  # a shortcode alone is the sticker: offline, said so
            await pilot.press("enter")
            await until(
                pilot, lambda: "離線模式：無法傳送" in [n.message for n in app._notifications]
            )
            assert line.value == ""

    asyncio.run(go())


def test_a_picture_opens_on_the_whole_screen_from_its_signed_thumbnail(tmp_path: Path) -> None:
    """Ctrl+O opens the newest picture (not the sticker after it): its signed thumbnail at
    once; offline, the picture itself cannot come and the screen says so; Esc goes back."""
    from tests.app.homes import fill_media
    from tits.app.picture import PictureScreen

    home = fill(tmp_path / "h")
    conv = fill_media(home)

    async def go() -> None:
        app = make_app(home)
        async with app.run_test(size=(80, 30)) as pilot:
            await ready(pilot)
            bob = next(r for r in rows(app) if r.chat.conv == conv)
            await app.open_chat(bob.chat)
            screen = await until(pilot, lambda: isinstance(app.screen, ConversationScreen)
                                 and len(app.screen.shown) == 5 and app.screen)  # fmt: skip
            await pilot.press("ctrl+o")
            pic = await until(pilot, lambda: isinstance(app.screen, PictureScreen) and app.screen)
            assert pic.manifest is not None and pic.manifest.name == "夜市.jpg"
            await until(pilot, lambda: "不在這台裝置上" in screen_text(app), what="offline state")
            widget = pic.query_one("#picture")
            assert getattr(widget, "image", None) is not None  # the thumbnail, decoded
            assert widget.image.size == (32, 16)  # type: ignore[attr-defined]
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is screen)

    asyncio.run(go())
