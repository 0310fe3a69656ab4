"""The broker's HTTP side: a bounded asyncio server (aiohttp's low-level `web.Server`) in its
own thread, off the message loop.

    GET /            the status page (`statuspage.render`)
    GET /api/status  JSON: id, url, pid, brokers, links, users (fingerprint, name, broker,
                     devices) and counters
    GET /api/key     the broker's armored OpenPGP public key

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
    ) -> None:
        """Binds at once (so `port` is known before `start`); serves from `start` on."""
        self.snapshot = snapshot
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
        # per (view, language): (the snapshot it was rendered from, html, json)
        self._rendered: dict[tuple[bool, str], tuple[dict[str, Any], bytes, bytes]] = {}

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
                lang = statuspage.pick_lang(
                    request.query.get("lang"), request.headers.get("Accept-Language")
                )
                page = self._render(self._full(request), lang)[0]
                return _reply(200, "text/html; charset=utf-8", page)
            if path == "/api/status":
                doc = self._render(self._full(request))[1]
                return _reply(200, "application/json; charset=utf-8", doc)
            if path == "/api/key":
                return _reply(200, "application/pgp-keys", self.armored_key)
        except Exception:  # noqa: BLE001 - a page that fails to render is a 500, not a crash
            log.exception("status.render_failed", path=path[:64])
            return _reply(500, "text/plain; charset=utf-8", b"internal error\n")
        return _reply(404, "text/plain; charset=utf-8", b"not found\n")

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

    def _render(self, full: bool, lang: str = statuspage.ZH_TW) -> tuple[bytes, bytes]:
        """The page (in `lang`) and the JSON of the current snapshot in one view, rendered
        once each."""
        status = self.snapshot()
        held = self._rendered.get((full, lang))
        if held is None or held[0] is not status:
            doc = dict(status, view="full") if full else public_view(status)
            page = statuspage.render(doc, lang).encode()
            data = json.dumps(doc, ensure_ascii=False, indent=1).encode()
            held = self._rendered[(full, lang)] = (status, page, data)
        return held[1], held[2]


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


def build_snapshot(broker: Broker) -> dict[str, Any]:
    """What /api/status serves (and the page renders): this broker, the cloud, the users."""
    cloud = broker.cloud.status()
    transit = broker.relay.transit
    local = [
        {"fingerprint": e.fingerprint, "name": e.name, "broker": broker.fingerprint,
         "devices": list(e.devices)}
        for e in broker.local_presence()
    ]  # fmt: skip
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
