"""Per-client budgets: uploads and searches are rationed by the client's address.

A client is its IP address, an IPv6 client its /64 (one host is handed a whole /64, so single
IPv6 addresses cost an attacker nothing). Each client has a token bucket holding up to `burst`
tokens that refills at `rate` tokens a second; a request spends one. A client with none left is
told how long to wait (HTTP 429 with Retry-After). At most `max_clients` buckets are kept, the
least recently used forgotten first: a forgotten client starts again with a full bucket, which
needs more addresses than `max_clients` to exploit.

Behind a reverse proxy every request comes from the proxy's address, which would put every
user on one budget: `trusted_proxies` names the proxies whose `X-Forwarded-For` is believed
(its rightmost address that is not itself a trusted proxy). Nobody else's is.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_CLIENTS = 10_000


def client_key(remote: str | None) -> str:
    """The budget a request's peer address draws on."""
    if not remote:
        return "?"
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_address(
    remote: str | None, forwarded_for: str | None, trusted_proxies: frozenset[str]
) -> str | None:
    """The address a request is budgeted by: its peer's, or, from a trusted proxy, the
    client's as that proxy reports it."""
    if not forwarded_for or remote is None or remote not in trusted_proxies:
        return remote
    for field in reversed(forwarded_for.split(",")):
        try:
            hop = str(ipaddress.ip_address(field.strip()))
        except ValueError:
            return remote  # a proxy that writes garbage: budget the proxy
        if hop not in trusted_proxies:
            return hop
    return remote


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, client: str) -> float:
        """Spend one of `client`'s tokens and return 0.0, or return the seconds until it has
        one again (nothing spent)."""
        now = self.clock()
        tokens, when = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - when) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)  # to the end: most recently used
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
