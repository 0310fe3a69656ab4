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
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import statuspage


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
