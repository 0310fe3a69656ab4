"""`tits-keyd`: the ω IM key server. Flags override the config file; see keyd/config.py.

`--check` validates the settings (types, ranges, the data directory writable, the port free)
without starting: exit 0 with one line, or 2 with one line naming the key and its line.
SIGHUP reloads the file (server.py says which settings change live)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tits.errors import TitsError
from tits.i18n import translate_argparse
from tits.log import configure

from . import config as keyd_config
from .server import serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tits-keyd",
        description="ω IM key server: HKP for stock GnuPG, plus device certificates.",
    )
    p.add_argument("--config", type=Path, help="TOML file whose keys mirror these flags")
    p.add_argument("--host", help="address to bind [127.0.0.1]")
    p.add_argument("--port", type=int, help="port; 0 picks a free one [11371]")
    p.add_argument("--data", type=Path, help="store directory [~/.local/share/tits-keyd]")
    p.add_argument(
        "--fallback",
        action="append",
        metavar="URL",
        help="read-only key server asked on a miss (hkp://, hkps://); repeatable",
    )
    p.add_argument("--max-upload", type=int, help="largest accepted upload in bytes [1048576]")
    p.add_argument("--upload-rate", type=float, help="uploads a second per client [1.0]")
    p.add_argument("--upload-burst", type=int, help="uploads a client may make at once [60]")
    p.add_argument("--search-rate", type=float, help="searches a second per client [5.0]")
    p.add_argument("--search-burst", type=int, help="searches a client may make at once [60]")
    p.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="ADDR",
        help="reverse proxy whose X-Forwarded-For names the client; repeatable",
    )
    p.add_argument("--log-level", choices=keyd_config.LOG_LEVELS, help="[info]")
    p.add_argument("--log-json", action="store_true", default=None, help="log JSON lines to stderr")
    p.add_argument("--check", action="store_true", help="validate the settings and exit")
    return translate_argparse(p)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        flags = dict(
            host=args.host,
            port=args.port,
            data=args.data,
            fallback=args.fallback,
            max_upload=args.max_upload,
            upload_rate=args.upload_rate,
            upload_burst=args.upload_burst,
            search_rate=args.search_rate,
            search_burst=args.search_burst,
            trusted_proxies=args.trusted_proxy,
            log_level=args.log_level,
            log_json=args.log_json,
        )
        cfg = keyd_config.load(args.config, **flags)
        if args.check:
            keyd_config.preflight(cfg, args.config)
            print(
                f"tits-keyd: {args.config or 'flags'}: OK — binds {cfg.host}:{cfg.port}, "
                f"data {cfg.data}"
            )
            return
        configure(cfg.log_level, json=cfg.log_json)
        asyncio.run(serve(cfg, lambda: keyd_config.load(args.config, **flags)))
    except TitsError as exc:
        sys.stderr.write(f"tits-keyd: {exc.message}\n")
        raise SystemExit(2 if args.check else 1) from None
    except OSError as exc:  # e.g. the port is taken, the data directory is not writable
        sys.stderr.write(f"tits-keyd: {exc.strerror or exc}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
