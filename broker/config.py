"""The broker's settings: a TOML file (`titsd --config FILE`), then command-line flags on top.
configs/titsd.toml lists every setting with its default and a comment.

Two addresses: `bind` is where the sockets listen ("0.0.0.0", "::", an interface address),
`public_host` is the name clients and peers dial (in the broker's URL, its adverts, the status
page). `host` is the old single setting: a deprecated alias that sets both.

Paths in a config file (`data`, `cloud_secret`) are relative to the file's folder, not to the
working directory; paths given as flags are relative to the working directory.

Unknown keys, wrong types and out-of-range values are refused with the key and its line:
a typo in a config file should fail loudly, not be ignored.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from tits import wire
from tits.errors import ConfigError, WireError

from .peers import parse_url

DEFAULT_PORTS = {"client_port": 5570, "peer_port": 5571, "pub_port": 5572, "http_port": 8570}
WILDCARDS = {"0.0.0.0", "::", "[::]", "*", ""}
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class Limits:
    # the client port's ZMQ_MAXMSGSIZE: a media chunk is the biggest frame a client sends (a
    # Send's body is held to wire.MAX_BODY_FRAME on its own)
    max_frame: int = wire.MAX_CHUNK_FRAME
    max_frames: int = wire.MAX_FRAMES  # after the routing id: envelope and body
    rate: float = 20000.0
    burst: float = 40000.0
    garbage: int = 16
    logins_per_minute: int = 10
    login_queue: int = 64  # logins waiting for GnuPG before new ones get "busy"
    window: int = 1000  # deliveries in flight per device before it must acknowledge


# the smallest value each number may take (a negative limit, a zero window: refused)
MINIMUM: dict[str, float] = {
    # a media chunk's frame must pass the client port (a config from before the chunks grew
    # to 4 MiB says 1114112: refused at start and by --check, never a silent upload stall)
    "max_frame": wire.MAX_CHUNK_FRAME,
    "max_frames": 1, "rate": 1e-9, "burst": 1.0, "garbage": 0,
    "logins_per_minute": 1, "login_queue": 1, "window": 1,
    "session_timeout": 1e-9, "retry_s": 1e-9, "keep_s": 0.0, "max_age_s": 1e-9, "dedup_s": 1e-9,
    "media_retention_s": 0.0, "media_quota_bytes": 0, "media_max_size": 0, "media_max_chunks": 1,
    "media_rate_bytes": 0.0,
}  # fmt: skip


@dataclass
class BrokerConfig:
    data: Path = Path("var/titsd")
    bind: str = "127.0.0.1"  # the address the sockets listen on
    public_host: str = ""  # the name clients and peers dial [bind]
    client_port: int = DEFAULT_PORTS["client_port"]
    peer_port: int = DEFAULT_PORTS["peer_port"]
    pub_port: int = DEFAULT_PORTS["pub_port"]
    http_port: int = DEFAULT_PORTS["http_port"]
    keyserver: str | None = None
    status_token: str | None = None  # the status page's full view for this bearer (else loopback)
    join: list[str] = field(default_factory=list)
    cloud_secret: Path | None = None  # the cloud's join secret [<data>/cloud.secret, made once]
    name: str = field(default_factory=lambda: socket.gethostname()[:60] or "broker")
    durability: str = "full"
    session_timeout: float = 90.0  # seconds a session outlives its lost connection
    retry_s: float = 5.0  # resend an unacknowledged delivery after this long
    keep_s: float = 7 * 24 * 3600.0  # keep delivered messages this long for new devices
    max_age_s: float = 30 * 24 * 3600.0  # drop undelivered messages after this long
    dedup_s: float = 3600.0  # accepted ids kept in memory this long; older ones: the store
    log_level: str = "info"
    log_format: str = "console"  # "json": one JSON object a line (what `tits logs` reads)
    limits: Limits = field(default_factory=Limits)
    # -- media (broker/blobs.py): the chunk store's retention and limits --
    media_retention_s: float = 30 * 24 * 3600.0  # a file nobody offered or fetched this long goes
    media_quota_bytes: int = 2 << 30  # per user: the distinct files they offered, in retention
    media_max_size: int = 2 << 30  # bytes in one file
    media_max_chunks: int = wire.MAX_CHUNKS  # chunks in one file
    media_rate_bytes: float = 0.0  # chunk bytes a second per user, up and down; 0: no limit
    # a chunk from a broker that is not a neighbour comes over a direct connection to it (one
    # hop, not one per relay); false where brokers can reach only their neighbours
    media_direct: bool = True
    source: Path | None = field(default=None, compare=False)  # the config file, if any
    warnings: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        if not self.public_host:
            self.public_host = self.bind

    @property
    def host(self) -> str:
        """The advertised address (the old name; `bind` is where the sockets listen)."""
        return self.public_host

    @classmethod
    def load(
        cls, path: Path | None, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> BrokerConfig:
        """The file, then TITSD_<SETTING> environment variables (TITSD_CLIENT_PORT=5570,
        TITSD_LIMITS_RATE=500, TITSD_JOIN='["tcp://…"]'; a value is read as TOML, else as a
        string), then `overrides` (flags; None: not given). A bare call with no file and no
        data directory is refused rather than writing ./var/titsd."""
        text = ""
        raw: dict[str, Any] = {}
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(f"no config file {path}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read {path}: {exc}") from None
            raw = _parse(path, text)
            for key in ("data", "cloud_secret"):  # relative to the file, not the cwd
                if isinstance(raw.get(key), str):
                    raw[key] = str((path.parent / Path(raw[key]).expanduser()).resolve())
        where = _Where(path, text)
        warnings: list[str] = []
        if "host" in raw:
            host = raw.pop("host")
            warnings.append(f"{where.at('host')}: host is deprecated: use bind and public_host")
            if isinstance(host, str):
                raw.setdefault("bind", host)
                raw.setdefault("public_host", host)
        env = _from_env(environ if environ is not None else os.environ, where)
        if "limits" in env and isinstance(raw.get("limits"), dict):
            raw["limits"] = {**raw["limits"], **env.pop("limits")}
        raw.update(env)
        given = {k: v for k, v in overrides.items() if v is not None}
        if "host" in given:  # --host: the old flag sets both
            host = given.pop("host")
            given.setdefault("bind", host)
            given.setdefault("public_host", host)
        raw.update(given)
        if "data" not in raw:
            raise ConfigError(
                'no data directory: give --data DIR, or --config FILE with data = "DIR" '
                "(see configs/titsd.toml)"
            )
        limits_raw = raw.pop("limits", {})
        if not isinstance(limits_raw, dict):
            raise ConfigError(f"{where.at('limits')}: limits must be a [limits] table")
        values = _typed(cls, raw, where, "")
        lvalues = _typed(Limits, limits_raw, where, "limits")
        cfg = cls(**values, limits=Limits(**lvalues), source=path, warnings=warnings)
        cfg.data = Path(cfg.data).expanduser()
        if cfg.cloud_secret is not None:
            cfg.cloud_secret = Path(cfg.cloud_secret).expanduser()
        for url in cfg.join:
            try:
                parse_url(url)  # a typo in a seed fails at start, not at the first dial
            except WireError as exc:
                raise ConfigError(f"{where.at('join')}: join: {exc.message}") from None
        if cfg.durability not in ("full", "normal"):
            raise ConfigError(f'{where.at("durability")}: durability must be "full" or "normal"')
        if cfg.log_format not in LOG_FORMATS:
            raise ConfigError(f'{where.at("log_format")}: log_format must be "console" or "json"')
        if cfg.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"{where.at('log_level')}: log_level must be one of {LOG_LEVELS}")
        for name in DEFAULT_PORTS:
            if not 0 <= getattr(cfg, name) < 65536:
                raise ConfigError(f"{where.at(name)}: {name} must be a port number (0: any)")
        cfg.bind = cfg.bind.strip("[]") or "0.0.0.0"
        if cfg.public_host.strip("[]") in WILDCARDS:
            raise ConfigError(
                f"{where.at('public_host')}: public_host is needed when bind is {cfg.bind!r}: "
                "nobody can dial a wildcard address (the name clients and peers use)"
            )
        return cfg


ENV_PREFIX = "TITSD_"


def _from_env(environ: Mapping[str, str], where: _Where) -> dict[str, Any]:
    """TITSD_* variables as settings; an unknown one is refused like an unknown key."""
    top = {f.name for f in fields(BrokerConfig)} - {"limits", "source", "warnings"} | {"host"}
    lim = {f.name for f in fields(Limits)}
    out: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ("TITSD_PROFILE",):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        try:
            value: Any = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        if key in top:
            out[key] = str(Path(value).expanduser()) if key in ("data", "cloud_secret") else value
        elif key.startswith("limits_") and key[7:] in lim:
            out.setdefault("limits", {})[key[7:]] = value
        else:
            raise ConfigError(f"{name}: unknown setting (see configs/titsd.toml)")
    return out


def _parse(path: Path, text: str) -> dict[str, Any]:
    """TOML, its errors as FILE:LINE: what (a duplicate key named)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        if not m:
            raise ConfigError(f"{path}: {msg}") from None
        n = int(m.group(1))
        what = msg[: m.start()].strip()
        line = text.splitlines()[n - 1] if n <= len(text.splitlines()) else ""
        key = line.split("=", 1)[0].strip()
        if what.startswith("Cannot overwrite") and key:
            what = f"duplicate key {key}"
        raise ConfigError(f"{path}:{n}: {what}") from None


