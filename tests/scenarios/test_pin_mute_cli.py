"""`tits pin` and `tits mute` (置頂, 靜音) as a user runs them: the real binary, the state the
app's chat list reads (HOME/app.toml), and a clear refusal for a chat that is not one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.broker_fixtures import People, people_fixture  # noqa: F401 - fixtures
from tits.app.settings import Settings
from tits.client.blocking import Messenger
from tits.contacts import Contacts
from tits.session import direct_conversation_id


def tits(home: Path, *args: str, lang: str = "zh_TW.UTF-8") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TITS_LANG", "LANGUAGE", "LC_ALL")}
    env.update(LANG=lang, COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def test_pin_and_mute_a_chat_and_a_group(people: People) -> None:
    home, a, b = people.alice.path, people.alice, people.bob
    Contacts(home).add("bob", b.fingerprint)
    with Messenger(people.alice) as m:
        group = m.group_create("家人").hex()
    direct = direct_conversation_id(a.fingerprint, b.fingerprint).hex()

    got = json.loads(ok(tits(home, "pin", "@bob", "--json")))
    assert got == {"kind": "pinned", "chat": b.fingerprint, "conv": direct, "pinned": True,
                   "changed": True}  # fmt: skip
    assert Settings.load(home).pinned == [direct]  # what the app's chat list puts first
    again = json.loads(ok(tits(home, "pin", "@bob", "--json")))
    assert again["pinned"] and not again["changed"]  # pinning twice is no toggle
    assert Settings.load(home).pinned == [direct]

    assert "已將 #家人 設為靜音" in ok(tits(home, "mute", "#家人"))
    settings = Settings.load(home)
    assert settings.muted == [group] and settings.pinned == [direct]

    assert "is no longer pinned" in ok(tits(home, "pin", "@bob", "--off", lang="en_US.UTF-8"))
    assert Settings.load(home).pinned == []
    assert "已取消" in ok(tits(home, "unmute", "#家人"))
    assert Settings.load(home).muted == []
    off = json.loads(ok(tits(home, "mute", "@bob", "--off", "--json")))
    assert off["muted"] is False and off["changed"] is False  # nothing to undo, no error


def test_an_unknown_chat_is_refused_clearly(people: People) -> None:
    home = people.alice.path
    for args, words in (
        (("pin", "@nobody"), "nobody"),
        (("mute", "#沒這群"), "沒這群"),
    ):
        r = tits(home, *args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert words in r.stderr and "錯誤" in r.stderr
    r = tits(home, "pin", "D" * 40, lang="en_US.UTF-8")  # a fingerprint never talked with
    assert r.returncode == 1 and "no chat with" in r.stderr
    assert not (home / "app.toml").exists()  # nothing was set
