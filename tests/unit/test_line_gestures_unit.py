"""The pure parts of LINE's gestures: @tokens, completion, lifetimes, the app's commands, and
the terminal notification sequence (which must never let a sender's name end it early)."""

from __future__ import annotations

import pytest

from tits.app import notify
from tits.app.commands import CommandError, parse
from tits.client import mentions
from tits.client.controls import (
    clean_announcement,
    lifetime_seconds,
    reaction_payload,
    read_announcement,
    read_reaction,
)
from tits.errors import VerificationError

BOB, CAROL = "B0B0" * 10, "C0C0" * 10
MEMBERS = {BOB: ["bob", "Bob Chen"], CAROL: ["小美"]}


def test_tokens_start_a_word_and_drop_trailing_punctuation() -> None:
    assert mentions.tokens("@bob 你好，@小美！寄到 a@b.tw") == ["bob", "小美"]
    assert mentions.find("謝謝@小美幫忙", MEMBERS).members == [CAROL]  # no space in Chinese
    assert mentions.find("@bobby @Bob Chen", MEMBERS).members == [BOB]  # whole names only
    assert mentions.tokens("@ x @") == []


def test_find_names_members_all_and_reports_outsiders() -> None:
    f = mentions.find("@BOB 和 @小美，@All 一起來", MEMBERS)
    assert f.members == [BOB, CAROL] and f.everyone and f.outsiders == []
    assert mentions.find("@所有人", MEMBERS).everyone
    known = {"mallory": "F" * 40}.get
    f = mentions.find("@mallory @nobody", MEMBERS, known)
    assert f.members == [] and f.outsiders == ["mallory"]  # @nobody is just text
    assert mentions.find(f"@{BOB.lower()}", MEMBERS).members == [BOB]  # by fingerprint


def test_completions_offer_all_first() -> None:
    assert mentions.completions("", MEMBERS)[0] == "All"
    assert mentions.completions("b", MEMBERS) == ["Bob Chen", "bob"]
    assert mentions.completions("小", MEMBERS) == ["小美"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("45", 45), ("7d", 604800),
     ("4s", None), ("8d", None), ("-5m", None), ("m", None), ("1.5h", None), ("9" * 30, None)],
)  # fmt: skip
def test_lifetimes(text: str, seconds: int | None) -> None:
    assert lifetime_seconds(text) == seconds


def test_reaction_and_announcement_payloads() -> None:
    mid = b"\x01" * 16
    assert read_reaction(reaction_payload(mid, "love")) == (mid, "love")
    assert read_reaction(reaction_payload(mid, "")) == (mid, "")
    for bad in (reaction_payload(mid, "💣"), reaction_payload(b"x", "love"), b"\xc1", b""):
        with pytest.raises(VerificationError):
            read_reaction(bad)
    assert clean_announcement("  週六\n  聚餐 ") == "週六 聚餐"
    for bad_text in ("x" * 501, "a\u202eb", "\x1b[2J"):
        with pytest.raises(ValueError):
            clean_announcement(bad_text)
    with pytest.raises(VerificationError):
        read_announcement(b"\xff\xfe")


def test_app_commands() -> None:
    assert parse("/announce 明天  放假").args == ["明天  放假"]
    assert parse("/announce").args == []
    assert parse("/react LOVE").args == ["love"]
    assert parse("/lifetime 10m").args == ["10m"] and parse("/lifetime off").args == ["off"]
    for bad in ("/react", "/react bomb", "/lifetime", "/lifetime 3s", "/lifetime 1 2"):
        with pytest.raises(CommandError):
            parse(bad)


@pytest.mark.parametrize(
    ("env", "start"),
    [({"TERM_PROGRAM": "iTerm.app"}, "\x1b]9;"), ({"WT_SESSION": "1"}, "\x1b]9;"),
     ({"TERM": "xterm-kitty"}, "\x1b]9;"), ({"VTE_VERSION": "7600"}, "\x1b]777;notify;"),
     ({"TERM": "foot"}, "\x1b]777;notify;"), ({"TERM": "xterm-256color"}, "\a")],
)  # fmt: skip
def test_notification_sequence_per_terminal(env: dict[str, str], start: str) -> None:
    seq = notify.sequence(env, "ω IM", "Bob 傳來訊息")
    assert seq.startswith(start) and seq.endswith("\a")


def test_a_hostile_name_cannot_end_the_sequence_or_start_another() -> None:
    seq = notify.sequence({"VTE_VERSION": "1"}, "ω IM", "a;b\x1b]0;pwned\a\x9bc 傳來訊息")
    body = seq[len("\x1b]777;notify;") : -len("\x1b\\\a")]
    assert "\x1b" not in body and "\a" not in body and "\x9b" not in body
    assert body.count(";") == 1  # only the separator between title and body


def test_reply_unsend_and_command_completion() -> None:
    from tits.app.commands import complete

    assert parse("/reply 好啊 一起去").args == ["好啊 一起去"]
    for bad in ("/reply", "/unsend x"):
        with pytest.raises(CommandError):
            parse(bad)
    assert complete("/an") == "/announce" and complete("/un") == "/unsend"
    assert complete("/l") is None  # /leave or /lifetime: not yet one
    assert complete("/announce") is None and complete("hello") is None
