"""keyd settings (file + flags) and the classification of HKP searches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tits.errors import ConfigError
from tits.keyd.config import KeydConfig, base_url, fallback_base, load
from tits.keyd.service import KeydError, Search, parse_search

FP = "0123456789ABCDEF0123456789ABCDEF01234567"


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text('host = "0.0.0.0"\nport = 1234\ndata = "/srv/k"\nfallback = ["hkps://h"]\n')
    c = load(cfg, port=0, data=None, fallback=None)
    assert (c.host, c.port, c.data, c.fallback) == ("0.0.0.0", 0, Path("/srv/k"), ["https://h"])
    assert load(cfg, fallback=["hkp://x"]).fallback == ["http://x:11371"]
    assert load(None).port == 11371 and load(None).max_upload == 1024 * 1024


def test_example_config_loads() -> None:
    c = load(Path(__file__).parents[2] / "configs" / "keyd.toml")
    assert c.port == 11371 and c.fallback == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "unknown setting"),
        ("port = true\n", "integer"),
        ("port = -1\n", "out of range"),
        ("max_upload = 10\n", "max_upload"),
        ("log_json = 1\n", "true or false"),
        ('host = ""\n', "host"),
        ('fallback = ["hkp://u:p@x"]\n', "plain server address"),
    ],
)
def test_bad_settings(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(cfg)


def test_urls() -> None:
    assert base_url("0.0.0.0", 5) == "http://127.0.0.1:5"
    assert base_url("::1", 5) == "http://[::1]:5"
    assert base_url("10.0.0.2", 5) == "http://10.0.0.2:5"
    assert fallback_base("hkps://keys.openpgp.org/") == "https://keys.openpgp.org"
    assert fallback_base("http://[::1]:8080") == "http://[::1]:8080"
    assert KeydConfig(port=0).url == "http://127.0.0.1:0"


@pytest.mark.parametrize(
    ("raw", "exact", "expected"),
    [
        ("0x" + FP, True, Search("fpr", FP)),
        (FP.lower(), True, Search("fpr", FP)),
        ("0x" + FP[-16:].lower(), True, Search("keyid", FP[-16:])),
        ("<Ann@Example.org>", True, Search("email", "ann@example.org")),
        ("ann@example.org", False, Search("email", "ann@example.org")),
        ("Ann Exa", False, Search("text", "Ann Exa")),
        ("  陳小明 ", False, Search("text", "陳小明")),
        ("林", False, Search("text", "林")),  # 1–2 CJK ideographs: a Chinese name
        (" 小明", False, Search("text", "小明")),
        ("𠀋", False, Search("text", "𠀋")),  # an Extension B ideograph
    ],
)
def test_searches(raw: str, exact: bool, expected: Search) -> None:
    assert parse_search(raw, exact) == expected


@pytest.mark.parametrize(
    ("raw", "exact"),
    [
        (None, True), ("", False), ("   ", False), ("*", False), ("ann*", False), ("a?", False),
        ("0x1234ABCD", True), ("0x" + "A" * 32, True), ("x" * 257, False), ("a\x00b", False),
        ("a\r\nb", False), ("Ann", True), ("an", False), ("林a", False), ("あい", False),
        ("한국", False), ("。。", False), ("林", True),
    ],
)  # fmt: skip
def test_refused_searches(raw: str | None, exact: bool) -> None:
    with pytest.raises(KeydError) as err:
        parse_search(raw, exact)
    assert err.value.status == 400