def url_host(host: str) -> str:
    """A host as it goes into a tcp:// endpoint or URL: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _Where:
    """The config file's lines, to name the line a key is on."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.path, self.lines = path, text.splitlines()

    def at(self, key: str, section: str = "") -> str:
        if self.path is None:
            return f"--{key.replace('_', '-')}"
        current = ""
        pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
        for n, line in enumerate(self.lines, 1):
            head = re.match(r"\s*\[([^\]]+)\]", line)
            if head:
                current = head.group(1).strip()
            elif current == section and pattern.match(line):
                return f"{self.path}:{n}"
        return str(self.path)


def _typed(cls: type, raw: dict[str, Any], where: _Where, section: str) -> dict[str, Any]:
    """Each value checked against its field's type and minimum; unknown keys refused."""
    kinds = {f.name: f for f in fields(cls) if f.name not in ("limits", "source", "warnings")}
    prefix = f"{section}." if section else ""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        loc = where.at(key, section)
        f = kinds.get(key)
        if f is None:
            raise ConfigError(f"{loc}: unknown setting {prefix}{key}")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc,operator]
        want = "a string"
        ok: bool
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            want = "a number"
            value = float(value) if ok else value
        elif isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            want = "a list of strings"
        else:  # str, Path, optional str/Path
            ok = isinstance(value, (str, Path))
        if not ok:
            raise ConfigError(f"{loc}: {prefix}{key} must be {want}, not {value!r}")
        if key in MINIMUM and value < MINIMUM[key]:
            low = MINIMUM[key]
            shown = f"{low}" if isinstance(low, int) else f"{low:g}"
            bound = f"at least {shown}" if low >= 1 or low == 0 else "greater than 0"
            raise ConfigError(f"{loc}: {prefix}{key} must be {bound}, not {value!r}")
        out[key] = value
    return out


