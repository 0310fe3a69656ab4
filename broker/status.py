"""The broker's HTTP side: a bounded asyncio server (aiohttp's low-level `web.Server`) in its
own thread, off the message loop.

    GET /            the status page (`statuspage.render`): ?q= searches the users, ?page=N,
                     ?lang=en|zh-TW (else the browser's first language; zh-TW by default)
    GET /api/status  JSON: id, url, pid, brokers, links, users (fingerprint, name, broker,
                     devices) and counters; users_total and users_at (per broker) always;
                     with ?q=, ?offset=, ?limit= (≤ 500) only that page of the users (sorted
                     by name, then fingerprint), with users_matched — what the page fetches
    GET /topology.svg  the drawing alone (the page swaps it in when brokers or links change)
    GET /api/key     the broker's armored OpenPGP public key
    GET /metrics     Prometheus text format (broker/metrics.py): counts only, no fingerprint,
                     so it is served to anyone, like the public view

Two views of the same snapshot. The *full* one (above) is for the operator: a client on
loopback, or one that shows the `status_token` of the config (`Authorization: Bearer …` or
`?token=…`). Everyone else gets the *public* one: a user only as far as they chose — listed
users by name, fingerprint and broker (no devices), unlisted users only as a count per broker
(`unlisted`), and no pid. `?view=public` asks for the public view from anywhere.

It only reads `snapshot()`, a dict the broker thread replaces (never mutates) a few times a
second, so the message loop never waits for a web request; the page and the JSON are rendered
once per snapshot, however many ask.

Cheap traffic must not cost the broker its place in the cloud: the stdlib's thread per
connection (no limit, no timeout) let 1,000 idle connections stall the whole process. Here
one thread serves every connection; at most MAX_CONNECTIONS are open (a new one closes the
oldest, so a flood of idle sockets cannot lock people out), a connection that sends nothing
for IDLE_S is closed, and request lines and headers are bounded. A client that hangs up early
is no error (nothing is logged).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from . import statuspage

if TYPE_CHECKING:
    from .server import Broker

log = structlog.get_logger("tits.broker.status")

MAX_CONNECTIONS = 256
IDLE_S = 10.0  # a connection that sends no request this long is closed (keep-alive included)
BACKLOG = 1024
MAX_LINE = 4096  # request line and each header
MAX_HEADERS = 64
_QUIET = logging.getLogger("tits.broker.http")  # aiohttp's own logger: only what is ours
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

Snapshot = Callable[[], dict[str, Any]]
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus's text exposition


class _BoundedServer(web.Server):
    """aiohttp's server, keeping at most `limit` connections: a new one closes the oldest."""

    def __init__(self, handler: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limit = limit
        self.open: dict[RequestHandler, None] = {}  # oldest first
        self.evicted = 0

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open[handler] = None
        while len(self.open) > self.limit:
            oldest = next(iter(self.open))
            del self.open[oldest]
            oldest.force_close()
            self.evicted += 1

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.open.pop(handler, None)
        super().connection_lost(handler, exc)


class StatusServer:
    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Snapshot,
        armored_key: str,
        token: str | None = None,
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        """Binds at once (so `port` is known before `start`); serves from `start` on."""
        self.snapshot = snapshot
        self.metrics = metrics
        self.token = token or None
        self.armored_key = armored_key.encode()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host.strip("[]"), port))
        self._sock.listen(BACKLOG)
        self._sock.setblocking(False)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._server: _BoundedServer | None = None
        # per view: the snapshot it was made from and what was made of it (made once each)
        self._views: dict[bool, _View] = {}
        self._made_cache: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], bytes]] = OrderedDict()
        self._budget, self._budget_at = float(MADE_PER_S), time.monotonic()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._server.open) if self._server is not None else 0

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="titsd-http", daemon=True
        )  # fmt: skip
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()

    # -- the HTTP thread --------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        self._server = _BoundedServer(
            self._handle, MAX_CONNECTIONS, keepalive_timeout=IDLE_S, lingering_time=1.0,
            max_line_size=MAX_LINE, max_field_size=MAX_LINE, max_headers=MAX_HEADERS,
            logger=_QUIET, access_log=None,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._server, sock=self._sock, backlog=BACKLOG)
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            for handler in list(self._server.open):
                handler.force_close()
            await server.wait_closed()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _reply(405, "text/plain; charset=utf-8", b"GET only\n")
        path = request.path
        try:
            if path in ("/", "/index.html"):
                return _reply(200, "text/html; charset=utf-8", self._page(request))
            if path == "/api/status":
                return _reply(200, "application/json; charset=utf-8", self._json(request))
            if path == "/topology.svg":
                view = self._view(self._full(request))
                svg = statuspage.topology_svg(view.doc, _lang(request)).encode()
                return _reply(200, "image/svg+xml; charset=utf-8", svg)
            if path == "/api/key":
                return _reply(200, "application/pgp-keys", self.armored_key)
            if path == "/metrics" and self.metrics is not None:
                return _reply(200, METRICS_TYPE, self.metrics())
        except _Busy:
            return web.Response(
                status=503, body=b"busy: try again in a second\n",
                headers={"Content-Type": "text/plain; charset=utf-8", "Retry-After": "1",
                         "Cache-Control": "no-store"},
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - a page that fails to render is a 500, not a crash
            log.exception("status.render_failed", path=path[:64])
            return _reply(500, "text/plain; charset=utf-8", b"internal error\n")
        return _reply(404, "text/plain; charset=utf-8", b"not found\n")

    def _view(self, full: bool) -> _View:
        """The current snapshot in one view, with its users sorted and counted, made once."""
        status = self.snapshot()
        held = self._views.get(full)
        if held is None or held.snapshot is not status:
            held = self._views[full] = _View.of(status, full)
        return held

    def _json(self, request: web.BaseRequest) -> bytes:
        full, query = self._full(request), request.query
        view = self._view(full)
        if not any(k in query for k in ("q", "offset", "limit")):
            return view.json()
        q = query.get("q", "").strip()[: statuspage.MAX_QUERY]
        offset = _int(query.get("offset"), 0, 0, 10_000_000)
        limit = _int(query.get("limit"), statuspage.PAGE_SIZE, 1, MAX_LIMIT)
        return self._made(
            ("json", full, q, offset, limit), view,
            lambda: json.dumps(view.page(q, offset, limit), ensure_ascii=False).encode(),
        )  # fmt: skip

    def _page(self, request: web.BaseRequest) -> bytes:
        full, lang, query = self._full(request), _lang(request), request.query
        view = self._view(full)
        keep = {k: query[k][:200] for k in ("view", "token", "lang", "q") if query.get(k)}
        q = query.get("q", "").strip()[: statuspage.MAX_QUERY]
        page = _int(query.get("page"), 1, 1, 1_000_000)
        size = statuspage.PAGE_SIZE
        key = ("html", full, lang, q, page, tuple(sorted(keep.items())))
        return self._made(
            key, view,
            lambda: statuspage.render(view.page(q, (page - 1) * size, size), lang, keep).encode(),
        )  # fmt: skip

    def _made(self, key: tuple[Any, ...], view: _View, make: Callable[[], bytes]) -> bytes:
        """What `make` makes of this snapshot, made once per key (the last MADE_KEEP kept);
        at most MADE_PER_S new ones a second, so that requests each asking a new search of
        10,000 users cannot take the GIL from the message loop: past that, 503."""
        held = self._made_cache.get(key)
        if held is not None and held[0] is view.snapshot:
            self._made_cache.move_to_end(key)
            return held[1]
        now = time.monotonic()
        self._budget = min(MADE_PER_S, self._budget + (now - self._budget_at) * MADE_PER_S)
        self._budget_at = now
        if self._budget < 1.0:
            raise _Busy
        self._budget -= 1.0
        body = make()
        self._made_cache[key] = (view.snapshot, body)
        self._made_cache.move_to_end(key)
        while len(self._made_cache) > MADE_KEEP:
            self._made_cache.popitem(last=False)
        return body

    def _full(self, request: web.BaseRequest) -> bool:
        """The operator's view: asked with the token, or from loopback (unless `?view=public`)."""
        if request.query.get("view") == "public":
            return False
        if self.token is not None:
            shown = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            shown = shown or request.query.get("token", "")
            if shown and hmac.compare_digest(shown.encode(), self.token.encode()):
                return True
        if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
            return False  # a proxy on this host relays others: loopback says nothing then
        peer = request.transport.get_extra_info("peername") if request.transport else None
        try:
            return peer is not None and ipaddress.ip_address(peer[0]).is_loopback
        except ValueError:
            return False


MAX_LIMIT = 500  # users in one page of /api/status
MADE_KEEP = 64  # pages and searches kept, made of the current snapshot
MADE_PER_S = 50.0  # new ones made a second (a search of 10,000 users: a few ms each)


class _Busy(Exception):
    pass


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(text))) if text else default
    except ValueError:
        return default


