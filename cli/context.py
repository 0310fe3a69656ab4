"""Per-invocation state shared by the commands: which home, loaded lazily."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import typer

from tits.home import Home, resolve_home


@dataclass
class State:
    home_arg: Path | None = None

    @cached_property
    def home(self) -> Home:
        return Home(resolve_home(self.home_arg))

    @staticmethod
    def of(ctx: typer.Context) -> State:
        root = ctx.find_root()
        if not isinstance(root.obj, State):
            root.obj = State()
        return root.obj
