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
