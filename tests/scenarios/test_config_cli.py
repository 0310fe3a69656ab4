"""`tits config`: each setting checked, remembered in the home, and used (lang, receipts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.broker_fixtures import People, people_fixture  # noqa: F401 - fixtures


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
