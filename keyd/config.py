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

An unknown key, a duplicate key, a value of the wrong type or out of range is an error, not a
warning, named with the file's line (`tits-keyd --check --config FILE` says so without
starting). A relative `data` path is relative to the config file's folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
            raise _bad("host", "host must be a non-empty string")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise _bad("port", "port must be an integer")
        if not 0 <= self.port <= 65535:
            raise _bad("port", f"port {self.port} is out of range 0–65535")
        if isinstance(self.max_upload, bool) or not isinstance(self.max_upload, int):
            raise _bad("max_upload", "max_upload must be an integer")
        if not 1024 <= self.max_upload <= 64 * 1024 * 1024:
            raise _bad("max_upload", "max_upload must be between 1024 and 67108864 bytes")
        for what in ("upload", "search"):
            rate, burst = getattr(self, f"{what}_rate"), getattr(self, f"{what}_burst")
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise _bad(f"{what}_rate", f"{what}_rate must be a number (per second)")
            if not 0 < rate <= MAX_RATE:
                raise _bad(
                    f"{what}_rate", f"{what}_rate must be above 0 and at most {MAX_RATE:.0f}"
                )
            if isinstance(burst, bool) or not isinstance(burst, int):
                raise _bad(f"{what}_burst", f"{what}_burst must be an integer")
            if not 1 <= burst <= MAX_BURST:
                raise _bad(f"{what}_burst", f"{what}_burst must be between 1 and {MAX_BURST}")
            setattr(self, f"{what}_rate", float(rate))
        if not isinstance(self.trusted_proxies, list) or not all(
            isinstance(a, str) for a in self.trusted_proxies
        ):
            raise _bad("trusted_proxies", "trusted_proxies must be a list of IP addresses")
        try:
            self.trusted_proxies = [str(ipaddress.ip_address(a)) for a in self.trusted_proxies]
        except ValueError as exc:
            raise _bad("trusted_proxies", f"trusted_proxies: {exc}") from None
        if self.log_level not in LOG_LEVELS:
            raise _bad("log_level", f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if not isinstance(self.log_json, bool):
            raise _bad("log_json", "log_json must be true or false")
        if not isinstance(self.fallback, list) or not all(
            isinstance(u, str) for u in self.fallback
        ):
            raise _bad("fallback", "fallback must be a list of URLs")
        try:
            self.fallback = [fallback_base(u) for u in self.fallback]
        except ConfigError as exc:
            raise _bad("fallback", exc.message) from None
        if not isinstance(self.data, (str, Path)) or not str(self.data):
            raise _bad("data", "data must be a directory path")
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


class _KeyError(ConfigError):
    """A bad value, with the setting it belongs to (so the file's line can be named)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _bad(key: str, message: str) -> _KeyError:
    return _KeyError(key, message)


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
    for n, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return n
    return None


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its TOML; errors as FILE[:LINE]: what (a duplicate key named)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no config file {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)|\(at end of document\)", msg)
        if not m:
            raise ConfigError(f"{path}: {msg}") from None
        lines = text.splitlines()
        n = int(m.group(1)) if m.group(1) else max(len(lines), 1)
        what = msg[: m.start()].strip()
        key = lines[n - 1].split("=", 1)[0].strip() if n <= len(lines) else ""
        if what.startswith("Cannot overwrite") and key:
            what = f"duplicate key {key}"
        raise ConfigError(f"{path}:{n}: {what}") from None


def load(path: Path | None, **flags: Any) -> KeydConfig:
    """Settings from `path` (if given), then every flag that is not None on top. A bad value
    from the file is named with its line: `FILE:LINE: what`; one from a flag as `--flag`."""
    values: dict[str, Any] = {}
    text = ""
    if path is not None:
        path = Path(path)
        text, values = _read(path)
        known = {f.name for f in fields(KeydConfig)}
        for key in values:
            if key not in known:
                where = _line_of(text, key)
                raise ConfigError(
                    f"{path}{f':{where}' if where else ''}: unknown setting {key} "
                    f"(known: {', '.join(sorted(known))})"
                )
        if isinstance(values.get("data"), str):  # relative to the file, as titsd's data
            values["data"] = str((path.parent / Path(values["data"]).expanduser()).resolve())
    given = {k: v for k, v in flags.items() if v is not None}
    values.update(given)
    try:
        return KeydConfig(**values)
    except _KeyError as exc:
        if exc.key in given or path is None:
            raise ConfigError(f"--{exc.key.replace('_', '-')}: {exc.message}") from None
        where = _line_of(text, exc.key)
        raise ConfigError(f"{path}{f':{where}' if where else ''}: {exc.message}") from None


def preflight(cfg: KeydConfig, source: Path | None = None) -> None:
    """What would make a start fail, checked without starting: the data directory writable
    (or makeable), the port free. Raises ConfigError naming the setting."""
    text = source.read_text(encoding="utf-8") if source is not None else ""

    def at(key: str) -> str:
        if source is None:
            return f"--{key.replace('_', '-')}"
        line = _line_of(text, key)
        return f"{source}:{line}" if line else str(source)

    probe = cfg.data
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{at('data')}: data {cfg.data}: {probe} is not a directory")
    try:  # made and removed at once: os.access says yes to root on a read-only mount
        os.rmdir(tempfile.mkdtemp(prefix=".keyd-check-", dir=probe))
    except OSError as exc:
        raise ConfigError(
            f"{at('data')}: data directory {probe} is not writable: {exc.strerror}"
        ) from None
    if cfg.port:
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((cfg.host.strip("[]"), cfg.port))
            except OSError as exc:
                raise ConfigError(
                    f"{at('port')}: port {cfg.host}:{cfg.port}: {exc.strerror}"
                ) from None
