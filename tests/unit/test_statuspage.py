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
    assert all(h.startswith(("http://", "?lang=")) for h in parser.hrefs)  # and the switch


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
    assert "已接收" in counters and ">7<" in counters and ">3<" in counters
    assert "&lt;i&gt;odd&lt;/i&gt;" in counters and "&lt;script&gt;" in counters
    assert "<b>CCCC" not in page and "<i>" not in page
    parser = _Collect()
    parser.feed(page)
    assert "script" not in parser.tags and "i" not in parser.tags


def test_no_problems_says_the_invariants_hold_and_absent_keys_show_nothing() -> None:
    four = [*STATUS["brokers"][:2], {"id": C, "alive": True}, {"id": "9" * 40, "alive": True}]
    assert "invariants hold" in render(dict(STATUS, brokers=four, problems=[]), "en")
    assert "拓樸不變量成立" in render(dict(STATUS, brokers=four, problems=[]))
    page = render(STATUS)
    assert 'id="problems"' not in page and 'id="counters"' not in page


def test_fewer_than_four_brokers_do_not_claim_the_invariants() -> None:
    """Two alive brokers (a third is down) are no cloud in which "≥ 3 links" can hold."""
    page = render(dict(STATUS, problems=[]), "en")
    assert "invariants hold" not in page and "all 2 brokers linked" in page


def test_problems_other_than_the_invariants_are_shown_as_problems() -> None:
    page = render(dict(STATUS, problems=[f"broker {C[:16]} is down: lost 3 s ago"]), "en")
    banner = re.search(r'id="problems">(.*?)</div>', page, re.S).group(1)
    assert "problems in the cloud (1)" in banner and "is down" in banner
    assert "invariants hold" not in page


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
    assert users.count("1 位未公開使用者") == 2
    assert "4 位使用者上線" in page and "公開檢視" in page
    english = render(public, "en")
    assert "(1 unlisted users)" in english and "4 users online" in english
    assert "public view" in english
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


CJK = re.compile(r"[\u3400-\u9fff]")


def _visible(page: str) -> str:
    """The page's text, without its tags, style and the user-chosen names."""
    body = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S)
    return body.replace("陳小明", " ").replace("&lt;script&gt;x()&lt;/script&gt;", " ")


def test_one_language_a_page() -> None:
    """zh-TW or English, never both on a line (the page said "已到達 arrived")."""
    status = dict(STATUS, problems=[], counters={k: 1 for k in ("accepted", "arrived")}, sessions=1)
    zh, en = render(status, "zh-TW"), render(status, "en")
    assert not CJK.search(_visible(en).replace("中文", "")), _visible(en)  # only the switch
    assert 'lang="en"' in en and "arrived" in en and "Number in a circle" in en
    assert 'lang="zh-Hant-TW"' in zh and "已到達" in zh and "arrived" not in zh
    english_words = re.findall(r"\b[a-z]{4,}\b", _visible(zh).replace("English", ""))
    assert not english_words, english_words
    assert "拓撲" not in zh and "在線" not in zh and "代理" not in zh and "投遞" not in zh
    assert 'href="?lang=en"' in zh and 'href="?lang=zh-TW"' in en


def test_the_page_language_follows_the_request() -> None:
    from tits.broker.statuspage import pick_lang

    assert pick_lang(None, None) == "zh-TW"
    assert pick_lang(None, "en-US,en;q=0.9") == "en"
    assert pick_lang(None, "zh-TW,zh;q=0.9,en;q=0.8") == "zh-TW"
    assert pick_lang(None, "fr;q=1, en;q=0.5, zh;q=0.7") == "zh-TW"  # by q, French we lack
    assert pick_lang(None, "en;q=0.9, zh-Hant;q=0.3") == "en"
    assert pick_lang(None, "de, x;q=oops") == "zh-TW"
    assert pick_lang("en", "zh-TW") == "en" and pick_lang("zh-TW", "en") == "zh-TW"
