"""The status page shows who is where and the topology; user-chosen names cannot inject HTML;
one language a page (zh-TW, or English with lang="en"); at 30 brokers the drawing has room."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from tits.broker.status import public_view
from tits.broker.statuspage import render

A, B, C = "A" * 40, "B" * 40, "C" * 40
STATUS: dict[str, Any] = {
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


def visible(page: str) -> str:
    """The page without its scripts (whose strings are every message the page may show)."""
    return re.sub(r"<script.*?</script>", "", page, flags=re.S)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


def grab(pattern: str, page: str) -> str:
    found = re.search(pattern, page, re.S)
    assert found is not None, pattern
    return found.group(1)


def test_page_lists_users_with_their_proxy_and_the_topology() -> None:
    page = render(STATUS)
    users = grab(r'<table id="users">(.*?)</table>', page)
    assert "陳小明" in users and "D" * 40 in users and "F" * 40 in users
    assert users.count("<tr>") == 4  # header + three users
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count("<circle") == 3 and svg.count('class="link"') == 2
    assert "0.25 ms" in svg and "1.50 ms" in svg
    assert "離線" in page  # the dead broker is marked
    assert 'http-equiv="refresh"' in page


def test_names_and_urls_cannot_inject() -> None:
    parser = _Collect()
    page = render(STATUS)
    parser.feed(page)
    # two scripts, both ours: the JSON of the page's strings and the static script
    assert parser.tags.count("script") == 2 and "&lt;script&gt;x()&lt;/script&gt;" in page
    config = page[page.index('id="config">') : page.index("</script>")]
    assert "x()" not in config and "陳小明" not in config  # no user data in a script
    assert all(h.startswith(("http://", "?")) for h in parser.hrefs)


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
    problems = grab(r'id="problems">(.*?)</div>', page)
    assert "&lt;b&gt;CCCC&lt;/b&gt;" in problems and "link A–B is a bridge" in problems
    counters = grab(r'<table id="counters">(.*?)</table>', page)
    assert "已接收" in counters and ">7<" in counters and ">3<" in counters
    assert "accepted" not in counters and "accepted" in render(status, "en")
    assert "&lt;i&gt;odd&lt;/i&gt;" in counters and "&lt;script&gt;" in counters
    assert "<b>CCCC" not in page and "<i>" not in page
    parser = _Collect()
    parser.feed(page)
    assert parser.tags.count("script") == 2 and "i" not in parser.tags


def test_no_problems_says_the_invariants_hold_and_absent_keys_show_nothing() -> None:
    four = [*STATUS["brokers"][:2], {"id": C, "alive": True}, {"id": "9" * 40, "alive": True}]
    assert "invariants hold" in render(dict(STATUS, brokers=four, problems=[]), "en")
    assert "拓樸不變量成立" in render(dict(STATUS, brokers=four, problems=[]))
    page = visible(render(STATUS))
    assert 'id="problems"' not in page and 'id="counters"' not in page


def test_fewer_than_four_brokers_do_not_claim_the_invariants() -> None:
    """Two alive brokers (a third is down) are no cloud in which "≥ 3 links" can hold."""
    page = visible(render(dict(STATUS, problems=[]), "en"))
    assert "invariants hold" not in page and "all 2 brokers linked" in page


def test_problems_other_than_the_invariants_are_shown_as_problems() -> None:
    page = visible(render(dict(STATUS, problems=[f"broker {C[:16]} is down: lost 3 s ago"]), "en"))
    banner = grab(r'id="problems">(.*?)</div>', page)
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
    users = grab(r'<table id="users">(.*?)</table>', page)
    assert users.count("1 位未公開的使用者") == 2
    assert "4 位使用者上線" in page and "公開檢視" in page
    english = visible(render(public, "en"))
    assert "4 users online" in english and "public view" in english and "位" not in english
    svg = page[page.index("<svg") : page.index("</svg>")]
    circle_counts = re.findall(r'font-weight="bold" text-anchor="middle" fill="#1f2733">(\d+)', svg)
    assert sorted(map(int, circle_counts)) == [0, 2, 2]  # A: 陳 + 1 unlisted; B: one of each


def test_shapes_and_cells_carry_full_ids() -> None:
    page = render(STATUS)
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert sorted(re.findall(r'<circle [^>]*data-id="(\w+)"', svg)) == [A, B, C]
    assert sorted(re.findall(r'data-a="(\w+)" data-b="(\w+)"', svg)) == [(A, B), (B, C)]
    users = grab(r'<table id="users">(.*?)</table>', page)
    row = next(r for r in users.split("<tr>") if "D" * 40 in r)
    assert f'title="{A}"' in row and "本機" in row  # Chen is at this broker


def test_thirty_brokers_have_room_and_one_page_of_users() -> None:
    """At 30 brokers no two circles touch and the labels run along the radius; the page shows
    one page of users (the document /api/status cuts), with where it is among them."""
    ids = [f"{i:02X}" * 20 for i in range(30)]
    brokers = [{"id": b, "url": "", "http": "", "alive": i != 7} for i, b in enumerate(ids)]
    links = [
        {"a": ids[i], "b": ids[(i + k) % 30], "rtt_ms": 0.5} for i in range(30) for k in (1, 2)
    ]
    users = [{"fingerprint": f"{i:040X}", "name": f"用戶 {i:05d}", "broker": ids[i % 30],
              "devices": ["0" * 16]} for i in range(50)]  # fmt: skip
    doc = dict(STATUS, id=ids[0], brokers=brokers, links=links, users=users,
               users_total=10_000, users_matched=10_000, offset=50, limit=50)  # fmt: skip
    page = render(doc)
    svg = page[page.index("<svg") : page.index("</svg>")]
    circles = [tuple(map(float, m)) for m in re.findall(
        r'<circle cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"', svg)]  # fmt: skip
    assert len(circles) == 30
    for i, (x1, y1, r1) in enumerate(circles):
        for x2, y2, r2 in circles[i + 1 :]:
            assert ((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5 >= r1 + r2 + 8
    assert svg.count("rotate(") == 30 and svg.count('class="link"') == 60
    assert "第 51–100 位，共 10,000 位" in page and "10,000 位使用者上線" in page
    assert 'href="?page=1"' in page and 'href="?page=3"' in page
