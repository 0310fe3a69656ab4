"""structlog set-up shared by the servers and the client: one line per event, no secrets."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# The level is checked by a processor, not baked into the logger class, so that `set_level`
# changes it for loggers already cached (a broker's SIGHUP): below it, an event is dropped.
_THRESHOLD = [logging.INFO]
_METHOD_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "msg": logging.INFO,
    "warning": logging.WARNING, "warn": logging.WARNING, "error": logging.ERROR,
    "exception": logging.ERROR, "critical": logging.CRITICAL, "fatal": logging.CRITICAL,
}  # fmt: skip


def _by_level(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _METHOD_LEVELS.get(method, logging.INFO) < _THRESHOLD[0]:
        raise structlog.DropEvent
    return event


def set_level(level: str) -> None:
    """Change the level of every logger, cached ones included."""
    _THRESHOLD[0] = getattr(logging, level.upper(), logging.INFO)


def configure(level: str = "info", json: bool = False) -> None:
    set_level(level)
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            _by_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def sanitise(value: object, limit: int = 80) -> str:
    """Peer-supplied text made safe for a log line: printable and short."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "…"
