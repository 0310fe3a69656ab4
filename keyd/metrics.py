"""keyd's `/metrics` in the Prometheus text format: requests by route and status with their
durations, and what the store holds (keys, devices, revocations), read at scrape time.

Routes are the router's patterns (`/tits/devices/{fp}`), never the path asked: a fingerprint
is never a label, and a scanner asking for ten thousand made-up paths adds one series
(`other`), not ten thousand.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .service import KeyService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _StoreCollector(Collector):
    def __init__(self, service: KeyService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        stats = self.service.store.stats()
        held = GaugeMetricFamily("keyd_stored", "What the key store holds.", labels=["kind"])
        for kind in ("keys", "devices", "revocations"):
            held.add_metric([kind], stats.get(kind, 0))
        yield held


class KeydMetrics:
    def __init__(self, service: KeyService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "keyd_http_requests", "HTTP requests answered, by route and status code.",
            ["route", "code"], registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "keyd_http_request_seconds", "Time to answer a request, by route.", ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )  # fmt: skip
        self.registry.register(_StoreCollector(service))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        t0 = time.perf_counter()
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "other"
        response = await handler(request)  # the error middleware inside answers every failure
        self.requests.labels(route, str(response.status)).inc()
        self.seconds.labels(route).observe(time.perf_counter() - t0)
        return response

    def render(self) -> bytes:
        return generate_latest(self.registry)
