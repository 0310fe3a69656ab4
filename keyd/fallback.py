"""Read-only fallback: ask configured public key servers for a key keyd does not hold.

This module only ever sends `GET /pks/lookup?op=get` — there is deliberately no code here (or
anywhere in ω IM) that uploads to another server; `tests/unit/test_keyd_no_upload.py` keeps it
that way. What comes back is validated exactly like an upload before keyd caches it, and must
be the key that was asked for. Misses are remembered for a while, so a flood of lookups for
absent keys does not become a flood of requests to public servers.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import aiohttp
import structlog

from . import openpgp

FALLBACK_TIMEOUT = 5.0
MAX_FALLBACK_RESPONSE = 1024 * 1024
MISS_TTL = 300.0
MISS_CACHE_SIZE = 10_000

log = structlog.get_logger("keyd.fallback")


class Fallback:
    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self._session: aiohttp.ClientSession | None = None
        self._misses: OrderedDict[str, float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _recent_miss(self, search: str) -> bool:
        until = self._misses.get(search)
        if until is None:
            return False
        if until < time.monotonic():
            del self._misses[search]
            return False
        return True

    def _remember_miss(self, search: str) -> None:
        self._misses[search] = time.monotonic() + MISS_TTL
        self._misses.move_to_end(search)
        while len(self._misses) > MISS_CACHE_SIZE:
            self._misses.popitem(last=False)

    async def get(self, search: str) -> list[openpgp.KeyBlock]:
        """Keys the fallbacks return for an exact search (`0x<fpr>`, `0x<keyid>`, email)."""
        if not self.urls or self._recent_miss(search):
            return []
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FALLBACK_TIMEOUT)
            )
        for base in self.urls:
            try:
                async with self._session.get(
                    f"{base}/pks/lookup",
                    params={"op": "get", "options": "mr", "search": search},
                    allow_redirects=False,
                ) as resp:
                    if resp.status != 200:
                        log.debug("fallback.miss", server=base, status=resp.status)
                        continue
                    body = await resp.content.read(MAX_FALLBACK_RESPONSE + 1)
                    if len(body) > MAX_FALLBACK_RESPONSE:
                        log.warning("fallback.too_large", server=base)
                        continue
                keys = openpgp.parse_armored_keys(body.decode("utf-8", "replace"))
            except (aiohttp.ClientError, TimeoutError, openpgp.PacketError) as exc:
                log.warning("fallback.failed", server=base, error=type(exc).__name__)
                continue
            if keys:
                log.info("fallback.hit", server=base, keys=len(keys))
                return keys
        self._remember_miss(search)
        return []
