"""Errors in the reader's language: raised in English everywhere (brokers log them, some
travel as reasons), translated where a person reads them, fields carried over as shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tits.contacts import ContactError
from tits.errors import TitsError
from tits.i18n import error_text
from tits.identity import normalise_fingerprint


def _raised(fn: object, *args: object) -> str:
    with pytest.raises(TitsError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value.message


@pytest.fixture
def zh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITS_LANG", "zh-TW")


def test_a_fixed_error_text(zh: None) -> None:
    assert error_text("refusing to import a secret key") == "拒絕匯入私密金鑰"
    assert error_text(ContactError("empty recipient").message) == "收件者是空的"


def test_fields_are_carried_over_as_they_were_shown(zh: None) -> None:
    message = _raised(normalise_fingerprint, "not-hex '[b]'")
    assert message == "not a 40-hex fingerprint: \"not-hex '[b]'\""
    assert error_text(message) == "不是 40 位十六進位的指紋：\"not-hex '[b]'\""
    # a field used twice must be the same text both times
    twice = "no public key for AB: `tits key fetch AB`"
    assert error_text(twice) == "沒有 AB 的公開金鑰：`tits key fetch AB`"
    assert error_text("no public key for AB: `tits key fetch CD`") != twice


def test_the_most_specific_template_wins(zh: None) -> None:
    # "{name}: {exc}" would match too; the longer literal text is the better fit
    shown = "cannot read /x/y.toml: [Errno 2] No such file"
    assert error_text(shown) == "無法讀取 /x/y.toml：[Errno 2] No such file"


def test_english_and_unknown_texts_pass_through(zh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert error_text("something nobody wrote") == "something nobody wrote"
    monkeypatch.setenv("TITS_LANG", "en")
    assert error_text("refusing to import a secret key") == "refusing to import a secret key"


@pytest.mark.parametrize(
    ("lang", "want"),
    [
        ("zh_TW.UTF-8", "錯誤：{home} 裡沒有 ω IM 身分；請先執行 `tits --home {home} init`"),
        ("en_US.UTF-8", "error: no ω IM identity in {home}; run `tits --home {home} init` first"),
    ],
)
def test_the_cli_prints_one_language(tmp_path: Path, lang: str, want: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "TITS_LANG"))}
    env.update(LANG=lang, LANGUAGE="", COLUMNS="200", NO_COLOR="1")
    home = tmp_path / "nobody"
    out = subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), "whoami"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == want.format(home=home)
