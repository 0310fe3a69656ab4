"""keyd's per-client budgets (token buckets) and their settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tits.errors import ConfigError
from tits.keyd.config import load
from tits.keyd.limits import RateLimiter, client_address, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes back in 1/rate s
    assert limiter.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 3600  # refills to the burst, never beyond
    assert [limiter.take("a") for _ in range(4)][-1] > 0


def test_refusals_spend_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.take("a") == 0.0
    for _ in range(100):
        assert limiter.take("a") > 0
    clock.now += 1.0
    assert limiter.take("a") == 0.0


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=100)
    for i in range(10_000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100


def test_client_keys() -> None:
    assert client_key("127.0.0.1") == "127.0.0.1"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    # one IPv6 host holds a /64: every address in it shares one budget
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) == client_key("") == "?"
    assert client_key("fe80::1%eth0") == "fe80::/64"


def test_settings(tmp_path: Path) -> None:
    c = load(None)
    assert (c.upload_rate, c.upload_burst, c.search_rate, c.search_burst) == (1.0, 60, 5.0, 60)
    cfg = tmp_path / "k.toml"
    cfg.write_text("upload_rate = 2\nupload_burst = 5\nsearch_rate = 0.5\n")
    c = load(cfg, search_burst=7)
    assert (c.upload_rate, c.upload_burst, c.search_rate, c.search_burst) == (2.0, 5, 0.5, 7)
    for text in ("upload_rate = 0\n", "upload_rate = true\n", "search_burst = 0\n",
                 'search_rate = "fast"\n', "upload_burst = 1.5\n"):  # fmt: skip
        cfg.write_text(text)
        with pytest.raises(ConfigError):
            load(cfg)


def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    proxies = frozenset({"127.0.0.1", "10.0.0.2"})
    assert client_address("192.0.2.1", "198.51.100.7", proxies) == "192.0.2.1"  # not a proxy
    assert client_address("127.0.0.1", None, proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", "198.51.100.7", proxies) == "198.51.100.7"
    # the rightmost hop that is not a trusted proxy: what the client wrote itself is ignored
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.2", proxies) == (
        "198.51.100.7"
    )
    assert client_address("127.0.0.1", "2001:DB8::0001", proxies) == "2001:db8::1"
    assert client_address("127.0.0.1", "not an address", proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", "10.0.0.2", proxies) == "127.0.0.1"
    cfg = tmp_path / "k.toml"
    cfg.write_text('trusted_proxies = ["::0001", "127.0.0.1"]\n')
    assert load(cfg).trusted_proxies == ["::1", "127.0.0.1"]
    cfg.write_text('trusted_proxies = ["localhost"]\n')
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load(cfg)
