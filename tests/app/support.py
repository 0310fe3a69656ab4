"""Helpers for driving the app with Textual's pilot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from tits.app.app import TitsApp
from tits.app.widgets import ChatRow


def screen_text(app: TitsApp) -> str:
    """What the terminal shows, as lines of text (wide characters take their two cells)."""
    return "\n".join(s.text.rstrip() for s in app.screen._compositor.render_strips())


async def until(pilot: Pilot[Any], pred: Callable[[], Any], timeout: float = 30.0,
                what: str = "condition") -> Any:  # fmt: skip
    """Let the app run until `pred()` holds (no fixed sleeps: a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


async def ready(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, TitsApp)
    await asyncio.wait_for(app.ready.wait(), 60)
    await pilot.pause()


def rows(app: TitsApp) -> list[ChatRow]:
    return list(app.main.rows)
