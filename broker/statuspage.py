"""The status web page: the brokers first (state, users, links and round-trip times), a drawing
of the topology, the invariant problems, the users online → their proxy broker (paged and
searchable), and the counters. Pure rendering from the `/api/status` document, so what the page
shows and what scripts read can never disagree.

Built for 30 brokers and 10,000 users. The server renders the first view (one page of users,
`?q=` and `?page=` work without script); then a small script (SCRIPT, static: no data is ever
spliced into it) fetches `/api/status` for the page of users it shows, every REFRESH_S, and
updates the tables in place, and `/topology.svg` only when the brokers or links changed. So a
refresh costs one page of users in JSON, not the whole page: at 10,000 users the page was 2 MB.

The drawing lays the brokers on a circle large enough that no two touch; from 13 brokers on
their labels run outward along the radius (at the top they would collide side by side), and
links are curves bowed toward the centre, so a link between near neighbours does not run
under the broker between them.

Every string on the page came from a peer or a user (names especially): all of it is escaped
here, and the script sets only `textContent`. Each broker cell carries the full broker id in
its `title` (and each SVG shape its ids in `data-*`), for people hovering and tests reading
the DOM. One language a page: zh-TW, or English (`?lang=en`, or the browser's first choice).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tits.i18n import N_, translator
from tits.spans import span

REFRESH_S = 3
PAGE_SIZE = 50
MAX_QUERY = 100  # characters of a search
NODE_R = 24  # a broker's circle, while there is room
MIN_NODE_R = 14
GAP = 12  # between two neighbouring circles
LABEL_ROOM = 92  # outside the circle of brokers: a label of 8 monospace characters and a star
RADIAL_FROM = 13  # brokers from which labels run along the radius
MAX_RTT_LABELS = 30  # beyond this many links the RTTs are only in the table
BOW = 0.55  # a link's control point: this far from the centre, of its chord's midpoint

Tr = Callable[[str], str]


def chooser(lang: str) -> Tr:
    """gettext for one page's language (the page's, not the process's)."""
    return translator(lang).gettext


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
    "purged": N_("taken back before delivery"),
}

STYLE = """
body { font-family: "Noto Sans TC", "Noto Sans CJK TC", "PingFang TC", "Microsoft JhengHei",
  system-ui, sans-serif; margin: 1.2em 1.5em; color: #1f2733; background: #fafbfc; }
h1 { margin: 0 0 .2em; font-size: 1.6em; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; } h2 small { color: #667; font-weight: normal; }
.meta { color: #445; margin: 0 0 .6em; } .meta b { color: #1f2733; }
table { border-collapse: collapse; background: #fff; }
td, th { border: 1px solid #d5dae3; padding: .25em .55em; text-align: left;
  vertical-align: top; }
th { background: #eef2f8; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK TC", monospace; font-size: .82em; }
td code { white-space: nowrap; } td.url { max-width: 16em; }
td code.url { word-break: break-all; white-space: normal; }
a { color: #1d5fa8; text-decoration: none; } a:hover { text-decoration: underline; }
.me { color: #c0392b; font-weight: 600; } .nowrap { white-space: nowrap; }
.up { color: #2e7d32; } .down { color: #999; }
ul.links { margin: 0; padding: 0; list-style: none; max-width: 30em; font-size: .9em; }
ul.links li { display: inline-block; white-space: nowrap; margin-right: .8em; }
.grid { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 0 2em;
  align-items: start; }
@media (max-width: 1100px) { .grid { grid-template-columns: 1fr; } }
figure { margin: 0; } figcaption { color: #667; font-size: .85em; max-width: 40em; }
svg { background: #fff; border: 1px solid #d5dae3; }
.ok { color: #2e7d32; } .problems { background: #fdecea; border: 1px solid #e0a19a;
  padding: .4em .9em; color: #8a1c12; } .problems ul { margin: .2em 0; }
form.search { margin: .2em 0 .5em; display: flex; gap: .6em; align-items: center;
  flex-wrap: wrap; }
form.search input { font: inherit; padding: .2em .45em; min-width: 16em; }
.pager { color: #445; } .pager a, .pager span.off { margin: 0 .3em; }
.pager span.off { color: #aab; }
"""


