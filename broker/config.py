"""The broker's settings: a TOML file (`titsd --config FILE`), then command-line flags on top.

    # configs/titsd.toml
    data = "var/titsd"           # GnuPG key, CURVE key, mailbox, ready.json
    host = "127.0.0.1"
    client_port = 5570           # 0: pick a free port (see <data>/ready.json)
    peer_port = 5571
    pub_port = 5572
    http_port = 8570
    keyserver = "http://127.0.0.1:11371"   # optional
    join = []                    # tcp://HOST:PEERPORT#KEY of brokers to link to (the cloud)
    cloud_secret = "cloud.secret" # the cloud's join secret, the same file on every broker
    durability = "full"          # "full": fsync every group commit; "normal": survive a
                                 # process crash but not a power cut

    [limits]
    max_frame = 1114112          # bytes per ZeroMQ frame (ZMQ_MAXMSGSIZE)
    rate = 20000                 # messages per second per session (token bucket) ...
    burst = 40000                # ... and its depth
    garbage = 16                 # bad frames a connection may send before it is dropped

Unknown keys are refused: a typo in a config file should fail loudly, not be ignored.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tits import wire
from tits.config import read_toml
from tits.errors import ConfigError, WireError

from .peers import parse_url

DEFAULT_PORTS = {"client_port": 5570, "peer_port": 5571, "pub_port": 5572, "http_port": 8570}


@dataclass
class Limits:
    max_frame: int = wire.MAX_BODY + (64 << 10)
    max_frames: int = wire.MAX_FRAMES  # after the routing id: envelope and body
    rate: float = 20000.0
    burst: float = 40000.0
    garbage: int = 16
    logins_per_minute: int = 10
    login_queue: int = 64  # logins waiting for GnuPG before new ones get "busy"
    window: int = 1000  # deliveries in flight per device before it must acknowledge


@dataclass
class BrokerConfig:
    data: Path = Path("var/titsd")
    host: str = "127.0.0.1"
    client_port: int = DEFAULT_PORTS["client_port"]
    peer_port: int = DEFAULT_PORTS["peer_port"]
    pub_port: int = DEFAULT_PORTS["pub_port"]
    http_port: int = DEFAULT_PORTS["http_port"]
    keyserver: str | None = None
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
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def load(cls, path: Path | None, **overrides: Any) -> BrokerConfig:
        raw: dict[str, Any] = dict(read_toml(path)) if path else {}
        if path and not raw and not path.exists():
            raise ConfigError(f"no config file {path}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        limits_raw = raw.pop("limits", {}) or {}
        known = {f.name for f in fields(cls)} - {"limits"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown broker setting(s): {', '.join(sorted(unknown))}")
        lknown = {f.name for f in fields(Limits)}
        if not isinstance(limits_raw, dict) or set(limits_raw) - lknown:
            bad = set(limits_raw) - lknown if isinstance(limits_raw, dict) else {"limits"}
            raise ConfigError(f"unknown limit(s): {', '.join(sorted(bad))}")
        try:
            cfg = cls(**raw, limits=Limits(**limits_raw))
            cfg.data = Path(cfg.data).expanduser()
            cfg.join = [str(j) for j in cfg.join]
            for url in cfg.join:
                parse_url(url)  # a typo in a seed fails at start, not at the first dial
            if cfg.cloud_secret is not None:
                cfg.cloud_secret = Path(cfg.cloud_secret).expanduser()
        except TypeError as exc:
            raise ConfigError(f"bad broker setting: {exc}") from None
        except WireError as exc:
            raise ConfigError(f"--join: {exc.message}") from None
        if cfg.durability not in ("full", "normal"):
            raise ConfigError('durability must be "full" or "normal"')
        for name in DEFAULT_PORTS:
            port = getattr(cfg, name)
            if not isinstance(port, int) or not 0 <= port < 65536:
                raise ConfigError(f"{name} must be a port number (0: any free port)")
        return cfg