def _lang(request: web.BaseRequest) -> str:
    """?lang=en|zh-TW, else the browser's first language (zh*: zh-TW, any other: en)."""
    asked = request.query.get("lang") or request.headers.get("Accept-Language") or ""
    first = asked.split(",")[0].strip().lower()
    return "en" if first and not first.startswith("zh") else "zh-TW"


class _View:
    """One view of one snapshot: its document, the users in page order, the JSON, made once."""

    def __init__(self, snapshot: dict[str, Any], doc: dict[str, Any]) -> None:
        self.snapshot, self.doc = snapshot, doc
        self.ordered = sorted(doc.get("users", []), key=statuspage.sort_key)
        self._json: bytes | None = None

    @classmethod
    def of(cls, status: dict[str, Any], full: bool) -> _View:
        doc = dict(status, view="full") if full else public_view(status)
        counts = statuspage.users_at(doc)
        doc["users_at"] = counts
        doc["users_total"] = sum(counts.values())
        return cls(status, doc)

    def json(self) -> bytes:
        if self._json is None:
            self._json = json.dumps(self.doc, ensure_ascii=False, indent=1).encode()
        return self._json

    def page(self, q: str, offset: int, limit: int) -> dict[str, Any]:
        q = q.strip()[: statuspage.MAX_QUERY]
        users = [u for u in self.ordered if statuspage.matches(u, q)] if q else self.ordered
        return dict(
            self.doc, users=users[offset : offset + limit], users_matched=len(users),
            offset=offset, limit=limit, q=q,
        )  # fmt: skip