def _short(fp: str) -> str:
    return fp[:8] + "…" + fp[-4:] if len(fp) > 12 else fp


def _num(value: Any) -> str:
    return escape(f"{value:,}" if isinstance(value, int) else str(value))


# -- the drawing -------------------------------------------------------------------------------


def geometry(n: int) -> tuple[float, float, float]:
    """(radius of the circle of brokers, radius of each broker's circle, the square's side)."""
    node_r = float(NODE_R)
    radius = 165.0
    if n > 1:
        step = 2 * math.sin(math.pi / n)  # chord between neighbours, per unit of radius
        node_r = max(MIN_NODE_R, min(NODE_R, (radius * step - GAP) / 2))
        radius = max(radius, (2 * node_r + GAP) / step)
    side = 2 * (radius + node_r + LABEL_ROOM)
    return radius, node_r, side


def layout(ids: list[str]) -> dict[str, tuple[float, float]]:
    """Brokers on a circle, in fingerprint order, so the drawing is stable between refreshes."""
    n = max(len(ids), 1)
    radius, _unused, side = geometry(n)
    c = side / 2
    return {
        b: (
            c + radius * math.cos(2 * math.pi * i / n - math.pi / 2),
            c + radius * math.sin(2 * math.pi * i / n - math.pi / 2),
        )
        for i, b in enumerate(sorted(ids))
    }


def users_at(status: dict[str, Any]) -> dict[str, int]:
    """Users online per broker: the counts the document carries, else those it lists."""
    counted = status.get("users_at")
    if isinstance(counted, dict):
        return {str(k): int(v) for k, v in counted.items() if isinstance(v, int)}
    count: dict[str, int] = {}
    for u in status.get("users", []):
        count[str(u.get("broker", ""))] = count.get(str(u.get("broker", "")), 0) + 1
    unlisted = status.get("unlisted")
    for broker, n in unlisted.items() if isinstance(unlisted, dict) else []:
        if isinstance(n, int):
            count[str(broker)] = count.get(str(broker), 0) + n
    return count


