"""The status page tells the truth, and only as much as each user chose (issue 13): after a
broker died, every survivor says so (its banner no longer claims the invariants hold); the
public view shows unlisted users only as a count per broker, with no fingerprint, no device
id and no pid; the full view is for loopback or the operator's token."""

from __future__ import annotations

import functools
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    People,
    people_fixture,
    wait_for,
)
from tests.integration.test_cloud_brokers import Cloud, publish
from tits.broker.status import StatusServer
from tits.client.blocking import Messenger
from tits.localcloud import _status

pytestmark = pytest.mark.timeout(240)

A, B = "A" * 40, "B" * 40
SNAP = {
    "id": A,
    "pid": 4242,
    "brokers": [{"id": A, "alive": True}],
    "links": [],
    "problems": [],
    "users": [
        {"fingerprint": "D" * 40, "name": "陳小明", "broker": A, "devices": ["0" * 16]},
        {"fingerprint": "F" * 40, "name": "", "broker": A, "devices": ["1" * 16]},
    ],
}


def get(url: str, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def view(url: str, **headers: str) -> dict[str, Any]:
    code, body = get(url, **headers)
    assert code == 200
    return dict(json.loads(body))


def test_the_full_view_is_for_loopback_or_the_token_and_the_rest_see_the_public_one() -> None:
    server = StatusServer("127.0.0.1", 0, lambda: SNAP, "KEY", token="s3cret")
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    proxied = {"X-Forwarded-For": "203.0.113.9"}  # as a reverse proxy on this host relays
    try:
        full = view(base + "/api/status")
        assert full["view"] == "full" and full["pid"] == 4242 and len(full["users"]) == 2
        for public in (
            view(base + "/api/status?view=public"),
            view(base + "/api/status", **proxied),
            view(base + "/api/status?token=wrong", **proxied),
            view(base + "/api/status", Authorization="Bearer wrong", **proxied),
        ):
            text = json.dumps(public)
            assert public["view"] == "public" and "pid" not in public
            assert "F" * 40 not in text and "0" * 16 not in text and "1" * 16 not in text
            assert public["unlisted"] == {A: 1}
        assert view(base + "/api/status", Authorization="Bearer s3cret", **proxied)["pid"]
        assert view(base + "/api/status?token=s3cret", **proxied)["view"] == "full"
        code, page = get(base + "/", **proxied)
        assert code == 200 and b"F" * 40 not in page and "未公開".encode() in page
        assert get(base + "/api/key") == (200, b"KEY")
        assert get(base + "/nothing")[0] == 404
        req = urllib.request.Request(base + "/api/status", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 405
        err.value.close()
    finally:
        server.stop()


def test_the_page_is_in_the_language_the_browser_asked_for() -> None:
    """One language a page: Accept-Language picks it, `?lang=` overrides, zh-TW otherwise."""
    server = StatusServer("127.0.0.1", 0, lambda: SNAP, "KEY")
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        pages = {
            "none": get(base + "/")[1].decode(),
            "en": get(base + "/", **{"Accept-Language": "en-US,en;q=0.9"})[1].decode(),
            "zh": get(base + "/", **{"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.5"})[1].decode(),
            "switch": get(base + "/?lang=en", **{"Accept-Language": "zh-TW"})[1].decode(),
            "back": get(base + "/?lang=zh-TW", **{"Accept-Language": "en"})[1].decode(),
        }
        for key in ("none", "zh", "back"):
            assert "雲端狀態" in pages[key] and "cloud status" not in pages[key], key
        for key in ("en", "switch"):
            assert "cloud status" in pages[key] and "雲端狀態" not in pages[key], key
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cloud4():
    cloud = Cloud(4)
    yield cloud
    cloud.close()


def test_a_real_brokers_public_view_counts_the_unlisted(cloud4: Cloud, people: People) -> None:
    publish(people, cloud4.local.keyserver)
    broker = cloud4.local.brokers[0]
    people.mallory.save_config(listed=False)
    ks = cloud4.local.keyserver
    alice = Messenger(people.alice, broker=broker["url"], keyserver=ks)
    mallory = Messenger(people.mallory, broker=broker["url"], keyserver=ks)
    try:
        alice.connection()
        mallory.connection()
        full = wait_for(
            lambda: (st := _status(broker["http"])) and len(st["users"]) >= 2 and st, 20,
            "alice and mallory online",
        )  # fmt: skip
        devices = [d for u in full["users"] for d in u["devices"]]
        assert devices and people.mallory.fingerprint in {u["fingerprint"] for u in full["users"]}
        public = view(broker["http"] + "/api/status?view=public")
        text = json.dumps(public)
        assert people.mallory.fingerprint not in text
        assert not [d for d in devices if d in text]
        assert "pid" not in public and public["unlisted"] == {broker["id"]: 1}
        assert [u["fingerprint"] for u in public["users"]] == [people.alice.fingerprint]
        code, page = get(broker["http"] + "/?view=public")
        assert code == 200 and people.mallory.fingerprint.encode() not in page
        # every other broker's public page counts her at her broker, and names nobody else
        other = cloud4.local.brokers[2]
        wait_for(
            lambda: view(other["http"] + "/api/status?view=public")["unlisted"]
            == {broker["id"]: 1}, 20, "mallory counted elsewhere",
        )  # fmt: skip
    finally:
        alice.close()
        mallory.close()


def metrics(http: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = get(http + "/metrics")
    assert code == 200
    return {
        (smp.name, tuple(sorted(smp.labels.items()))): smp.value
        for family in text_string_to_metric_families(body.decode())
        for smp in family.samples
    }


def test_a_whole_clouds_metrics(cloud4: Cloud) -> None:
    """/metrics of a real 4-broker cloud: every broker linked to the 3 others, all alive,
    gossip fresh (brokers re-advertise every 2 s)."""
    for b in cloud4.local.brokers[:3]:

        def linked(b: dict[str, Any] = b) -> dict[tuple[str, Any], float] | None:
            m = metrics(b["http"])
            return m if m[("titsd_peers_up", ())] >= 3 else None

        m = wait_for(linked, 30, "three peers up")
        assert m[("titsd_brokers", (("state", "alive"),))] == 4
        assert m[("titsd_peer_link_events_total", (("event", "up"),))] >= 3
        assert m[("titsd_gossip_lag_seconds", ())] < 15


def test_after_a_broker_died_every_survivor_says_so(cloud4: Cloud) -> None:
    victim = cloud4.local.brokers[3]
    cloud4.kill9(victim["id"])
    survivors = cloud4.local.brokers[:3]

    def told(b: dict[str, Any]) -> bool:
        st = _status(b["http"])
        return st is not None and any(victim["id"][:16] in p for p in st["problems"])

    for b in survivors:
        wait_for(functools.partial(told, b), 30, f"{b['id'][:8]} reporting the dead broker")
        code, page = get(b["http"] + "/?lang=en")
        banner = re.search(r'id="problems">(.*?)</div>', page.decode(), re.S)
        assert code == 200 and banner is not None, page[:2000]
        assert "invariants hold" not in banner.group(1) and "problems (" in banner.group(1)
        assert metrics(b["http"])[("titsd_cloud_problems", ())] >= 1  # for Prometheus too

        def link_gone(b: dict[str, Any] = b) -> bool:  # its own link, once liveness says so
            m = metrics(b["http"])
            return sum(m[("titsd_peer_link_events_total", (("event", e),))]
                       for e in ("down", "lost")) >= 1  # fmt: skip

        wait_for(link_gone, 90, f"{b['id'][:8]} counting the lost link")


def test_searches_are_budgeted_and_pages_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page or search of 10,000 users is made once per snapshot; new ones past the budget
    are 503 with Retry-After (each costs the GIL the message loop needs), never a stall."""
    import tits.broker.status as status_mod

    monkeypatch.setattr(status_mod, "MADE_PER_S", 1.0)
    users = [{"fingerprint": f"{i:040X}", "name": f"用戶 {i:05d}", "broker": A, "devices": []}
             for i in range(10_000)]  # fmt: skip
    snap = dict(SNAP, users=users)
    server = StatusServer("127.0.0.1", 0, lambda: snap, "KEY")
    server.start()
    q42 = urllib.parse.quote("用戶 00042")
    base = f"http://127.0.0.1:{server.port}/api/status"
    try:
        first = view(f"{base}?q={q42}&limit=10")
        assert first["users_matched"] == 1 and first["users"][0]["name"] == "用戶 00042"
        assert first["users_total"] == 10_000
        for _ in range(5):  # the same one again: made once, never refused
            assert view(f"{base}?q={q42}&limit=10") == first
        codes = [get(f"{base}?q={i:05d}")[0] for i in range(100, 120)]
        assert 503 in codes and codes.count(200) < 20, codes
        req = urllib.request.Request(f"{base}?q=zzz")
        with pytest.raises(urllib.error.HTTPError) as busy:
            for _ in range(5):
                urllib.request.urlopen(req, timeout=10).close()
                req = urllib.request.Request(f"{base}?q=z{_}")
        assert busy.value.code == 503 and busy.value.headers["Retry-After"] == "1"
        busy.value.close()
        assert len(view(base)["users"]) == 10_000  # the whole document is always there
    finally:
        server.stop()
