"""HOME/app.toml has two writers: the running app and `tits pin` / `tits mute`. Neither may
undo what the other just wrote."""

from __future__ import annotations

from pathlib import Path

from tits.app.settings import Settings

A, B = b"\x0a" * 16, b"\x0b" * 16


def test_a_pin_made_beside_a_running_app_survives_the_apps_next_change(tmp_path: Path) -> None:
    app = Settings.load(tmp_path)  # what the app read when it opened
    assert Settings.load(tmp_path).set("pinned", A, True)  # `tits pin A` while it runs
    app.toggle("muted", B)  # then the app mutes B
    app.set_theme("dark")
    after = Settings.load(tmp_path)
    assert after.pinned == [A.hex()] and after.muted == [B.hex()] and after.theme == "dark"


def test_an_unpin_beside_the_app_is_not_undone_either(tmp_path: Path) -> None:
    Settings.load(tmp_path).set("pinned", A, True)
    app = Settings.load(tmp_path)
    assert Settings.load(tmp_path).set("pinned", A, False)  # `tits unpin A`
    assert app.toggle("pinned", B) is True
    assert Settings.load(tmp_path).pinned == [B.hex()]


def test_a_damaged_file_opens_as_defaults(tmp_path: Path) -> None:
    (tmp_path / "app.toml").write_text("pinned = [1, 2\n")
    s = Settings.load(tmp_path)
    assert (s.theme, s.pinned, s.muted) == ("light", [], [])
