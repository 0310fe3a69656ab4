"""keyd's settings: a TOML file whose keys mirror the command-line flags; flags win.

    host = "127.0.0.1"        # --host
    port = 11371              # --port (0: any free port; see <data>/ready.json)
    data = "/var/lib/tits-keyd"   # --data: SQLite store, ready.json, throwaway GnuPG homes
    fallback = []             # --fallback URL (repeatable): read-only key servers asked on a miss
    max_upload = 1048576      # --max-upload: bytes accepted by POST /pks/add (else 413)
    upload_rate = 1.0         # --upload-rate: uploads a second one client address may make ...
    upload_burst = 60         # --upload-burst: ... after a burst of this many (else 429)
    search_rate = 5.0         # --search-rate: op=index/vindex searches a second per client ...
    search_burst = 60         # --search-burst: ... after a burst of this many (else 429)
    trusted_proxies = []      # --trusted-proxy ADDR (repeatable): whose X-Forwarded-For counts
    log_level = "info"        # --log-level
    log_json = false          # --log-json

An unknown key or a value of the wrong type is an error, not a warning.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tits.config import read_toml
from tits.errors import ConfigError

DEFAULT_PORT = 11371
DEFAULT_MAX_UPLOAD = 1024 * 1024
MAX_RATE = 100_000.0
MAX_BURST = 1_000_000
LOG_LEVELS = ("debug", "info", "warning", "error")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tits-keyd"


@dataclass
class KeydConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data: Path = field(default_factory=default_data_dir)
    fallback: list[str] = field(default_factory=list)
    max_upload: int = DEFAULT_MAX_UPLOAD
    upload_rate: float = 1.0
    upload_burst: int = 60
    search_rate: float = 5.0
    search_burst: int = 60
    trusted_proxies: list[str] = field(default_factory=list)
    log_level: str = "info"
    log_json: bool = False

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host must be a non-empty string")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError("port must be an integer")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range 0–65535")
        if isinstance(self.max_upload, bool) or not isinstance(self.max_upload, int):
            raise ConfigError("max_upload must be an integer")
        if not 1024 <= self.max_upload <= 64 * 1024 * 1024:
            raise ConfigError("max_upload must be between 1024 and 67108864 bytes")
        for what in ("upload", "search"):
            rate, burst = getattr(self, f"{what}_rate"), getattr(self, f"{what}_burst")
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise ConfigError(f"{what}_rate must be a number (per second)")
            if not 0 < rate <= MAX_RATE:
                raise ConfigError(f"{what}_rate must be above 0 and at most {MAX_RATE:.0f}")
            if isinstance(burst, bool) or not isinstance(burst, int):
                raise ConfigError(f"{what}_burst must be an integer")
            if not 1 <= burst <= MAX_BURST:
                raise ConfigError(f"{what}_burst must be between 1 and {MAX_BURST}")
            setattr(self, f"{what}_rate", float(rate))
        if not isinstance(self.trusted_proxies, list) or not all(
            isinstance(a, str) for a in self.trusted_proxies
        ):
            raise ConfigError("trusted_proxies must be a list of IP addresses")
        try:
            self.trusted_proxies = [str(ipaddress.ip_address(a)) for a in self.trusted_proxies]
        except ValueError as exc:
            raise ConfigError(f"trusted_proxies: {exc}") from None
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if not isinstance(self.log_json, bool):
            raise ConfigError("log_json must be true or false")
        if not isinstance(self.fallback, list) or not all(
            isinstance(u, str) for u in self.fallback
        ):
            raise ConfigError("fallback must be a list of URLs")
        self.fallback = [fallback_base(u) for u in self.fallback]
        self.data = Path(self.data).expanduser()

    @property
    def url(self) -> str:
        """The URL a client on this machine uses to reach the server (given its real port)."""
        return base_url(self.host, self.port)


def base_url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "127.0.0.1", "localhost"):
        host = "127.0.0.1"
    elif host in ("::", "::1"):
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def fallback_base(url: str) -> str:
    """`hkp://host[:port]`, `hkps://host`, `http(s)://host[:port]` → an http(s) base URL."""
    parts = urlsplit(url.strip())
    scheme = {"hkp": "http", "hkps": "https", "http": "http", "https": "https"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ConfigError(f"fallback {url!r} is not an hkp://, hkps://, http:// or https:// URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"fallback {url!r} must be a plain server address")
    port = parts.port or (11371 if parts.scheme == "hkp" else None)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def load(path: Path | None, **flags: Any) -> KeydConfig:
    """Settings from `path` (if given), then every flag that is not None on top."""
    values: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"no config file {path}")
        values = read_toml(Path(path))
        known = {f.name for f in fields(KeydConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
    values.update({k: v for k, v in flags.items() if v is not None})
    return KeydConfig(**values)
