"""`tits config`: each setting checked, remembered in the home, and used (lang, receipts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.broker_fixtures import People, people_fixture  # noqa: F401 - fixtures
from tests.conftest import kill_agent


def tits(home: Path, *args: str, lang: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TITS_LANG", "LANGUAGE", "LC_ALL")}
    env.update(LANG=lang or "zh_TW.UTF-8", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_settings_are_checked_remembered_and_used(people: People) -> None:
    home = people.alice.path
    r = tits(home, "config", "set", "receipts", "maybe")
    assert r.returncode != 0 and "receipts" in r.stderr and "Traceback" not in r.stderr
    r = tits(home, "config", "set", "colour", "red")
    assert r.returncode != 0 and "colour" in r.stderr
    assert tits(home, "config", "set", "receipts", "off").returncode == 0
    assert tits(home, "config", "get", "receipts").stdout.strip() == "False"
    # the locale says zh_TW: Chinese; the home says en: English, whatever the locale
    assert "沒有這個設定" in tits(home, "config", "get", "nope").stderr
    assert tits(home, "config", "set", "lang", "en").returncode == 0
    assert "no such setting" in tits(home, "config", "get", "nope").stderr
    assert tits(home, "config", "set", "lang", "zh-TW").returncode == 0
    # a locale that is neither Chinese nor C is English; C (or none) is zh-TW first
    assert tits(home, "config", "set", "lang", "en").returncode == 0


def test_secure_chat_rotation_is_a_setting_with_bounds(people: People, tmp_path: Path) -> None:
    """`rotate_after` and `rotate_messages` (issue 9: "after a configurable period and message
    count"): checked at `set`, and what the client's keyring then uses for the keys it makes."""
    from tits.client.client import Client
    from tits.home import Home

    home = tmp_path / "mallory"  # a copy: the people are shared with other tests
    shutil.copytree(people.mallory.path, home, ignore=shutil.ignore_patterns("S.*", "*.lock"))
    for key, bad in (("rotate_after", "5m"), ("rotate_after", "40d"), ("rotate_after", "12"),
                     ("rotate_messages", "0"), ("rotate_messages", "many")):  # fmt: skip
        r = tits(home, "config", "set", key, bad)
        assert r.returncode != 0 and key in r.stderr and "Traceback" not in r.stderr, (key, bad)
    assert "時間長度" in tits(home, "config", "set", "rotate_after", "1y").stderr
    assert tits(home, "config", "set", "rotate_after", "12h").returncode == 0
    assert tits(home, "config", "set", "rotate_messages", "50").returncode == 0
    assert tits(home, "config", "get", "rotate_after").stdout.strip() == "43200"
    client = Client(Home(home))
    try:
        assert (client.keyring.rotate_s, client.keyring.rotate_messages) == (43200.0, 50)
    finally:
        client.store.close()
        kill_agent(home / "gnupg")