def topology_svg(status: dict[str, Any], lang: str = "zh-TW") -> str:
    """Brokers as circles (the number inside: users online there) with their short id outside,
    links as curves labelled with their RTT."""
    _ = chooser(lang)
    brokers = {str(b["id"]): b for b in status.get("brokers", [])}
    count = users_at(status)
    pos = layout(list(brokers))
    _unused, node_r, side = geometry(len(pos))
    c = side / 2
    radial = len(pos) >= RADIAL_FROM
    links = [k for k in status.get("links", []) if k.get("a") in pos and k.get("b") in pos]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side:.0f}" height="{side:.0f}" '
        f'viewBox="0 0 {side:.0f} {side:.0f}" role="img" aria-label="{_("topology")}" '
        'font-family="DejaVu Sans, sans-serif">'
    ]
    labels = []
    for link in links:
        a, b = sorted((str(link["a"]), str(link["b"])))
        (x1, y1), (x2, y2) = pos[a], pos[b]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        qx, qy = c + (mx - c) * BOW, c + (my - c) * BOW
        parts.append(
            f'<path class="link" d="M{x1:.1f},{y1:.1f} Q{qx:.1f},{qy:.1f} {x2:.1f},{y2:.1f}" '
            f'data-a="{escape(a, quote=True)}" data-b="{escape(b, quote=True)}" '
            'fill="none" stroke="#8a9bb5" stroke-width="2"/>'
        )
        rtt = link.get("rtt_ms")
        if rtt is not None and len(links) <= MAX_RTT_LABELS:
            # on the curve's middle (t = 1/2), which the bow keeps off the centre
            lx, ly = (mx + qx) / 2, (my + qy) / 2
            labels.append(
                f'<text x="{lx:.1f}" y="{ly + 3:.1f}" font-size="10" fill="#34495e" '
                'text-anchor="middle" paint-order="stroke" stroke="#fff" stroke-width="3">'
                f"{float(rtt):.2f} ms</text>"
            )
    parts += labels  # above every link
    font = max(10, min(16, int(node_r * 0.7)))
    for bid, (x, y) in pos.items():
        b = brokers[bid]
        me = bid == status.get("id")
        alive = b.get("alive", True)
        fill = "#e8f4ea" if alive else "#f0f0f0"
        stroke = "#c0392b" if me else ("#2e7d32" if alive else "#999")
        dash = "" if alive else ' stroke-dasharray="4 3"'
        dx, dy = x - c, y - c
        norm = math.hypot(dx, dy) or 1.0
        lx, ly = x + dx / norm * (node_r + 7), y + dy / norm * (node_r + 7)
        name = ("★ " if me else "") + bid[:8]
        down = _("down")
        if radial:  # along the radius, read left to right on both halves
            angle = math.degrees(math.atan2(dy, dx))
            anchor = "start" if dx >= 0 else "end"
            turn = angle if dx >= 0 else angle + 180
            label = (
                f'<text class="label" x="{lx:.1f}" y="{ly + 4:.1f}" font-size="11" '
                f'text-anchor="{anchor}" transform="rotate({turn:.1f} {lx:.1f} {ly:.1f})" '
                f'font-family="DejaVu Sans Mono, monospace" fill="{stroke}">'
                f"{escape(name)}{'' if alive else ' ' + down}</text>"
            )
        else:
            anchor = "start" if dx > 8 else ("end" if dx < -8 else "middle")
            ly += 4 if abs(dy) < 8 else (12 if dy > 0 else -4)
            if not alive and dy < -8:
                ly -= 14  # the second line ("down") must not run into the circle
            state = "" if alive else f'<tspan x="{lx:.1f}" dy="1.2em">{down}</tspan>'
            label = (
                f'<text class="label" x="{lx:.1f}" y="{ly:.1f}" font-size="12" '
                f'text-anchor="{anchor}" font-family="DejaVu Sans Mono, monospace" '
                f'fill="{stroke}">{escape(name)}{state}</text>'
            )
        parts.append(
            f'<g class="broker"><title>{escape(bid)}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{node_r:.1f}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{3 if me else 2}"{dash} '
            f'data-id="{escape(bid, quote=True)}"/>'
            f'<text class="count" x="{x:.1f}" y="{y + font * 0.36:.1f}" font-size="{font}" '
            f'font-weight="bold" text-anchor="middle" fill="#1f2733">{count.get(bid, 0)}</text>'
            f"{label}</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


# -- the tables --------------------------------------------------------------------------------


def short_url(url: str) -> str:
    """tcp://HOST:PORT#KEY with the key's first 8 hex (the whole one is in the title)."""
    head, sep, key = url.partition("#")
    return f"{head}#{key[:8]}…" if sep and len(key) > 8 else url


def _broker_cell(bid: str, http_of: dict[str, str], shown: str = "") -> str:
    http = http_of.get(bid, "")
    text = escape(shown or _short(bid))
    label = f'<code title="{escape(bid, quote=True)}">{text}</code>'
    if http.startswith(("http://", "https://")):
        return f'<a href="{escape(http, quote=True)}">{label}</a>'
    return label


def _broker_rows(status: dict[str, Any], http_of: dict[str, str], _: Tr) -> str:
    me = str(status.get("id", ""))
    count = users_at(status)
    peers: dict[str, list[tuple[str, Any]]] = {}
    for link in status.get("links", []):
        a, b = str(link.get("a", "")), str(link.get("b", ""))
        peers.setdefault(a, []).append((b, link.get("rtt_ms")))
        peers.setdefault(b, []).append((a, link.get("rtt_ms")))
    rows = []
    # this broker first, then the live ones, then the dead, each in id order
    order = sorted(
        status.get("brokers", []),
        key=lambda b: (str(b["id"]) != me, not b.get("alive", True), str(b["id"])),
    )
    for b in order:
        bid = str(b["id"])
        links = "".join(
            "<li>{peer}{rtt}</li>".format(
                peer=_broker_cell(p, http_of, p[:8]),
                rtt=f" · {float(rtt):.2f} ms" if rtt is not None else "",
            )
            for p, rtt in sorted(peers.get(bid, []), key=lambda pr: pr[0])
        )
        alive = b.get("alive", True)
        name = f"<br><small>{escape(str(b['name']))}</small>" if b.get("name") else ""
        state = (
            f'<span class="up">{_("alive")}</span>'
            if alive
            else f'<span class="down">{_("down")}</span>'
        )
        star = '<span class="me">★</span> ' if bid == me else ""
        listed = f'<ul class="links">{links}</ul>' if links else "—"
        full_url = str(b.get("url", ""))
        url = f'<span title="{escape(full_url, quote=True)}">{escape(short_url(full_url))}</span>'
        rows.append(
            f'<tr><td class="nowrap">{star}{_broker_cell(bid, http_of)}{name}</td>'
            f'<td>{state}</td><td class="num">{count.get(bid, 0):,}</td>'
            f'<td class="url"><code class="url">{url}</code></td><td>{listed}</td></tr>'
        )
    return "".join(rows)


def sort_key(user: dict[str, Any]) -> tuple[str, str]:
    """How users are listed (here and by /api/status's pages): by name, then fingerprint."""
    return (str(user.get("name") or "\uffff"), str(user.get("fingerprint", "")))


def matches(user: dict[str, Any], q: str) -> bool:
    """A search: in the name or the fingerprint, case folded."""
    folded = q.casefold()
    return folded in str(user.get("name") or "").casefold() or folded in str(
        user.get("fingerprint", "")
    ).casefold().replace(" ", "")


def _user_rows(status: dict[str, Any], http_of: dict[str, str], _: Tr) -> str:
    me = str(status.get("id", ""))
    here = f' <span class="me nowrap">{_("here")}</span>'
    rows = []
    for u in status.get("users", []):
        proxy = str(u.get("broker", ""))
        devices = u.get("devices")
        rows.append(
            "<tr><td>{name}</td><td><code>{fp}</code></td><td>{proxy}{here}</td>"
            '<td class="num">{dev}</td></tr>'.format(
                name=escape(str(u.get("name") or "—")),
                fp=escape(str(u.get("fingerprint", ""))),
                proxy=_broker_cell(proxy, http_of),
                here=here if proxy == me else "",
                dev=len(devices) if isinstance(devices, list) else "—",
            )
        )
    unlisted = status.get("unlisted")
    if not status.get("q"):
        for proxy, n in sorted(unlisted.items() if isinstance(unlisted, dict) else []):
            rows.append(
                '<tr class="unlisted"><td colspan="2">{what}</td><td>{proxy}{here}</td>'
                '<td class="num">—</td></tr>'.format(
                    what=_("({num} unlisted users)").format(num=_num(n)),
                    proxy=_broker_cell(str(proxy), http_of),
                    here=here if proxy == me else "",
                )
            )
    if rows:
        return "".join(rows)
    if status.get("q"):
        return f'<tr><td colspan="4">{_("no user matches")}</td></tr>'
    return f'<tr><td colspan="4">{_("no users online")}</td></tr>'


def _problems(status: dict[str, Any], _: Tr) -> str:
    if "problems" not in status:
        return ""
    problems = status.get("problems") or []
    if not problems:
        alive = sum(1 for b in status.get("brokers", []) if b.get("alive", True))
        if alive < 4:  # the invariants are defined from 4 brokers on: say what holds instead
            return (
                '<p class="ok" id="problems">✓ '
                + _(
                    "all {alive} brokers linked to each other (the invariants apply from 4 "
                    "brokers on)"
                ).format(alive=alive)
                + "</p>"
            )
        return (
            '<p class="ok" id="problems">✓ '
            + _("invariants hold: every broker has at least 3 links, and no link is a bridge")
            + "</p>"
        )
    items = "".join(f"<li>{escape(str(p))}</li>" for p in problems)
    head = _("problems ({n_problems})").format(n_problems=len(problems))
    return f'<div class="problems" id="problems"><b>⚠ {head}</b><ul>{items}</ul></div>'


def _counters(status: dict[str, Any], _: Tr) -> str:
    counters = status.get("counters")
    if not isinstance(counters, dict) or not counters:
        return ""
    cells = []
    for k, v in counters.items():
        english = COUNTER_LABELS.get(str(k))
        label = _(english) if english else str(k)
        cells.append(f'<th>{escape(label)}</th><td class="num">{_num(v)}</td>')
    if "sessions" in status:
        sessions = _num(status["sessions"])
        cells.append(f'<th>{_("sessions")}</th><td class="num">{sessions}</td>')
    rows = "".join("<tr>" + "".join(cells[i : i + 2]) + "</tr>" for i in range(0, len(cells), 2))
    return f'<h2>{_("Counters")}</h2><table id="counters">{rows}</table>'


def _meta(status: dict[str, Any], _: Tr) -> str:
    me = str(status.get("id", ""))
    brokers = status.get("brokers", [])
    alive = sum(1 for b in brokers if b.get("alive", True))
    total = status.get("users_total")
    online = total if isinstance(total, int) else sum(users_at(status).values())
    name = escape(str(status.get("name") or "")) or "—"
    pid = f" · pid {_num(status['pid'])}" if "pid" in status else ""
    public = " · " + _("public view") if status.get("view") == "public" else ""
    links = len(status.get("links", []))
    return (
        f'{_("This broker")}：<span class="me">★</span> <b>{name}</b> '
        f"<code>{escape(me)}</code>{pid}<br>"
        + _("{alive}/{n_brokers} brokers alive · {links} links · {online:,} users online").format(
            alive=alive, n_brokers=len(brokers), links=links, online=online
        )
        + public
    )


def _retention(status: dict[str, Any], _: Tr) -> str:
    """The mailbox's retention in words (the script leaves it: a setting, not a counter)."""
    r = status.get("retention")
    if not isinstance(r, dict):
        return ""
    try:
        keep, max_age = float(r["keep_s"]), float(r["max_age_s"])
    except (KeyError, TypeError, ValueError):
        return ""
    text = _(
        "Mailbox retention: every message is kept at most {max_age}, and one all devices "
        "have received for {keep} (for devices linked later)"
    ).format(keep=span(keep, _), max_age=span(max_age, _))
    return f'<p class="meta" id="retention">{escape(text)}</p>'


def _pager(status: dict[str, Any], _: Tr, keep: dict[str, str]) -> str:
    offset = int(status.get("offset", 0) or 0)
    limit = int(status.get("limit", PAGE_SIZE) or PAGE_SIZE)
    matched = status.get("users_matched")
    matched = matched if isinstance(matched, int) else len(status.get("users", []))
    shown = len(status.get("users", []))
    first, last = (offset + 1, offset + shown) if shown else (0, 0)
    page = offset // limit + 1
    pages = max(1, math.ceil(matched / limit))

    def link(to: int, text: str) -> str:
        if to < 1 or to > pages or to == page:
            return f'<span class="off">{text}</span>'
        query = urlencode({**keep, "page": str(to)})
        return f'<a href="?{escape(query, quote=True)}" data-page="{to}">{text}</a>'

    where = _("{first:,}–{last:,} of {matched:,}").format(first=first, last=last, matched=matched)
    return (
        f'<span class="pager" id="pager">{link(page - 1, _("‹ previous"))}'
        f'<span id="range">{where}</span>{link(page + 1, _("next ›"))}</span>'
    )


def strings(lang: str) -> dict[str, str]:
    """What the script writes, in the page's language."""
    _ = chooser(lang)
    return {
        "alive": _("alive"),
        "down": _("down"),
        "here": _("here"),
        "range": _("{first}–{last} of {matched}"),
        "none": _("no users online"),
        "nomatch": _("no user matches"),
        "unlisted": _("({n} unlisted users)"),
        "meta": _("{alive}/{brokers} brokers alive · {links} links · {users} users online"),
        "public": " · " + _("public view"),
        "ok": "✓ "
        + _("invariants hold: every broker has at least 3 links, and no link is a bridge"),
        "ok_few": "✓ "
        + _("all {alive} brokers linked to each other (the invariants apply from 4 brokers on)"),
        "problems": "⚠ " + _("problems ({n})"),
        "stale": _("(cannot update: {why})"),
        **{k: _(v) for k, v in COUNTER_LABELS.items()},
        "sessions": _("sessions"),
    }


def render(status: dict[str, Any], lang: str = "zh-TW", keep: dict[str, str] | None = None) -> str:
    """The page for a document of /api/status (one page of users, as `users_page` cuts it).
    `keep`: the query the page was asked with (view, token, lang, q), for its own links."""
    _ = chooser(lang)
    keep = dict(keep or {})
    keep.pop("page", None)
    me = str(status.get("id", ""))
    brokers = status.get("brokers", [])
    http_of = {str(b["id"]): str(b.get("http", "")) for b in brokers}
    name = str(status.get("name") or "")
    title_name = f"{name} " if name else ""
    q = str(status.get("q") or "")
    hidden = "".join(
        f'<input type="hidden" name="{escape(k, quote=True)}" value="{escape(v, quote=True)}">'
        for k, v in keep.items()
        if k != "q"
    )
    config = json.dumps(
        {"refresh_s": REFRESH_S, "page_size": int(status.get("limit") or PAGE_SIZE),
         "strings": strings(lang)},
        ensure_ascii=False,
    ).replace("<", "\\u003c")  # fmt: skip
    caption = _(
        "Number in a circle: users online at that broker; on a link: round-trip time. "
        "★ is this broker."
    )
    return f"""<!doctype html>
<html lang="{"en" if lang == "en" else "zh-Hant-TW"}"><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="{REFRESH_S * 5}"></noscript>
<title>{_("ω IM cloud status")} — {escape(title_name)}{escape(_short(me))}</title>
<style>{STYLE}</style></head><body data-updates="0">
<h1>{_("ω IM cloud status")}</h1>
<p class="meta" id="meta">{_meta(status, _)}</p>
{_retention(status, _)}
<div id="problems-box">{_problems(status, _)}</div>
<div class="grid"><section>
<h2>{_("Brokers")}</h2>
<table id="brokers"><thead><tr><th>id</th><th>{_("state")}</th>
<th>{_("users")}</th><th>{_("client URL")}</th>
<th>{_("links · RTT")}</th></tr></thead>
<tbody>{_broker_rows(status, http_of, _)}</tbody></table>
<h2>{_("Users online → proxy")}</h2>
<form class="search" id="search" method="get">{hidden}
<input type="search" name="q" id="q" value="{escape(q, quote=True)}" maxlength="{MAX_QUERY}"
 placeholder="{_("search a name or fingerprint")}" autocomplete="off">
{_pager(status, _, keep)}</form>
<table id="users"><thead><tr><th>{_("name")}</th><th>{_("fingerprint")}</th>
<th>{_("proxy")}</th><th>{_("devices")}</th></tr></thead>
<tbody>{_user_rows(status, http_of, _)}</tbody></table>
</section><section>
<h2>{_("Topology")}</h2>
<figure><div id="topology">{topology_svg(status, lang)}</div>
<figcaption>{caption}</figcaption></figure>
<div id="counters-box">{_counters(status, _)}</div>
</section></div>
<script type="application/json" id="config">{config}</script>
<script>{SCRIPT}</script>
</body></html>
"""


# The page's script (static/statuspage.js), read once: static text, no data is spliced in.
SCRIPT = (Path(__file__).parent / "static" / "statuspage.js").read_text(encoding="utf-8")
