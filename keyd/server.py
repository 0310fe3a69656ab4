"""keyd's lifecycle: open the store, bind, announce readiness, serve until told to stop.

Readiness is announced twice: one line on stdout with the URL, and `<data>/ready.json`
(`{"pid", "host", "port", "url"}`), written atomically once the socket is bound — with
`--port 0` this is how tests and `tits cloud up` learn the port. It is removed on a clean stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import structlog
from aiohttp import web

from .config import KeydConfig, base_url
from .fallback import Fallback
from .http import make_app
from .limits import RateLimiter
from .service import KeyService
from .store import Store
from .validate import KeyValidator

SHUTDOWN_TIMEOUT = 5.0  # seconds given to requests in flight (an upload in gpg) on SIGTERM

log = structlog.get_logger("keyd")


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class KeyServer:
    def __init__(self, config: KeydConfig) -> None:
        self.config = config
        self.data = Path(config.data)
        self.ready_path = self.data / "ready.json"
        self.url: str | None = None
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._store: Store | None = None
        self._fallback: Fallback | None = None

    async def start(self) -> str:
        self.data.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data, 0o700)
        self.ready_path.unlink(missing_ok=True)
        scratch = self.data / "tmp"
        shutil.rmtree(scratch, ignore_errors=True)  # throwaway GnuPG homes of an earlier run
        self._store = Store(self.data / "keys.sqlite")
        self._fallback = Fallback(self.config.fallback)
        service = KeyService(self._store, KeyValidator(scratch), self._fallback)
        app = make_app(
            service,
            self.config.max_upload,
            uploads=RateLimiter(self.config.upload_rate, self.config.upload_burst),
            searches=RateLimiter(self.config.search_rate, self.config.search_burst),
            trusted_proxies=frozenset(self.config.trusted_proxies),
        )
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1])
        self.url = base_url(self.config.host, self.port)
        ready = {"pid": os.getpid(), "host": self.config.host, "port": self.port, "url": self.url}
        write_atomically(self.ready_path, json.dumps(ready) + "\n")
        log.info(
            "keyd.started",
            url=self.url,
            data=str(self.data),
            keys=self._store.key_count(),
            fallback=self.config.fallback,
        )
        return self.url

    async def stop(self) -> None:
        self.ready_path.unlink(missing_ok=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._fallback is not None:
            await self._fallback.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        log.info("keyd.stopped")


async def serve(config: KeydConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    server = KeyServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await server.start()
        sys.stdout.write(f"tits-keyd listening on {url}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()
