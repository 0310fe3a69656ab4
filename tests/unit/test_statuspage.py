"""The status page shows who is where and the topology; user-chosen names cannot inject HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from tits.broker.status import public_view
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
    four = [*STATUS["brokers"][:2], {"id": C, "alive": True}, {"id": "9" * 40, "alive": True}]
    assert "invariants hold" in render(dict(STATUS, brokers=four, problems=[]))
    page = render(STATUS)
    assert 'id="problems"' not in page and 'id="counters"' not in page


def test_fewer_than_four_brokers_do_not_claim_the_invariants() -> None:
    """Two alive brokers (a third is down) are no cloud in which "≥ 3 links" can hold."""
    page = render(dict(STATUS, problems=[]))
    assert "invariants hold" not in page and "all 2 brokers linked" in page


def test_problems_other_than_the_invariants_are_shown_as_problems() -> None:
    page = render(dict(STATUS, problems=[f"broker {C[:16]} is down: lost 3 s ago"]))
    banner = re.search(r'id="problems">(.*?)</div>', page, re.S).group(1)
    assert "problems (1)" in banner and "is down" in banner and "invariants hold" not in page


def test_the_public_view_counts_unlisted_users_and_shows_no_devices_or_pid() -> None:
    status = dict(STATUS, users=[
        *STATUS["users"],
        {"fingerprint": "1" * 40, "name": "", "broker": A, "devices": ["d" * 16, "e" * 16]},
    ])  # fmt: skip
    public = public_view(status)
    text = json.dumps(public)
    for hidden in ("F" * 40, "1" * 40, "0" * 16, "d" * 16, "e" * 16):
        assert hidden not in text  # unlisted fingerprints and every device id
    assert "pid" not in public and public["view"] == "public"
    assert public["unlisted"] == {A: 1, B: 1}
    assert [u["name"] for u in public["users"]] == ["陳小明", "<script>x()</script>"]
    assert all(set(u) == {"fingerprint", "name", "broker"} for u in public["users"])
    page = render(public)
    for hidden in ("F" * 40, "1" * 40, "0" * 16, "d" * 16, "pid 42"):
        assert hidden not in page
    users = re.search(r'<table id="users">(.*?)</table>', page, re.S).group(1)
    assert users.count("1 位未公開使用者 unlisted users") == 2
    assert "4 位使用者上線 users online" in page and "public view" in page
    svg = page[page.index("<svg") : page.index("</svg>")]
    circle_counts = re.findall(r'font-weight="bold" text-anchor="middle" fill="#1f2733">(\d+)', svg)
    assert sorted(map(int, circle_counts)) == [0, 2, 2]  # A: 陳 + 1 unlisted; B: one of each


def test_shapes_and_cells_carry_full_ids() -> None:
    page = render(STATUS)
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert sorted(re.findall(r'<circle [^>]*data-id="(\w+)"', svg)) == [A, B, C]
    assert sorted(re.findall(r'data-a="(\w+)" data-b="(\w+)"', svg)) == [(A, B), (B, C)]
    users = re.search(r'<table id="users">(.*?)</table>', page, re.S).group(1)
    row = next(r for r in users.split("<tr>") if "D" * 40 in r)
    assert f'title="{A}"' in row and "本機" in row  # Chen is at this broker
