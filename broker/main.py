"""`titsd`: run one broker until SIGTERM or Ctrl-C.

    titsd [--config FILE] [--data DIR] [--bind 0.0.0.0] [--public-host NAME] [--client-port N]
          [--peer-port N] [--pub-port N] [--http-port N] [--keyserver URL] [--join URL ...]
          [--check]
    titsd backup DEST (--config FILE | --data DIR)     an online copy of mailbox and keys
    titsd restore SRC (--config FILE | --data DIR)     into a new or empty data directory
    titsd admin (--config FILE | --data DIR) [--json] stats|users|kick FP|drain [--off]
                                                        a running broker, through <data>/admin.sock

Flags override the config file. SIGHUP reloads it: limits, retention, session timeout, log
level and the status token change live; the rest is logged as needing a restart. `--check`
validates the settings (types, ranges, the data directory writable, the cloud secret private,
the ports free) and exits: 0, or 2 with one line.
The same checks run before a start, so a bad setting never leaves a half-started broker.
Port 0 picks a free port; once every socket is bound the broker writes `<data>/ready.json`
(id, url, pid, ports) atomically, and removes it when it stops. Under systemd (Type=notify)
READY=1 goes out once the client port answers.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

import structlog

from tits.errors import TitsError
from tits.i18n import N_, translate_argparse
from tits.log import configure

from .backup import backup, restore
from .config import BrokerConfig, preflight
from .sdnotify import Notifier
from .server import Broker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="titsd", description="ω IM broker")
    p.add_argument("--config", type=Path, help="TOML config file (see configs/titsd.toml)")
    p.add_argument("--data", type=Path, help="data directory: keys, mailbox, ready.json")
    p.add_argument("--bind", help="address the sockets listen on [127.0.0.1]; 0.0.0.0, ::")
    p.add_argument(
        "--public-host", dest="public_host", metavar="NAME",
        help="the name clients and peers dial (in the URL and adverts) [--bind]",
    )  # fmt: skip
    p.add_argument("--host", help="deprecated: sets both --bind and --public-host")
    for name, what in (
        ("client", N_("clients connect here (CURVE); 0 picks a free port")),
        ("peer", N_("peer brokers connect here (CURVE, admitted by the cloud secret)")),
        ("pub", N_("gossip to linked peers (PUB, sealed with the cloud secret)")),
        ("http", N_("status page / and /api/status")),
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
    p.add_argument(
        "--log-json", action="store_const", const="json", dest="log_format",
        help="log one JSON object a line (log_format = \"json\"; `tits logs` renders them)",
    )  # fmt: skip
    p.add_argument("--check", action="store_true", help="validate the settings and exit")
    return translate_argparse(p).parse_args(argv)


def _fail(msg: str, code: int = 2) -> NoReturn:
    print(f"titsd: {msg}", file=sys.stderr)
    raise SystemExit(code)


def backup_main(verb: str, argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog=f"titsd {verb}")
    p.add_argument("path", type=Path, metavar="DEST" if verb == "backup" else "SRC")
    p.add_argument("--config", type=Path, help="the broker's config file (for its data)")
    p.add_argument("--data", type=Path, help="the broker's data directory")
    args = translate_argparse(p).parse_args(argv)
    try:
        cfg = BrokerConfig.load(args.config, data=args.data)
        if verb == "backup":
            info = backup(cfg.data, args.path)
            print(
                f"titsd: backed up {cfg.data} to {args.path}: {info['mail_rows']} messages "
                f"(last seq {info['last_seq']}), {len(info['files'])} files, {info['took_s']} s"
            )
        else:
            info = restore(args.path, cfg.data)
            print(f"titsd: restored {args.path} into {cfg.data} (backup of {info['started']:.0f})")
    except TitsError as exc:
        _fail(exc.message)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}", 1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("backup", "restore"):
        return backup_main(argv[0], argv[1:])
    if argv and argv[0] == "admin":
        from .admin_cli import main as admin_main  # Rich only for the operator's commands

        return admin_main(argv[1:])
    args = parse_args(argv)
    overrides = {
        k: getattr(args, k)
        for k in (
            "data",
            "bind",
            "public_host",
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
            "log_format",
        )
    }
    try:
        cfg = BrokerConfig.load(args.config, **overrides)
        for warning in cfg.warnings:
            print(f"titsd: {warning}", file=sys.stderr)
        preflight(cfg)
    except TitsError as exc:
        _fail(exc.message)
    if args.check:
        print(
            f"titsd: {args.config or 'flags'}: OK — binds {cfg.bind}, advertises "
            f"{cfg.public_host}, ports {cfg.client_port}/{cfg.peer_port}/{cfg.pub_port}/"
            f"{cfg.http_port}, data {cfg.data}"
        )
        return
    configure(cfg.log_level, json=cfg.log_format == "json")
    broker = Broker(cfg)
    broker.load_config = lambda: BrokerConfig.load(args.config, **overrides)
    try:
        broker.start()
    except (TitsError, OSError) as exc:
        msg = exc.message if isinstance(exc, TitsError) else str(exc)
        structlog.get_logger("titsd").error("broker.start_failed", error=msg)
        raise SystemExit(1) from None

    stopped = threading.Event()
    notifier = Notifier(cfg.bind, broker.client_port, broker.snapshot, stopped)

    def _stop(signum: int, frame: object) -> None:
        stopped.set()
        notifier.stopping()
        broker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # SIGHUP: read the config again and apply what can change live (broker/config.py LIVE);
    # the loop does it, and logs config.reloaded with what changed and what needs a restart
    signal.signal(signal.SIGHUP, lambda signum, frame: broker.admin.submit({"cmd": "reload"}))
    # Each message allocates a few containers; at the default gen-0 threshold (700) the
    # collector ran every few dozen forwards, and what start-up made never becomes garbage.
    # Measured (benchmarks/cloud.py, 2 runs each): relays 7–8 µs a forward, was 10–13.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    notifier.start()
    profile = os.environ.get("TITSD_PROFILE")  # a developer's aid: write cProfile stats here
    try:
        if profile:
            import cProfile

            cProfile.runctx("broker.run()", globals(), {"broker": broker}, profile)
        else:
            broker.run()
    finally:
        stopped.set()
        broker.close()


if __name__ == "__main__":
    main()
