"""The status web page: active users → proxy (broker), the brokers with their links and
round-trip times, and an SVG drawing of the topology. Pure rendering from the `/api/status`
document, so what the page shows and what scripts read can never disagree.

Every string on the page came from a peer or a user (names especially), so all of it is
escaped; the page carries no script and refreshes itself with a meta tag.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

REFRESH_S = 3
SIZE = 420


def _short(fp: str) -> str:
    return fp[:8] + "…" + fp[-4:] if len(fp) > 12 else fp


def _layout(ids: list[str]) -> dict[str, tuple[float, float]]:
    """Brokers on a circle, in fingerprint order, so the drawing is stable between refreshes."""
    n = max(len(ids), 1)
    r = SIZE / 2 - 50
    return {
        b: (
            SIZE / 2 + r * math.cos(2 * math.pi * i / n - math.pi / 2),
            SIZE / 2 + r * math.sin(2 * math.pi * i / n - math.pi / 2),
        )
        for i, b in enumerate(sorted(ids))
    }


def topology_svg(status: dict[str, Any]) -> str:
    brokers = {b["id"]: b for b in status.get("brokers", [])}
    users_at: dict[str, int] = {}
    for u in status.get("users", []):
        users_at[u.get("broker", "")] = users_at.get(u.get("broker", ""), 0) + 1
    pos = _layout(list(brokers))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" '
        f'viewBox="0 0 {SIZE} {SIZE}" role="img" aria-label="topology">'
    ]
    for link in status.get("links", []):
        a, b = link.get("a"), link.get("b")
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        rtt = link.get("rtt_ms")
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            'stroke="#7a8ca5" stroke-width="2"/>'
        )
        if rtt is not None:
            parts.append(
                f'<text x="{(x1 + x2) / 2:.1f}" y="{(y1 + y2) / 2 - 3:.1f}" font-size="10" '
                f'fill="#556" text-anchor="middle">{float(rtt):.2f} ms</text>'
            )
    for bid, (x, y) in pos.items():
        b = brokers[bid]
        me = bid == status.get("id")
        fill = "#e8f4ea" if b.get("alive", True) else "#eee"
        stroke = "#c0392b" if me else ("#2e7d32" if b.get("alive", True) else "#999")
        parts.append(
            f'<g class="broker"><circle cx="{x:.1f}" cy="{y:.1f}" r="26" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{3 if me else 2}"/>'
            f'<text x="{x:.1f}" y="{y - 2:.1f}" font-size="10" text-anchor="middle">'
            f"{escape(bid[:8])}</text>"
            f'<text x="{x:.1f}" y="{y + 11:.1f}" font-size="10" text-anchor="middle">'
            f"👤 {users_at.get(bid, 0)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render(status: dict[str, Any]) -> str:
    me = str(status.get("id", ""))
    brokers = status.get("brokers", [])
    http_of = {b["id"]: b.get("http", "") for b in brokers}
    user_rows = (
        "".join(
            "<tr><td>{name}</td><td><code>{fp}</code></td><td>{proxy}</td><td>{dev}</td></tr>".format(
                name=escape(u.get("name") or "—"),
                fp=escape(u.get("fingerprint", "")),
                proxy=_broker_cell(u.get("broker", ""), http_of),
                dev=len(u.get("devices", [])),
            )
            for u in sorted(
                status.get("users", []), key=lambda u: (u.get("name") or "", u["fingerprint"])
            )
        )
        or '<tr><td colspan="4">（目前沒有上線使用者）</td></tr>'
    )
    degree: dict[str, list[str]] = {}
    for link in status.get("links", []):
        rtt = link.get("rtt_ms")
        label = (
            f"{_short(link['b'])} ({float(rtt):.2f} ms)" if rtt is not None else _short(link["b"])
        )
        degree.setdefault(link["a"], []).append(label)
        label = (
            f"{_short(link['a'])} ({float(rtt):.2f} ms)" if rtt is not None else _short(link["a"])
        )
        degree.setdefault(link["b"], []).append(label)
    broker_rows = "".join(
        "<tr><td>{mark}{bid}</td><td>{state}</td><td><code>{url}</code></td><td>{links}</td></tr>".format(
            mark="★ " if b["id"] == me else "",
            bid=_broker_cell(b["id"], http_of),
            state="在線 alive" if b.get("alive", True) else "離線 down",
            url=escape(b.get("url", "")),
            links=escape(", ".join(sorted(degree.get(b["id"], [])))) or "—",
        )
        for b in sorted(brokers, key=lambda b: b["id"])
    )
    return f"""<!doctype html>
<html lang="zh-Hant-TW"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>ω IM 雲端狀態 — {escape(_short(me))}</title>
<style>
body {{ font-family: system-ui, "Noto Sans TC", sans-serif; margin: 1.5em; color: #223; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccd; padding: .3em .6em; text-align: left; }}
th {{ background: #f0f3f8; }} code {{ font-size: .85em; }}
.wrap {{ display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }}
</style></head><body>
<h1>ω IM 雲端狀態 <small>cloud status</small></h1>
<p>本伺服器 this broker: <code>{escape(me)}</code> · pid {escape(str(status.get("pid", "")))}
· {len(brokers)} brokers · {len(status.get("links", []))} links
· {len(status.get("users", []))} users online</p>
<div class="wrap"><section><h2>上線使用者 → 代理伺服器 (active users → proxy)</h2>
<table id="users"><tr><th>名稱 name</th><th>指紋 fingerprint</th><th>伺服器 broker</th>
<th>裝置 devices</th></tr>{user_rows}</table>
<h2>伺服器 brokers</h2>
<table id="brokers"><tr><th>id</th><th>狀態 state</th><th>url</th>
<th>連線 links (RTT)</th></tr>{broker_rows}</table></section>
<section><h2>拓撲 topology</h2>{topology_svg(status)}</section></div>
</body></html>
"""


def _broker_cell(bid: str, http_of: dict[str, str]) -> str:
    http = http_of.get(bid, "")
    label = f"<code>{escape(_short(bid))}</code>"
    if http.startswith(("http://", "https://")):
        return f'<a href="{escape(http, quote=True)}">{label}</a>'
    return label
