"""Dates as Taiwan writes them: 上午/下午 times, 今天/昨天, and 民國 years when `roc_year` is on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tits import i18n
from tits.app.text import clock, day_label, list_time

TW = timezone(timedelta(hours=8))


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=TW).timestamp() * 1000)


NOW = ms(2026, 12, 2, 15, 4)


@pytest.fixture
def lang(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    i18n.choose_roc_year(False)


def test_zh_tw_dates(lang: pytest.MonkeyPatch) -> None:
    lang.setenv("TITS_LANG", "zh-TW")
    assert clock(ms(2026, 12, 2, 9, 5), TW) == "上午 09:05"
    assert clock(NOW, TW) == "下午 03:04"
    assert day_label(NOW, NOW, TW) == "今天" and day_label(ms(2026, 12, 1), NOW, TW) == "昨天"
    assert day_label(ms(2025, 11, 4), NOW, TW) == "2025/11/4（二）"
    assert list_time(ms(2026, 3, 1), NOW, TW) == "3/1"
    assert list_time(ms(2024, 3, 1), NOW, TW) == "2024/3/1"


def test_roc_years_when_asked(lang: pytest.MonkeyPatch) -> None:
    lang.setenv("TITS_LANG", "zh-TW")
    i18n.choose_roc_year(True)
    assert day_label(ms(2025, 11, 4), NOW, TW) == "民國114/11/4（二）"
    assert list_time(ms(2024, 3, 1), NOW, TW) == "民國113/3/1"
    assert list_time(ms(2026, 3, 1), NOW, TW) == "3/1"  # this year: no year at all
    assert i18n.year(1911) == "1911"  # before 民國 1 the year stays as it is
    lang.setenv("TITS_LANG", "en")  # English dates stay Western
    assert day_label(ms(2025, 11, 4), NOW, TW) == "Tue, Nov 4, 2025"


def test_english_dates(lang: pytest.MonkeyPatch) -> None:
    lang.setenv("TITS_LANG", "en")
    assert clock(ms(2026, 12, 2, 9, 5), TW) == "9:05 AM"
    assert day_label(NOW, NOW, TW) == "Today" and day_label(ms(2026, 12, 1), NOW, TW) == "Yesterday"
