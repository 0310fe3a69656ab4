"""keyd's lifecycle: open the store, bind, announce readiness, serve until told to stop.

Readiness is announced twice: one line on stdout with the URL, and `<data>/ready.json`
(`{"pid", "host", "port", "url"}`), written atomically once the socket is bound — with
`--port 0` this is how tests and `tits cloud up` learn the port. It is removed on a clean stop.

SIGHUP reads the config again: the upload and search budgets, the trusted proxies and the log
level change live; a change to anything else is logged as needing a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import structlog
from aiohttp import web

from tits.errors import TitsError
from tits.log import set_level

from .config import KeydConfig, base_url
from .fallback import Fallback
from .http import LIMITS_KEY, make_app
from .limits import RateLimiter
from .service import KeyService
from .store import Store
from .validate import KeyValidator

LIVE = (
    "upload_rate",
    "upload_burst",
    "search_rate",
    "search_burst",
    "trusted_proxies",
    "log_level",
)
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
        self._app: web.Application | None = None

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
        self._app = app
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

    def reload(self, new: KeydConfig) -> dict[str, object]:
        """Apply what can change live from `new`; log it and what needs a restart."""
        old = self.config
        names = [f.name for f in fields(old) if getattr(old, f.name) != getattr(new, f.name)]
        changed = {f: [getattr(old, f), getattr(new, f)] for f in names if f in LIVE}
        restart = sorted(f for f in names if f not in LIVE)
        if self._app is not None:
            limits = self._app[LIMITS_KEY]
            limits.uploads.rate, limits.uploads.burst = new.upload_rate, float(new.upload_burst)
            limits.searches.rate, limits.searches.burst = new.search_rate, float(new.search_burst)
            limits.trusted_proxies = frozenset(new.trusted_proxies)
        set_level(new.log_level)
        for f in changed:
            setattr(old, f, getattr(new, f))
        log.warning("config.reloaded", changed=changed, restart_needed=restart)
        return {"changed": changed, "restart_needed": restart}

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


async def serve(config: KeydConfig, load: Callable[[], KeydConfig] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly; `load` reads the settings for SIGHUP."""
    server = KeyServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def hup() -> None:
        try:
            new = load() if load is not None else None
        except TitsError as exc:
            log.error("config.reload_failed", error=exc.message)
            return
        if new is not None:
            server.reload(new)

    loop.add_signal_handler(signal.SIGHUP, hup)
    try:
        url = await server.start()
        sys.stdout.write(f"tits-keyd listening on {url}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()
