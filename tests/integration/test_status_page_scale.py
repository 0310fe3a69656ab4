"""The status page at 30 brokers and 10,000 users (issue 13), in headless Chromium driven as a
person would (tests/cdp.py): the brokers come first, the users are paged and found by a search
typed into the box, and the page updates itself in place from /api/status — a new user, new
counters and a broker going down appear without a reload (a mark left in the page survives).
What the browser drew is measured: no two broker circles touch, no label overlaps another
label or any circle, no link runs under a broker it does not end at. The screenshot is kept in
`test-artifacts/status-page-30.png` (git-ignored)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from tests.cdp import CHROMIUM, Browser
from tits.broker.status import StatusServer

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "status-page-30.png"
BROKERS, USERS = 30, 10_000

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (`apt-get install chromium`; "
        ".ci/run installs it on CI)",
    ),
]


def _fp(what: str) -> str:
    return hashlib.sha1(what.encode()).hexdigest().upper()


IDS = sorted(_fp(f"broker {i}") for i in range(BROKERS))
DOWN = IDS[7]


def snapshot(extra: list[dict[str, Any]] | None = None, down: tuple[str, ...] = (DOWN,),
             accepted: int = 123_456) -> dict[str, Any]:  # fmt: skip
    alive = [b for b in IDS if b not in down]
    links = []
    for i, b in enumerate(alive):
        for k in (1, 2, 7):
            other = alive[(i + k) % len(alive)]
            links.append({"a": min(b, other), "b": max(b, other), "rtt_ms": 0.4 + k / 10})
    users = [
        {"fingerprint": _fp(f"user {i}"), "name": f"用戶 {i:05d}" if i % 10 else "",
         "broker": alive[i % len(alive)], "devices": ["%016x" % i]}
        for i in range(USERS)
    ] + (extra or [])  # fmt: skip
    return {
        "id": IDS[0], "name": "台北-00", "pid": 4242,
        "brokers": [
            {"id": b, "name": f"tw-{i:02d}", "url": f"tcp://127.0.0.{i + 1}:5570#{'ab' * 32}",
             "http": "", "alive": b not in down}
            for i, b in enumerate(IDS)
        ],
        "links": links,
        "users": sorted(users, key=lambda u: (u["fingerprint"], u["broker"])),
        "problems": [f"broker tw-{IDS.index(d):02d} ({d[:16]}) is down: lost 12 s ago without a "
                     "goodbye" for d in down],
        "counters": {"accepted": accepted, "delivered": 120_001, "refused": 3},
        "sessions": 333,
    }  # fmt: skip


GEOMETRY = """(() => {
  const svg = document.querySelector('#topology svg');
  const toSvg = (el) => svg.getScreenCTM().inverse().multiply(el.getScreenCTM());
  const circles = [...svg.querySelectorAll('circle')].map(c => ({
    id: c.dataset.id, x: c.cx.baseVal.value, y: c.cy.baseVal.value, r: c.r.baseVal.value}));
  const labels = [...svg.querySelectorAll('text.label')].map(t => {
    const b = t.getBBox(), m = toSvg(t);
    const pts = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height],
                 [b.x, b.y + b.height]].map(([x, y]) => {
      const p = new DOMPoint(x, y).matrixTransform(m); return [p.x, p.y]; });
    return {id: t.closest('g').querySelector('circle').dataset.id, pts};
  });
  const links = [...svg.querySelectorAll('path.link')].map(p => {
    const n = p.getTotalLength(), pts = [];
    for (let i = 0; i <= 40; i++) {
      const q = p.getPointAtLength(n * i / 40); pts.push([q.x, q.y]);
    }
    return {a: p.dataset.a, b: p.dataset.b, pts};
  });
  return {circles, labels, links, width: svg.width.baseVal.value};
})()"""


def _axes(poly: list[list[float]]) -> list[tuple[float, float]]:
    out = []
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
        out.append((y1 - y2, x2 - x1))
    return out


def _overlap(p: list[list[float]], q: list[list[float]], slack: float = 0.5) -> bool:
    """Convex polygons intersect (separating axis theorem), past `slack` pixels."""
    for ax, ay in _axes(p) + _axes(q):
        norm = math.hypot(ax, ay) or 1.0
        a = [(x * ax + y * ay) / norm for x, y in p]
        b = [(x * ax + y * ay) / norm for x, y in q]
        if max(a) - slack <= min(b) or max(b) - slack <= min(a):
            return False
    return True


def _distance_to_polygon(x: float, y: float, poly: list[list[float]]) -> float:
    """0 inside, else the distance to the nearest edge."""
    inside = False
    best = math.inf
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
        dx, dy = x2 - x1, y2 - y1
        t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy or 1.0)))
        best = min(best, math.hypot(x - x1 - t * dx, y - y1 - t * dy))
    return 0.0 if inside else best


def check_no_overlaps(g: dict[str, Any]) -> None:
    circles, labels, links = g["circles"], g["labels"], g["links"]
    assert len(circles) == BROKERS and len(labels) == BROKERS and links
    for c, d in itertools.combinations(circles, 2):
        assert math.hypot(c["x"] - d["x"], c["y"] - d["y"]) >= c["r"] + d["r"] + 4, (c, d)
    for m, n in itertools.combinations(labels, 2):
        assert not _overlap(m["pts"], n["pts"]), (m["id"][:8], n["id"][:8])
    for label in labels:
        for c in circles:
            gap = _distance_to_polygon(c["x"], c["y"], label["pts"])
            assert gap >= c["r"] - 0.5, (label["id"][:8], c["id"][:8], gap)
    for link in links:
        for c in circles:
            if c["id"] in (link["a"], link["b"]):
                continue
            near = min(math.hypot(x - c["x"], y - c["y"]) for x, y in link["pts"])
            assert near >= c["r"] + 1, (link["a"][:8], link["b"][:8], c["id"][:8], near)


ROWS = "document.querySelectorAll('#users tbody tr').length"
RANGE = "document.getElementById('range').textContent"
UPDATES = "parseInt(document.body.dataset.updates, 10)"


async def scenario(base: str, state: dict[str, Any]) -> dict[str, Any]:
    async with Browser(1500, 1100) as page:
        await page.goto(base + "/?lang=zh-TW")
        assert await page.eval(ROWS) == 50
        assert await page.eval(RANGE) == "第 1–50 位，共 10,000 位"
        first = await page.eval("document.querySelector('#brokers tbody tr').textContent")
        assert "★" in first and "tw-00" in first  # this broker first, then the others
        headings = await page.eval("[...document.querySelectorAll('h2')].map(h => h.textContent)")
        assert headings.index("伺服器") < headings.index("上線使用者 → 伺服器")
        await page.until(f"{UPDATES} >= 1")  # the first fetch of /api/status came back
        await page.eval("window.__mark = 42")
        geometry = await page.eval(GEOMETRY)

        # the cloud changes: the page follows in place, the drawing too, without a reload
        zoe = {"fingerprint": _fp("zoe"), "name": "新來的 Zoe", "broker": IDS[3],
               "devices": ["f" * 16]}  # fmt: skip
        state["snap"] = snapshot([zoe], down=(DOWN, IDS[5]), accepted=999_999)
        await page.until("document.getElementById('counters').textContent.includes('999,999')")
        await page.until(f"{RANGE} === '第 1–50 位，共 10,001 位'")
        circle = f"document.querySelector('circle[data-id=\"{IDS[5]}\"]')"
        await page.until(f"{circle}.getAttribute('stroke-dasharray')")
        assert await page.eval("window.__mark") == 42
        assert await page.eval("performance.getEntriesByType('navigation').length") == 1
        assert "2 " in await page.eval("document.getElementById('problems').textContent")

        # a search typed into the box, then the next page
        await page.eval(
            "(() => { const q = document.getElementById('q'); q.value = 'zoe';"
            " q.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )
        await page.until(f"{RANGE} === '第 1–1 位，共 1 位'")
        row = await page.eval("document.querySelector('#users tbody tr').textContent")
        assert "新來的 Zoe" in row and zoe["fingerprint"] in row
        assert "q=zoe" in await page.eval("location.search")
        await page.eval(
            "(() => { const q = document.getElementById('q'); q.value = '';"
            " q.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )
        await page.until(f"{RANGE} === '第 1–50 位，共 10,001 位'")
        await page.eval("document.querySelector('#pager a[data-page=\"2\"]').click()")
        await page.until(f"{RANGE} === '第 51–100 位，共 10,001 位'")
        assert await page.eval(ROWS) == 50
        assert await page.eval("window.__mark") == 42

        # a fresh page for the picture, and the same in English
        await page.goto(base + "/?lang=zh-TW")
        await page.until(f"{UPDATES} >= 1")
        shot = await page.screenshot(ARTIFACT)
        await page.goto(base + "/?lang=en&q=zoe")
        english = await page.eval(RANGE)
        return {"geometry": geometry, "after": await page.eval(GEOMETRY), "shot": shot,
                "english": english}  # fmt: skip


def test_status_page_at_30_brokers_and_10000_users() -> None:
    state = {"snap": snapshot()}
    server = StatusServer("127.0.0.1", 0, lambda: state["snap"], "KEY")
    server.start()
    try:
        got = asyncio.run(scenario(f"http://127.0.0.1:{server.port}", state))
    finally:
        server.stop()
    check_no_overlaps(got["geometry"])
    check_no_overlaps(got["after"])  # with a second broker down, redrawn by the page
    assert got["english"] == "1–1 of 1"
    assert got["shot"][:8] == b"\x89PNG\r\n\x1a\n" and len(got["shot"]) > 50_000