def preflight(cfg: BrokerConfig) -> None:
    """What would make a start fail half-way, checked before anything is made: the data
    directory writable, the cloud secret private, the ports free. Raises ConfigError."""
    where = _Where(cfg.source, cfg.source.read_text() if cfg.source else "")
    data = cfg.data
    probe = data
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{where.at('data')}: data {data}: {probe} is not a directory")
    try:  # made and removed at once: os.access says yes to root on a read-only mount
        os.rmdir(tempfile.mkdtemp(prefix=".titsd-check-", dir=probe))
    except OSError as exc:
        why = exc.strerror
        raise ConfigError(
            f"{where.at('data')}: data directory {probe} is not writable: {why}"
        ) from None
    secret = cfg.cloud_secret or data / "cloud.secret"
    if secret.exists():
        loc = where.at("cloud_secret") if cfg.cloud_secret else str(secret)
        try:
            mode = secret.stat().st_mode
            with open(secret, "rb"):
                pass
        except OSError as exc:
            why = exc.strerror
            raise ConfigError(f"{loc}: cloud secret {secret} is unreadable: {why}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{loc}: cloud secret {secret} is readable by others (mode "
                f"{stat.S_IMODE(mode):04o}): chmod 600 {secret}"
            )
    seen: dict[int, str] = {}
    for name in DEFAULT_PORTS:
        port = getattr(cfg, name)
        if port and port in seen:
            raise ConfigError(f"{where.at(name)}: {name} {port} is also {seen[port]}")
        seen[port] = name
    family = socket.AF_INET6 if ":" in cfg.bind else socket.AF_INET
    for name in DEFAULT_PORTS:
        port = getattr(cfg, name)
        if port == 0:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no clash
            try:
                s.bind((cfg.bind, port))
            except OSError as exc:
                raise ConfigError(
                    f"{where.at(name)}: {name} {cfg.bind}:{port}: {exc.strerror}"
                ) from None


# What SIGHUP (or `titsd admin reload`) changes in a running broker; the rest needs a restart.
# limits.max_frame is a socket option libzmq takes before bind; dedup_s sizes the id memory.
LIVE = frozenset(
    {"session_timeout", "retry_s", "keep_s", "max_age_s", "log_level", "status_token"}
    | {f"limits.{f.name}" for f in fields(Limits) if f.name != "max_frame"}
)
SECRET = frozenset({"status_token"})  # logged as set/unset/changed, never as its value


def changes(old: BrokerConfig, new: BrokerConfig) -> dict[str, tuple[Any, Any]]:
    """Every setting whose value differs, as "key" or "limits.key" → (old, new)."""
    out: dict[str, tuple[Any, Any]] = {}
    for f in fields(BrokerConfig):
        if f.name in ("source", "warnings"):
            continue
        if f.name == "limits":
            for lf in fields(Limits):
                a, b = getattr(old.limits, lf.name), getattr(new.limits, lf.name)
                if a != b:
                    out[f"limits.{lf.name}"] = (a, b)
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            out[f.name] = (a, b)
    return out


def shown(key: str, value: Any) -> Any:
    """A value as a log line may carry it (a token never)."""
    if key in SECRET:
        return "(set)" if value else "(unset)"
    return str(value) if isinstance(value, Path) else value