def public_view(status: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as anyone may see it: listed users (those who gave their name) by name,
    fingerprint and broker, unlisted ones only counted per broker; no devices, no pid."""
    listed: list[dict[str, Any]] = []
    unlisted: dict[str, int] = {}
    for user in status.get("users", []):
        if user.get("name"):
            listed.append(
                {"fingerprint": user["fingerprint"], "name": user["name"], "broker": user["broker"]}
            )
        else:
            unlisted[user["broker"]] = unlisted.get(user["broker"], 0) + 1
    doc = {k: v for k, v in status.items() if k not in ("users", "pid")}
    return dict(doc, users=listed, unlisted=unlisted, view="public")


def _reply(code: int, ctype: str, body: bytes) -> web.Response:
    return web.Response(
        status=code, body=body,
        headers={"Content-Type": ctype, "Cache-Control": "no-store",
                 "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


# each broker's local users as snapshot rows, made again only when its presence list changed
_LOCAL: weakref.WeakKeyDictionary[Broker, tuple[list[Any], list[dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)


def build_snapshot(broker: Broker) -> dict[str, Any]:
    """What /api/status serves (and the page renders): this broker, the cloud, the users."""
    cloud = broker.cloud.status()
    transit = broker.relay.transit
    presence = broker.local_presence()
    held = _LOCAL.get(broker)
    if held is not None and held[0] is presence:
        local = held[1]  # unchanged since the last snapshot (the page only reads it)
    else:
        local = [
            {"fingerprint": e.fingerprint, "name": e.name, "broker": broker.fingerprint,
             "devices": list(e.devices)}
            for e in presence
        ]  # fmt: skip
        _LOCAL[broker] = (presence, local)
    users = sorted(local + cloud["users"], key=lambda u: (u["fingerprint"], u["broker"]))
    return {
        "id": broker.fingerprint,
        "url": broker.url,
        "http": broker.http_url,
        "peer_url": broker.cloud.peer_url,  # what another broker passes as --join
        "pid": os.getpid(),
        "name": broker.cfg.name,
        "brokers": cloud["brokers"],
        "links": cloud["links"],
        "routes": cloud["routes"],  # target broker → next hop, as this broker routes now
        "users": users,
        "problems": broker.cloud.problems(),
        "sessions": broker.open_sessions(),
        "counters": dict(
            broker.counters,
            delivered=broker.delivery.delivered,
            forwarded=broker.relay.forwarded,
            arrived=broker.relay.arrived,
            kept=broker.relay.kept,
            passed=transit.passed if transit is not None else 0,
            passing=len(transit) if transit is not None else 0,
        ),
        "gossip": {  # certificates of other brokers, checked by GnuPG off the loop
            "certs_checked": broker.cloud.verifier.checked,
            "certs_pending": broker.cloud.verifier.pending,
            "certs_over_budget": broker.cloud.verifier.over_budget,
            "loop_lag_ms_max": round(broker.cloud.peers.lag_s * 1000, 1),
        },
        "remembered_ids": broker.remembered_ids(),
        # the mailbox's retention, in seconds (a live setting: SIGHUP may change it)
        "retention": {"keep_s": broker.cfg.keep_s, "max_age_s": broker.cfg.max_age_s},
        "store": {
            "commits": broker.writer.stats["commits"],
            "rows": broker.writer.stats["rows"],
            "commit_ms_max": round(broker.writer.stats["max_s"] * 1000, 2),
        },
        "ports": {
            "client": broker.client_port,
            "peer": broker.peer_port,
            "pub": broker.pub_port,
            "http": broker.http_port,
        },
    }


def write_ready(broker: Broker) -> Path:
    """`<data>/ready.json`, written atomically once every socket is bound: how tests, `tits
    cloud up` and operators learn the ports a broker started with 0 ("any") got."""
    info = {
        "id": broker.fingerprint,
        "url": broker.url,
        "pid": os.getpid(),
        "host": broker.cfg.host,
        "client_port": broker.client_port,
        "peer_port": broker.peer_port,
        "pub_port": broker.pub_port,
        "http_port": broker.http_port,
        "http": broker.http_url,
        "curve_key": broker.keys.curve_hex,
        "peer_url": broker.cloud.peer_url,  # what another broker passes as --join
    }
    path = broker.cfg.data / "ready.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, path)
    return path
