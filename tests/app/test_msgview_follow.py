"""The message view follows the newest message when an item taller than what was left of the
screen arrives (a picture's preview): found in a real 80×24 terminal, where the messages after a
preview stopped showing."""

from __future__ import annotations

import asyncio
from datetime import UTC

from rich.text import Text
from textual.app import App, ComposeResult

from tits.app.media import Visual
from tits.app.msgview import MessageView, MsgItem
from tits.client.model import Message


def item(n: int, *, tall: int = 0) -> MsgItem:
    m = Message(id=n.to_bytes(16, "big"), conv=b"c" * 16, sender="B" * 40, to=["A" * 40],
                group=None, kind="media" if tall else "text", text=None if tall else f"訊息 {n}",
                verified=True, ts=1_700_000_000_000 + n)  # fmt: skip
    visual = Visual("[圖片] photo.png", [Text("▀" * 24)] * tall) if tall else None
    return MsgItem(m, "bob", mine=False, visual=visual)


class OneView(App[None]):
    def compose(self) -> ComposeResult:
        yield MessageView(UTC, id="log")


def test_a_tall_item_then_a_text_both_show_at_the_bottom() -> None:
    async def go() -> None:
        app = OneView()
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(MessageView)
            view.set_items([item(1), item(2)])  # fits: nothing to scroll
            await pilot.pause()
            assert view.max_scroll_y == 0
            view.append([item(3, tall=12)])  # now taller than the screen
            await pilot.pause()
            view.append([item(4)])
            await pilot.pause()
            assert view.scroll_y == view.max_scroll_y > 0
            shown = "\n".join(s.text for s in app.screen._compositor.render_strips())
            assert "訊息 4" in shown and "[圖片] photo.png" in shown

    asyncio.run(go())


def test_a_reader_scrolled_up_is_left_where_they_are() -> None:
    async def go() -> None:
        app = OneView()
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(MessageView)
            view.set_items([item(n) for n in range(1, 20)])
            await pilot.pause()
            view.scroll_to(y=0, animate=False, immediate=True)
            await pilot.pause()
            view.append([item(20)])
            await pilot.pause()
            assert view.scroll_y == 0

    asyncio.run(go())
