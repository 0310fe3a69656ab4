"""`titsd`: run one broker until SIGTERM or Ctrl-C.

    titsd [--config FILE] [--data DIR] [--host 127.0.0.1] [--client-port N] [--peer-port N]
          [--pub-port N] [--http-port N] [--keyserver URL] [--join tcp://HOST:PEERPORT ...]

Flags override the config file. Port 0 picks a free port; once every socket is bound the broker
writes `<data>/ready.json` (id, url, pid, ports) atomically, and removes it when it stops.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from pathlib import Path

import structlog

from tits.errors import TitsError
from tits.log import configure

from .config import BrokerConfig
from .server import Broker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="titsd", description="ω IM broker")
    p.add_argument("--config", type=Path, help="TOML config file (see configs/titsd.toml)")
    p.add_argument("--data", type=Path, help="data directory: keys, mailbox, ready.json")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    for name, what in (
        ("client", "clients connect here (CURVE); 0 picks a free port"),
        ("peer", "peer brokers connect here (CURVE, admitted by the cloud secret)"),
        ("pub", "gossip to linked peers (PUB, sealed with the cloud secret)"),
        ("http", "status page / and /api/status"),
    ):
        p.add_argument(f"--{name}-port", type=int, dest=f"{name}_port", metavar="N", help=what)
    p.add_argument("--keyserver", help="ω IM key server URL, e.g. http://127.0.0.1:11371")
    p.add_argument(
        "--join", action="append", metavar="tcp://HOST:PEERPORT#KEY", default=None,
        help="a broker of the cloud to join (its peer URL); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--cloud-secret", type=Path, dest="cloud_secret", metavar="FILE",
        help="the cloud's join secret (hex), the same file on every broker "
        "[<data>/cloud.secret, made on first start]",
    )  # fmt: skip
    p.add_argument("--name", help="a name for this broker (in its GnuPG key)")
    p.add_argument("--durability", choices=["full", "normal"])
    p.add_argument("--log-level", dest="log_level", help="debug, info, warning, error")
    p.add_argument("--log-json", action="store_true", help="log one JSON object a line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {
        k: getattr(args, k)
        for k in (
            "data",
            "host",
            "client_port",
            "peer_port",
            "pub_port",
            "http_port",
            "keyserver",
            "join",
            "cloud_secret",
            "name",
            "durability",
            "log_level",
        )
    }
    try:
        cfg = BrokerConfig.load(args.config, **overrides)
    except TitsError as exc:
        print(f"titsd: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    configure(cfg.log_level, json=args.log_json)
    broker = Broker(cfg)
    try:
        broker.start()
    except (TitsError, OSError) as exc:
        msg = exc.message if isinstance(exc, TitsError) else str(exc)
        structlog.get_logger("titsd").error("broker.start_failed", error=msg)
        raise SystemExit(1) from None

    def _stop(signum: int, frame: object) -> None:
        broker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Each message allocates a few containers; at the default gen-0 threshold (700) the
    # collector ran every few dozen forwards, and what start-up made never becomes garbage.
    # Measured (benchmarks/cloud.py, 2 runs each): relays 7–8 µs a forward, was 10–13.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    profile = os.environ.get("TITSD_PROFILE")  # a developer's aid: write cProfile stats here
    try:
        if profile:
            import cProfile

            cProfile.runctx("broker.run()", globals(), {"broker": broker}, profile)
        else:
            broker.run()
    finally:
        broker.close()


if __name__ == "__main__":
    main()
