"""The app's own settings, HOME/app.toml: what the app remembers that no protocol carries.

theme = "light"            # light | dark | contrast
pinned = ["<conv hex>"]    # 置頂: shown first in the chat list
muted = ["<conv hex>"]     # 靜音: no bell, unread count shown grey
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tits.config import read_toml, write_toml
from tits.errors import TitsError

THEMES = ("light", "dark", "contrast")


@dataclass
class Settings:
    path: Path
    theme: str = "light"
    pinned: list[str] = field(default_factory=list)
    muted: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, home: Path) -> Settings:
        path = home / "app.toml"
        try:
            data = read_toml(path)
        except (TitsError, OSError, ValueError):
            data = {}  # a damaged settings file must not keep the app from opening
        theme = data.get("theme", "light")
        return cls(
            path=path,
            theme=theme if theme in THEMES else "light",
            pinned=[str(x) for x in data.get("pinned", []) if isinstance(x, str)],
            muted=[str(x) for x in data.get("muted", []) if isinstance(x, str)],
        )

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_toml(self.path, {"theme": self.theme, "pinned": self.pinned, "muted": self.muted})

    def reread(self) -> None:
        """What another process (`tits pin` beside a running app) wrote since: read again
        before a change, so that the change is made on it, not over it."""
        now = Settings.load(self.path.parent)
        self.theme, self.pinned, self.muted = now.theme, now.pinned, now.muted

    def set_theme(self, theme: str) -> None:
        self.reread()
        self.theme = theme
        self.save()

    def set(self, which: str, conv: bytes, on: bool) -> bool:
        """Pin or mute a chat (`on`), or undo it; returns whether that changed anything
        (saved only then)."""
        self.reread()
        items: list[str] = getattr(self, which)
        key = conv.hex()
        if (key in items) == on:
            return False
        if on:
            items.append(key)
        else:
            items.remove(key)
        self.save()
        return True

    def toggle(self, which: str, conv: bytes) -> bool:
        """Pin or mute (`which` = "pinned" | "muted") a chat, or undo it; returns the new state."""
        self.reread()
        items: list[str] = getattr(self, which)
        key = conv.hex()
        if key in items:
            items.remove(key)
            on = False
        else:
            items.append(key)
            on = True
        self.save()
        return on
