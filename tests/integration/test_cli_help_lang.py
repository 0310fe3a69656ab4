"""`tits … --help` as a new user reads it: one language under zh_TW.UTF-8, the other under
en_US.UTF-8, defaults written as `[…]` shown rather than eaten by Rich markup, and no
`<bool>` next to a flag. Run as the real program, in a child process per locale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(400)  # a child process per help, on a loaded machine

CJK = re.compile(r"[\u3400-\u9fff]")
ENGLISH_PHRASE = re.compile(r"\b[A-Za-z]{2,}[,;:]?(?: [A-Za-z']{2,}[,;:.]?){2,}")  # 3 words

COMMANDS = [
    [],
    ["send"],
    ["recv"],
    ["unsend"],
    ["key", "fetch"],
    ["group", "create"],
    ["cloud", "up"],
    ["config", "set"],
]


def _help(args: list[str], lang: str, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "TITS_LANG"))}
    env.update(LANG=lang, LANGUAGE="", COLUMNS="100", TITS_HOME=str(home), NO_COLOR="1")
    out = subprocess.run(
        [sys.executable, "-m", "tits.cli", *args, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    home = tmp_path_factory.mktemp("home")
    return {
        (" ".join(args), lang): _help(args, lang, home)
        for args in COMMANDS
        for lang in ("zh_TW.UTF-8", "en_US.UTF-8")
    }


def _prose(text: str) -> str:
    """The help without its usage line and without what is typed as it is (commands,
    options, metavars)."""
    lines = [line for line in text.splitlines() if "Usage:" not in line and "用法：" not in line]
    text = "\n".join(lines)
    return re.sub(r"`[^`]*`|--?[\w-]+|<\w+>|\btits( [a-z-]+)+", " ", text)


@pytest.mark.parametrize("args", [" ".join(a) for a in COMMANDS])
def test_help_is_in_one_language(helps: dict[tuple[str, str], str], args: str) -> None:
    zh, en = helps[(args, "zh_TW.UTF-8")], helps[(args, "en_US.UTF-8")]
    assert not CJK.search(en), f"Chinese in the English help of `tits {args}`:\n{en}"
    assert CJK.search(zh)
    phrases = ENGLISH_PHRASE.findall(_prose(zh))
    assert not phrases, f"English in the Chinese help of `tits {args}`: {phrases}\n{zh}"
    for text in (zh, en):
        assert "<bool>" not in text
    assert "<str>" not in zh and "<path>" not in zh


def test_defaults_in_brackets_are_shown(helps: dict[tuple[str, str], str]) -> None:
    assert "[$TITS_HOME, then ~/.tits]" in helps[("", "en_US.UTF-8")]
    assert "$TITS_HOME" in helps[("", "zh_TW.UTF-8")]
    fetch = helps[("key fetch", "en_US.UTF-8")]
    assert "[from the email]" in fetch and "[the home's keyserver]" in fetch
    assert "[required]" in fetch
    send_zh = helps[("send", "zh_TW.UTF-8")]
    assert "［預設：30.0］" in send_zh and "［必填］" in send_zh
    assert "[default: 30.0]" in helps[("send", "en_US.UTF-8")]


def test_panels_and_the_help_line_are_translated(helps: dict[tuple[str, str], str]) -> None:
    zh, en = helps[("", "zh_TW.UTF-8")], helps[("", "en_US.UTF-8")]
    assert "選項" in zh and "指令" in zh and "顯示這份說明後結束" in zh
    assert "Options" in en and "Commands" in en and "Show this message and exit." in en


def _run(args: list[str], lang: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "TITS_LANG"))}
    env.update(LANG=lang, LANGUAGE="", COLUMNS="100", TITS_HOME=str(home), NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "zh", "en"),
    [
        (["send"], "缺少參數 'who'。", "Missing argument 'who'."),
        (["sned"], "沒有這個指令 'sned'。", "No such command 'sned'."),
        (["send", "x", "--timeout", "abc"], "'--timeout' 的值不對：必須是數字", "'--timeout'"),
    ],
)
def test_usage_errors_are_in_one_language(
    tmp_path: Path, args: list[str], zh: str, en: str
) -> None:
    got_zh = _run(args, "zh_TW.UTF-8", tmp_path)
    got_en = _run(args, "en_US.UTF-8", tmp_path)
    assert got_zh.returncode == got_en.returncode == 2
    assert zh in got_zh.stderr and "錯誤" in got_zh.stderr and "用法：" in got_zh.stderr
    assert not ENGLISH_PHRASE.findall(_prose(got_zh.stderr)), got_zh.stderr
    assert en in got_en.stderr and not CJK.search(got_en.stderr)


@pytest.mark.parametrize(
    ("module", "parse"),
    [
        ("tits.broker.main", "parse_args(['--help'])"),
        ("tits.keyd.main", "parser().parse_args(['--help'])"),
    ],
)
def test_the_daemons_help_is_in_one_language(tmp_path: Path, module: str, parse: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "TITS_LANG"))}
    code = f"from {module} import *; {parse}"
    helps = {}
    for lang in ("zh_TW.UTF-8", "en_US.UTF-8"):
        env.update(LANG=lang, LANGUAGE="", COLUMNS="100")
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        helps[lang] = out.stdout
    zh, en = helps["zh_TW.UTF-8"], helps["en_US.UTF-8"]
    assert zh.startswith("用法：") and "選項" in zh and "顯示這份說明後結束" in zh
    assert en.startswith("usage:") and "show this help message and exit" in en
    assert not CJK.search(en)
    assert not ENGLISH_PHRASE.findall(_prose(zh.split("\n\n", 1)[1])), zh
