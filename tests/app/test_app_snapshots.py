"""Snapshots of key screens (pytest-textual-snapshot), in zh-TW and English, from a home whose
store was filled directly and a fixed clock, so every run draws the same screen.

After a deliberate change of the look: `pytest tests/app/test_app_snapshots.py --snapshot-update`
and check the SVGs in __snapshots__/ (open them in a browser)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.app.homes import NOW, fill
from tests.app.support import ready, until
from tits.app.app import TitsApp
from tits.app.modals import HelpScreen
from tits.app.screens import ConversationScreen

LANGS = {"zh": "zh_TW.UTF-8", "en": "en_US.UTF-8"}


@pytest.fixture(params=list(LANGS))
def lang(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TITS_LANG", LANGS[request.param])
    return str(request.param)


def _app(tmp_path: Path, theme: str = "light") -> TitsApp:
    home = fill(tmp_path / "h")
    if theme != "light":
        (home / "app.toml").write_text(f'theme = "{theme}"\n')
    return TitsApp(home, offline=True, now=lambda: NOW, tz=UTC)


def _then(*keys: str, wait: Callable[[TitsApp], Any] | None = None):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        app = pilot.app
        assert isinstance(app, TitsApp)
        if keys:
            await pilot.press(*keys)
        if wait is not None:
            await until(pilot, lambda: wait(app))
        for i in app.screen.query(Input):
            i.cursor_blink = False
        await pilot.pause()

    return run_before


def test_chat_list(snap_compare: Any, tmp_path: Path, lang: str) -> None:
    assert snap_compare(_app(tmp_path), run_before=_then(), terminal_size=(80, 24))


def test_group_with_notices(snap_compare: Any, tmp_path: Path, lang: str) -> None:
    def opened(app: TitsApp) -> bool:
        return isinstance(app.screen, ConversationScreen) and bool(app.screen.notices)

    assert snap_compare(_app(tmp_path), run_before=_then("enter", wait=opened))


def test_direct_chat_with_hostile_text(snap_compare: Any, tmp_path: Path, lang: str) -> None:
    def opened(app: TitsApp) -> bool:
        return isinstance(app.screen, ConversationScreen) and len(app.screen.shown) == 3

    assert snap_compare(_app(tmp_path), run_before=_then("down", "enter", wait=opened))


def test_help(snap_compare: Any, tmp_path: Path, lang: str) -> None:
    def helped(app: TitsApp) -> bool:
        return isinstance(app.screen, HelpScreen)

    assert snap_compare(_app(tmp_path), run_before=_then("question_mark", wait=helped))


@pytest.mark.parametrize("theme", ["dark", "contrast"])
def test_chat_list_themes(snap_compare: Any, tmp_path: Path, theme: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("TITS_LANG", LANGS["zh"])
    assert snap_compare(_app(tmp_path, theme), run_before=_then())


def test_tiny_terminal(snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITS_LANG", LANGS["zh"])
    assert snap_compare(_app(tmp_path), run_before=_then(), terminal_size=(20, 10))


def test_group_with_mentions_reactions_and_announcement(
    snap_compare: Any, tmp_path: Path, lang: str
) -> None:
    from tests.app.homes import fill_gestures

    gids: list[bytes] = []
    home = fill(tmp_path / "h", group_id_out=gids)
    fill_gestures(home, gids[0])
    app = TitsApp(home, offline=True, now=lambda: NOW, tz=UTC)

    def opened(app: TitsApp) -> bool:
        s = app.screen
        return (
            isinstance(s, ConversationScreen)
            and len(s.shown) == 6
            and bool(s.query_one("#announcement").display)
            and s.view.is_vertical_scroll_end  # the newest message in view
        )

    assert snap_compare(app, run_before=_then("enter", wait=opened), terminal_size=(80, 34))


@pytest.fixture
def real_home() -> Any:
    """Alice's home with a real GnuPG keyring (Bob's public key in it), from the shared
    template of tests/broker_fixtures.py; its agent stopped afterwards."""
    import shutil

    from tests.broker_fixtures import _copy_home, _template
    from tests.support import kill_agent, short_tmpdir

    root = short_tmpdir("tk")
    alice = _copy_home(_template() / "alice", root / "alice")
    bob = _copy_home(_template() / "bob", root / "bob")
    yield alice.path, alice.fingerprint, bob.fingerprint
    kill_agent(alice.path / "gnupg")
    kill_agent(bob.path / "gnupg")
    shutil.rmtree(root, ignore_errors=True)


def test_key_change_banner(snap_compare: Any, real_home: Any, lang: str) -> None:
    from tests.app.homes import fill_key_changed

    home, me, bob = real_home
    fill_key_changed(home, me, bob)
    app = TitsApp(home, offline=True, now=lambda: NOW, tz=UTC)

    def opened(app: TitsApp) -> bool:
        s = app.screen
        return isinstance(s, ConversationScreen) and bool(s.query_one("#keywarn").display)

    assert snap_compare(app, run_before=_then("enter", wait=opened))


def test_pictures_stickers_and_the_sticker_picker(
    snap_compare: Any, tmp_path: Path, lang: str
) -> None:
    from tests.app.homes import fill_media
    from tits.app.modals import StickerPicker

    home = fill(tmp_path / "h")
    fill_media(home)
    app = TitsApp(home, offline=True, now=lambda: NOW, tz=UTC)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("down", "enter")  # Bob's chat: a picture and a sticker last

        def opened() -> bool:
            s = app.screen
            return (
                isinstance(s, ConversationScreen)
                and len(s.shown) == 5
                and (s.view.is_vertical_scroll_end)
            )

        await until(pilot, opened)
        line = app.screen.query_one("#line", Input)
        line.cursor_blink = False
        line.value = "/sticker"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, StickerPicker))
        await pilot.pause()

    assert snap_compare(app, run_before=run_before, terminal_size=(80, 30))
