"""The broker's HTTP side, in its own thread (stdlib `ThreadingHTTPServer`):

    GET /            the status page (`statuspage.render`)
    GET /api/status  JSON: id, url, pid, brokers, links, users (fingerprint, name, broker,
                     devices) and counters
    GET /api/key     the broker's armored OpenPGP public key

It only reads `snapshot()`, a dict the broker thread replaces (never mutates) a few times a
second, so the message loop never waits for a web request.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import statuspage

if TYPE_CHECKING:
    from .server import Broker


class _Handler(BaseHTTPRequestHandler):
    server: StatusServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        path = self.path.split("?", 1)[0]
        status = self.server.snapshot()
        if path in ("/", "/index.html"):
            self._reply(200, "text/html; charset=utf-8", statuspage.render(status).encode())
        elif path == "/api/status":
            body = json.dumps(status, ensure_ascii=False, indent=1).encode()
            self._reply(200, "application/json; charset=utf-8", body)
        elif path == "/api/key":
            self._reply(200, "application/pgp-keys", self.server.armored_key.encode())
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")

    def _reply(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # requests are not worth a log line each


class StatusServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, host: str, port: int, snapshot: Callable[[], dict[str, Any]], armored_key: str
    ) -> None:
        super().__init__((host, port), _Handler)
        self.snapshot = snapshot
        self.armored_key = armored_key
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="titsd-http"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


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
            passed=transit.passed if transit is not None else 0,
            passing=len(transit) if transit is not None else 0,
        ),
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
