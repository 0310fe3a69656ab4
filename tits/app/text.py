"""Strings, times and dates as LINE writes them (zh-TW first, English by `TITS_LANG`/`LANG`),
and wire text made plain.

Every text that came from the wire or from a key goes through `plain()`: control and bidi
characters are shown as visible pictures (`safe()`), and the result is a Rich `Text`, never
markup, so "[b]" or an ESC sequence in a message is shown as typed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from rich.text import Text

from tits.cli.output import safe, t, zh
from tits.client.model import Message
from tits.i18n import _, year

__all__ = ["clock", "day_label", "list_time", "plain", "safe", "t", "zh"]

_WEEKDAYS_ZH = "一二三四五六日"


def plain(text: str | None, style: str = "") -> Text:
    return Text(safe(text or ""), style=style, no_wrap=False)


def _local(ts_ms: int, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz)


def clock(ts_ms: int, tz: tzinfo | None = None) -> str:
    """上午 09:05 / 下午 03:04 (12-hour, as LINE shows it); 9:05 AM in English."""
    d = _local(ts_ms, tz)
    h12 = d.hour % 12 or 12
    if zh():
        return f"{'上午' if d.hour < 12 else '下午'} {h12:02d}:{d.minute:02d}"
    return f"{h12}:{d.minute:02d} {'AM' if d.hour < 12 else 'PM'}"


def list_time(ts_ms: int, now_ms: int, tz: tzinfo | None = None) -> str:
    """The chat list's time: the clock for today, 昨天 for yesterday, else the date."""
    d, now = _local(ts_ms, tz), _local(now_ms, tz)
    if d.date() == now.date():
        return clock(ts_ms, tz)
    if d.date() == (now - timedelta(days=1)).date():
        return _("Yesterday")
    if d.year == now.year:
        return f"{d.month}/{d.day}"
    return f"{year(d.year)}/{d.month}/{d.day}"


def day_label(ts_ms: int, now_ms: int, tz: tzinfo | None = None) -> str:
    """A day separator in a conversation: 今天 / 昨天 / 2026/12/1（二）, 民國115/12/1（二） with
    `roc_year`."""
    d, now = _local(ts_ms, tz), _local(now_ms, tz)
    if d.date() == now.date():
        return _("Today")
    if d.date() == (now - timedelta(days=1)).date():
        return _("Yesterday")
    if zh():
        return f"{year(d.year)}/{d.month}/{d.day}（{_WEEKDAYS_ZH[d.weekday()]}）"
    return d.strftime("%a, %b ") + str(d.day) + d.strftime(", %Y")


def day_key(ts_ms: int, tz: tzinfo | None = None) -> tuple[int, int, int]:
    d = _local(ts_ms, tz)
    return (d.year, d.month, d.day)


def lifetime_label(seconds: int) -> str:
    """A display lifetime as a person says it: 30 秒, 10 分鐘, 2 小時, 1 天."""
    for size, zh_unit, en_unit in ((86400, "天", "d"), (3600, "小時", "h"), (60, "分鐘", "min")):
        if seconds >= size and seconds % size == 0:
            return _("{seconds} {en_unit}").format(
                seconds=seconds // size, en_unit=en_unit, zh_unit=zh_unit
            )
    return _("{seconds} s").format(seconds=seconds)


def toggled(which: str, on: bool) -> str:
    """What pinning or muting a chat says: 已置頂, 已取消靜音 …"""
    if which == "pinned":
        return _("Pinned") if on else _("Unpinned")
    return _("Muted") if on else _("Unmuted")


def media_label(m: Message) -> str:
    """A media message in a line: a sticker's text rendering, else [圖片]/[檔案] and its
    name made safe (the file itself is fetched by the client library, `Client.fetch`)."""
    info = m.media()
    if info is None:
        return _("[file]")
    if info["sticker"]:
        return _("[sticker] ") + safe(str(info["sticker"]).rpartition("/")[2])
    kind = _("[picture] ") if str(info["mime"]).startswith("image/") else _("[file] ")
    return kind + safe(str(info["name"]))
