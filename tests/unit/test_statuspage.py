"""The status page shows who is where and the topology; user-chosen names cannot inject HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tits.broker.statuspage import render

A, B, C = "A" * 40, "B" * 40, "C" * 40
STATUS = {
    "id": A,
    "pid": 42,
    "brokers": [
        {"id": A, "url": "tcp://127.0.0.1:1#k", "http": "http://127.0.0.1:8001", "alive": True},
        {"id": B, "url": "tcp://127.0.0.1:2#k", "http": "http://127.0.0.1:8002", "alive": True},
        {"id": C, "url": "tcp://127.0.0.1:3#k", "http": "javascript:alert(1)", "alive": False},
    ],
    "links": [{"a": A, "b": B, "rtt_ms": 0.25}, {"a": B, "b": C, "rtt_ms": 1.5}],
    "users": [
        {"fingerprint": "D" * 40, "name": "陳小明", "broker": A, "devices": ["0" * 16]},
        {"fingerprint": "E" * 40, "name": "<script>x()</script>", "broker": B, "devices": []},
        {"fingerprint": "F" * 40, "name": "", "broker": B, "devices": []},
    ],
}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


def test_page_lists_users_with_their_proxy_and_the_topology() -> None:
    page = render(STATUS)
    users = re.search(r'<table id="users">(.*?)</table>', page, re.S).group(1)
    assert "陳小明" in users and "D" * 40 in users and "F" * 40 in users
    assert users.count("<tr>") == 4  # header + three users
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count("<circle") == 3 and svg.count("<line") == 2
    assert "0.25 ms" in svg and "1.50 ms" in svg
    assert "離線" in page  # the dead broker is marked
    assert 'http-equiv="refresh"' in page


def test_names_and_urls_cannot_inject() -> None:
    parser = _Collect()
    parser.feed(render(STATUS))
    assert "script" not in parser.tags
    assert all(h.startswith("http://") for h in parser.hrefs)


def test_empty_cloud_renders() -> None:
    page = render({"id": A, "pid": 1, "brokers": [], "links": [], "users": []})
    assert "目前沒有上線使用者" in page


def test_problems_and_counters_are_shown_escaped() -> None:
    status = dict(
        STATUS,
        problems=["broker <b>CCCC</b> has 1 link (< 3)", "link A–B is a bridge"],
        counters={"accepted": 7, "refused": 2, "<i>odd</i>": "<script>"},
        sessions=3,
    )
    page = render(status)
    problems = re.search(r'id="problems">(.*?)</div>', page, re.S).group(1)
    assert "&lt;b&gt;CCCC&lt;/b&gt;" in problems and "link A–B is a bridge" in problems
    counters = re.search(r'<table id="counters">(.*?)</table>', page, re.S).group(1)
    assert "已接收 accepted" in counters and ">7<" in counters and ">3<" in counters
    assert "&lt;i&gt;odd&lt;/i&gt;" in counters and "&lt;script&gt;" in counters
    assert "<b>CCCC" not in page and "<i>" not in page
    parser = _Collect()
    parser.feed(page)
    assert "script" not in parser.tags and "i" not in parser.tags


def test_no_problems_says_the_invariants_hold_and_absent_keys_show_nothing() -> None:
    assert "invariants hold" in render(dict(STATUS, problems=[]))
    page = render(STATUS)
    assert 'id="problems"' not in page and 'id="counters"' not in page


def test_shapes_and_cells_carry_full_ids() -> None:
    page = render(STATUS)
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert sorted(re.findall(r'<circle [^>]*data-id="(\w+)"', svg)) == [A, B, C]
    assert sorted(re.findall(r'data-a="(\w+)" data-b="(\w+)"', svg)) == [(A, B), (B, C)]
    users = re.search(r'<table id="users">(.*?)</table>', page, re.S).group(1)
    row = next(r for r in users.split("<tr>") if "D" * 40 in r)
    assert f'title="{A}"' in row and "本機" in row  # Chen is at this broker
