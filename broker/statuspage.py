"""The status web page: active users → proxy (broker), the brokers with their links and
round-trip times, an SVG drawing of the topology, the invariant problems and the counters.
Pure rendering from the `/api/status` document, so what the page shows and what scripts read
can never disagree. One language a page: zh-TW or English, as the request asked
(`?lang=`, else Accept-Language; `pick_lang`), each text through the gettext catalog.

Every string on the page came from a peer or a user (names especially), so all of it is
escaped; the page carries no script and refreshes itself with a meta tag. Each broker cell
carries the full broker id in its `title` (and each SVG shape its ids in `data-*`), for people
hovering and for tests reading the DOM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from typing import Any

from tits.i18n import EN, N_, ZH_TW, translator

Tr = Callable[[str], str]  # the page's translator: English text → the page's language

REFRESH_S = 3
SVG_W, SVG_H = 540, 470
NODE_R = 24
MAX_RTT_LABELS = 30  # beyond this many links the RTTs are only in the table

COUNTER_LABELS = {
    "accepted": N_("accepted"),
    "duplicates": N_("duplicates"),
    "refused": N_("refused"),
    "logins": N_("logins"),
    "delivered": N_("delivered"),
    "forwarded": N_("forwarded"),
    "arrived": N_("arrived"),
    "kept": N_("kept for forwarding"),
    "passed": N_("passed through"),
    "passing": N_("passing"),
}


def pick_lang(query: str | None, accept_language: str | None) -> str:
    """`?lang=en` / `?lang=zh-TW` first, else the browser's first language we have
    (Accept-Language, by q), else zh-TW."""
    if query:
        return EN if query.lower().startswith("en") else ZH_TW
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")[:32]):
        tag, _sep, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()))
    for _q, _i, tag in sorted(ranked):
        if tag.startswith("zh"):
            return ZH_TW
        if tag.startswith("en"):
            return EN
    return ZH_TW


STYLE = """
body { font-family: "Noto Sans TC", "Noto Sans CJK TC", "PingFang TC", "Microsoft JhengHei",
  system-ui, sans-serif; margin: 1.2em 1.5em; color: #1f2733; background: #fafbfc; }
h1 { margin: 0 0 .2em; font-size: 1.6em; } h1 small { color: #667; font-weight: normal; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; } h2 small { color: #667; font-weight: normal; }
.meta { color: #445; margin: 0 0 .6em; } .meta b { color: #1f2733; }
table { border-collapse: collapse; background: #fff; }
td, th { border: 1px solid #d5dae3; padding: .25em .55em; text-align: left;
  vertical-align: top; }
th { background: #eef2f8; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK TC", monospace; font-size: .82em; }
td code { white-space: nowrap; } td.url { max-width: 19em; }
td code.url { word-break: break-all; white-space: normal; }
a { color: #1d5fa8; text-decoration: none; } a:hover { text-decoration: underline; }
.me { color: #c0392b; font-weight: 600; } .nowrap { white-space: nowrap; }
.up { color: #2e7d32; } .down { color: #999; }
ul.links { margin: 0; padding: 0; list-style: none; white-space: nowrap; }
.grid { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 0 2em;
  align-items: start; }
@media (max-width: 1100px) { .grid { grid-template-columns: 1fr; } }
figure { margin: 0; } figcaption { color: #667; font-size: .85em; max-width: 36em; }
svg { background: #fff; border: 1px solid #d5dae3; }
.ok { color: #2e7d32; } .problems { background: #fdecea; border: 1px solid #e0a19a;
  padding: .4em .9em; color: #8a1c12; } .problems ul { margin: .2em 0; }
"""


def _short(fp: str) -> str:
    return fp[:8] + "…" + fp[-4:] if len(fp) > 12 else fp


def _num(value: Any) -> str:
    return escape(str(value))


def _layout(ids: list[str]) -> dict[str, tuple[float, float]]:
    """Brokers on a circle, in fingerprint order, so the drawing is stable between refreshes."""
    n = max(len(ids), 1)
    r = min(SVG_W, SVG_H) / 2 - 70  # room outside the circle for the labels
    cx, cy = SVG_W / 2, SVG_H / 2
    return {
        b: (
            cx + r * math.cos(2 * math.pi * i / n - math.pi / 2),
            cy + r * math.sin(2 * math.pi * i / n - math.pi / 2),
        )
        for i, b in enumerate(sorted(ids))
    }


def _users_at(status: dict[str, Any]) -> dict[str, int]:
    """Users online per broker: those listed, and the unlisted ones the public view counts."""
    count: dict[str, int] = {}
    for u in status.get("users", []):
        count[str(u.get("broker", ""))] = count.get(str(u.get("broker", "")), 0) + 1
    unlisted = status.get("unlisted")
    for broker, n in unlisted.items() if isinstance(unlisted, dict) else []:
        if isinstance(n, int):
            count[str(broker)] = count.get(str(broker), 0) + n
    return count


def topology_svg(status: dict[str, Any], _: Tr = str) -> str:
    """Brokers as circles (the number inside: users online there) with their short id outside,
    links as lines labelled with their RTT."""
    brokers = {str(b["id"]): b for b in status.get("brokers", [])}
    users_at = _users_at(status)
    pos = _layout(list(brokers))
    cx, cy = SVG_W / 2, SVG_H / 2
    links = [k for k in status.get("links", []) if k.get("a") in pos and k.get("b") in pos]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_W}" height="{SVG_H}" '
        f'viewBox="0 0 {SVG_W} {SVG_H}" role="img" aria-label="{escape(_("topology"))}" '
        'font-family="DejaVu Sans, sans-serif">'
    ]
    labels = []
    for link in links:
        a, b = sorted((str(link["a"]), str(link["b"])))
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'data-a="{escape(a, quote=True)}" data-b="{escape(b, quote=True)}" '
            'stroke="#8a9bb5" stroke-width="2"/>'
        )
        rtt = link.get("rtt_ms")
        if rtt is not None and len(links) <= MAX_RTT_LABELS:
            # at the middle, unless that is the centre, where every diameter has its middle
            t = 0.5 if math.hypot((x1 + x2) / 2 - cx, (y1 + y2) / 2 - cy) > 24 else 0.35
            labels.append(
                f'<text x="{x1 + (x2 - x1) * t:.1f}" y="{y1 + (y2 - y1) * t + 3:.1f}" '
                'font-size="10" fill="#34495e" text-anchor="middle" paint-order="stroke" '
                f'stroke="#fff" stroke-width="3">{float(rtt):.2f} ms</text>'
            )
    parts += labels  # above every line
    for bid, (x, y) in pos.items():
        b = brokers[bid]
        me = bid == status.get("id")
        alive = b.get("alive", True)
        fill = "#e8f4ea" if alive else "#f0f0f0"
        stroke = "#c0392b" if me else ("#2e7d32" if alive else "#999")
        dash = "" if alive else ' stroke-dasharray="4 3"'
        # the label goes outward, away from the centre, where no line runs
        dx, dy = x - cx, y - cy
        norm = math.hypot(dx, dy) or 1.0
        lx, ly = x + dx / norm * (NODE_R + 8), y + dy / norm * (NODE_R + 8)
        anchor = "start" if dx > 8 else ("end" if dx < -8 else "middle")
        ly += 4 if abs(dy) < 8 else (12 if dy > 0 else -4)
        if not alive and dy < -8:
            ly -= 14  # the second line ("down") must not run into the circle
        name = ("★ " if me else "") + bid[:8]
        state = "" if alive else f'<tspan x="{lx:.1f}" dy="1.2em">{escape(_("offline"))}</tspan>'
        parts.append(
            f'<g class="broker"><title>{escape(bid)}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_R}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{3 if me else 2}"{dash} data-id="{escape(bid, quote=True)}"/>'
            f'<text x="{x:.1f}" y="{y + 6:.1f}" font-size="16" font-weight="bold" '
            f'text-anchor="middle" fill="#1f2733">{users_at.get(bid, 0)}</text>'
            f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="12" text-anchor="{anchor}" '
            f'font-family="DejaVu Sans Mono, monospace" fill="{stroke}">'
            f"{escape(name)}{state}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _broker_cell(bid: str, http_of: dict[str, str]) -> str:
    http = http_of.get(bid, "")
    label = f'<code title="{escape(bid, quote=True)}">{escape(_short(bid))}</code>'
    if http.startswith(("http://", "https://")):
        return f'<a href="{escape(http, quote=True)}">{label}</a>'
    return label


def _user_rows(status: dict[str, Any], http_of: dict[str, str], _: Tr) -> str:
    me = str(status.get("id", ""))
    users = sorted(
        status.get("users", []),
        key=lambda u: (str(u.get("name") or ""), str(u.get("fingerprint", ""))),
    )
    rows = []
    for u in users:
        proxy = str(u.get("broker", ""))
        here = f' <span class="me nowrap">{_("here")}</span>' if proxy == me else ""
        rows.append(
            "<tr><td>{name}</td><td><code>{fp}</code></td><td>{proxy}{here}</td>"
            '<td class="num">{dev}</td></tr>'.format(
                name=escape(str(u.get("name") or "—")),
                fp=escape(str(u.get("fingerprint", ""))),
                proxy=_broker_cell(proxy, http_of),
                here=here,
                dev=len(u["devices"]) if isinstance(u.get("devices"), list) else "—",
            )
        )
    unlisted = status.get("unlisted")
    for proxy, n in sorted(unlisted.items() if isinstance(unlisted, dict) else []):
        here = f' <span class="me nowrap">{_("here")}</span>' if proxy == me else ""
        unlisted_users = escape(_("({n} unlisted users)").format(n=n))
        rows.append(
            f'<tr class="unlisted"><td colspan="2">{unlisted_users}</td>'
            '<td>{proxy}{here}</td><td class="num">—</td></tr>'.format(
                proxy=_broker_cell(str(proxy), http_of), here=here
            )
        )
    return "".join(rows) or f'<tr><td colspan="4">{_("(no users online)")}</td></tr>'


def _broker_rows(status: dict[str, Any], http_of: dict[str, str], _: Tr) -> str:
    me = str(status.get("id", ""))
    users_at = _users_at(status)
    peers: dict[str, list[tuple[str, Any]]] = {}
    for link in status.get("links", []):
        a, b = str(link.get("a", "")), str(link.get("b", ""))
        peers.setdefault(a, []).append((b, link.get("rtt_ms")))
        peers.setdefault(b, []).append((a, link.get("rtt_ms")))
    rows = []
    for b in sorted(status.get("brokers", []), key=lambda b: str(b["id"])):
        bid = str(b["id"])
        links = "".join(
            "<li>{peer}{rtt}</li>".format(
                peer=_broker_cell(p, http_of),
                rtt=f" · {float(rtt):.2f} ms" if rtt is not None else "",
            )
            for p, rtt in sorted(peers.get(bid, []), key=lambda pr: pr[0])
        )
        alive = b.get("alive", True)
        rows.append(
            '<tr><td class="nowrap">{mark}{cell}</td><td>{state}</td><td class="num">{users}</td>'
            '<td class="url"><code class="url">{url}</code></td><td>{links}</td></tr>'.format(
                mark='<span class="me">★</span> ' if bid == me else "",
                cell=_broker_cell(bid, http_of)
                + (f"<br><small>{escape(str(b['name']))}</small>" if b.get("name") else ""),
                state=f'<span class="up">{_("online")}</span>'
                if alive
                else f'<span class="down">{_("offline")}</span>',
                users=users_at.get(bid, 0),
                url=escape(str(b.get("url", ""))),
                links=f'<ul class="links">{links}</ul>' if links else "—",
            )
        )
    return "".join(rows)


def _problems(status: dict[str, Any], _: Tr) -> str:
    if "problems" not in status:
        return ""
    problems = status.get("problems") or []
    if not problems:
        alive = sum(1 for b in status.get("brokers", []) if b.get("alive", True))
        if alive < 4:  # the invariants are defined from 4 brokers on: say what holds instead
            linked = _(
                "all {alive} brokers linked to each other (the invariants apply from 4 brokers on)"
            ).format(alive=alive)
            return f'<p class="ok" id="problems">✓ {escape(linked)}</p>'
        hold = _("the topology invariants hold (every broker ≥ 3 links, no bridge)")
        return f'<p class="ok" id="problems">✓ {escape(hold)}</p>'
    items = "".join(f"<li>{escape(str(p))}</li>" for p in problems)
    return (
        f'<div class="problems" id="problems"><b>⚠ {escape(_("problems in the cloud"))} '
        f"({len(problems)})</b><ul>{items}</ul></div>"
    )


def _counters(status: dict[str, Any], _: Tr) -> str:
    counters = status.get("counters")
    if not isinstance(counters, dict) or not counters:
        return ""
    cells = [
        f"<th>{escape(_(COUNTER_LABELS[str(k)]) if str(k) in COUNTER_LABELS else str(k))}</th>"
        f'<td class="num">{_num(v)}</td>'
        for k, v in counters.items()
    ]
    if "sessions" in status:
        cells.append(f'<th>{_("sessions")}</th><td class="num">{_num(status["sessions"])}</td>')
    rows = "".join("<tr>" + "".join(cells[i : i + 2]) + "</tr>" for i in range(0, len(cells), 2))
    return f'<h2>{_("counters")}</h2><table id="counters">{rows}</table>'


def _switch(lang: str, public: bool) -> str:
    """A link to the same page in the other language (keeping the public view)."""
    other, label = (EN, "English") if lang == ZH_TW else (ZH_TW, "中文")
    view = "&amp;view=public" if public else ""
    return f'<a class="lang" href="?lang={other}{view}" hreflang="{other}">{label}</a>'


def render(status: dict[str, Any], lang: str = ZH_TW) -> str:
    _ = translator(lang).gettext
    me = str(status.get("id", ""))
    brokers = status.get("brokers", [])
    http_of = {str(b["id"]): str(b.get("http", "")) for b in brokers}
    name = str(status.get("name") or "")
    alive = sum(1 for b in brokers if b.get("alive", True))
    title_name = f"{name} " if name else ""
    pid = f" · pid {_num(status['pid'])}" if "pid" in status else ""
    public = status.get("view") == "public"
    view = f" · {_('public view')}" if public else ""
    html_lang = "zh-Hant-TW" if lang == ZH_TW else "en"
    summary = _("{alive}/{brokers} brokers online · {links} links · {users} users online").format(
        alive=alive,
        brokers=len(brokers),
        links=len(status.get("links", [])),
        users=sum(_users_at(status).values()),
    )
    caption = _(
        "Number in a circle: users online at that broker; on a line: round-trip time. "
        "★ = this broker."
    )
    return f"""<!doctype html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>{escape(_("ω IM cloud status"))} — {escape(title_name)}{escape(_short(me))}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(_("ω IM cloud status"))} <small>{_switch(lang, public)}</small></h1>
<p class="meta">{_("this broker")}: <span class="me">★</span> <b>{escape(name) or "—"}</b>
<code>{escape(me)}</code>{pid}<br>
{escape(summary)}{view}</p>
{_problems(status, _)}
<div class="grid"><section>
<h2>{escape(_("users online → their broker"))}</h2>
<table id="users"><tr><th>{_("name")}</th><th>{_("fingerprint")}</th><th>{_("broker")}</th>
<th>{_("devices")}</th></tr>{_user_rows(status, http_of, _)}</table>
<h2>{_("brokers")}</h2>
<table id="brokers"><tr><th>id</th><th>{_("state")}</th><th>{_("users")}</th>
<th>{_("client URL")}</th><th>{_("links · RTT")}</th></tr>{_broker_rows(status, http_of, _)}</table>
</section><section>
<h2>{_("topology")}</h2>
<figure>{topology_svg(status, _)}<figcaption>{escape(caption)}</figcaption></figure>
{_counters(status, _)}
</section></div>
</body></html>
"""
