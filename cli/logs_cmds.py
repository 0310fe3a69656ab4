"""`tits logs`: titsd's and tits-keyd's JSON log lines (`--log-json`, `log_format = "json"`)
as a coloured, aligned tail — levels, the source (which broker), fingerprints and CURVE keys
shortened, a run of identical lines folded into one with ×N — filtered by level, a pattern
and age; from files, stdin, or journald (`journalctl -o json`).

    tits logs /tmp/cloud/broker*/log --level warning
    tits logs --unit titsd@main --follow --grep 'peer\\.'
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from tits.errors import TitsError

from .output import console, safe

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
STYLE = {"debug": "dim", "info": "green", "warning": "yellow", "error": "bold red"}
HEX_RUN = re.compile(r"\b[0-9a-fA-F]{16,}\b")
SKIP_KEYS = {"event", "level", "timestamp", "logger"}
EVENT_WIDTH = 22
IDLE_FLUSH_S = 0.5


class NotJsonLines(TitsError):
    code = "not-json-lines"


@dataclass
class Entry:
    source: str
    ts: float | None
    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None  # a line that is not JSON (a traceback a crash left)
    after: float = 0.0  # where it goes in time order: its own time, else the line before's

    def key(self) -> tuple[Any, ...]:
        """What makes two lines the same line (their time aside)."""
        return (
            self.source,
            self.level,
            self.event,
            self.raw,
            json.dumps(self.fields, sort_keys=True),
        )


def shorten(value: str, names: dict[str, str] | None = None) -> str:
    """A fingerprint, a CURVE key or an id of 16+ hex digits: the broker's name when it is
    a broker whose log this is (broker.started named it), else its first 8 and an ellipsis."""

    def one(m: re.Match[str]) -> str:
        run = m.group(0).upper()
        for fp, name in (names or {}).items():
            if fp.startswith(run) or run.startswith(fp):
                return name
        return m.group(0)[:8] + "…"

    return HEX_RUN.sub(one, value)


def _ts(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    return None


def parse(line: str, source: str) -> Entry | None:
    """One structlog JSON line; None when it is not one."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    fields = {k: v for k, v in obj.items() if k not in SKIP_KEYS}
    level = str(obj.get("level", "info")).lower()
    return Entry(source, _ts(obj.get("timestamp")), level, obj["event"], fields)


def render(e: Entry, count: int, width: int, names: dict[str, str] | None = None) -> Text:
    when = (
        datetime.fromtimestamp(e.ts, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        if e.ts is not None
        else " " * 12
    )
    out = Text()
    out.append(when, "dim")
    out.append(" ")
    if width:
        out.append(f"{e.source[:width]:<{width}}", "cyan")
        out.append(" ")
    lvl = "warning" if e.level == "warn" else e.level
    out.append(f"{lvl[:4].upper():<4}", STYLE.get(lvl, "bold red"))
    out.append(" ")
    if e.raw is not None:
        out.append(safe(e.raw), "dim")
    else:
        out.append(f"{safe(e.event):<{EVENT_WIDTH}}", "bold")
        for k, v in e.fields.items():
            text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            out.append(f" {safe(k)}=", "dim")
            out.append(safe(shorten(text, names)))
    if count > 1:
        out.append(f" ×{count}", "bold magenta")
    return out


def source_name(path: Path) -> str:
    """A cloud's broker3/log is "broker3"; any other file is its own name."""
    return path.parent.name if path.name == "log" and path.parent.name else path.stem


class Filter:
    def __init__(self, level: str, grep: str | None, since: float | None) -> None:
        if level.lower() not in LEVELS:
            raise TitsError(f"--level must be one of {', '.join(LEVELS)}")
        self.min = LEVELS[level.lower()]
        try:
            self.grep = re.compile(grep) if grep else None
        except re.error as exc:
            raise TitsError(f"--grep {grep!r}: {exc}") from None
        self.since = since

    def __call__(self, e: Entry) -> bool:
        if LEVELS.get(e.level, 40) < self.min:
            return False
        when = e.ts if e.ts is not None else e.after or None  # a raw line: the one before's
        if self.since is not None and when is not None and when < self.since:
            return False
        if self.grep is not None:
            plain = e.raw if e.raw is not None else f"{e.event} {json.dumps(e.fields)}"
            if not self.grep.search(plain):
                return False
        return True


class Tail:
    """Prints entries, holding the last one until a different one comes (or the input goes
    quiet), so a run of identical lines is one line with ×N."""

    def __init__(self, out: Console, keep: Filter, width: int) -> None:
        self.out, self.keep, self.width = out, keep, width
        self.held: Entry | None = None
        self.count = 0
        self.names: dict[str, str] = {}  # broker fingerprint → the log it writes

    def add(self, e: Entry) -> None:
        started = e.fields.get("id")
        if e.event == "broker.started" and isinstance(started, str) and HEX_RUN.fullmatch(started):
            self.names[started.upper()] = e.source
        if not self.keep(e):
            return
        if self.held is not None and self.held.key() == e.key():
            self.count += 1
            return
        self.flush()
        self.held, self.count = e, 1

    def flush(self) -> None:
        if self.held is not None:
            line = render(self.held, self.count, self.width, self.names)
            self.out.print(line, soft_wrap=True)
            self.held, self.count = None, 0


class Reader:
    """Lines of one file (or stdin), the first of which must be a JSON log line."""

    def __init__(self, name: str, fh: IO[str], source: str) -> None:
        self.name, self.fh, self.source = name, fh, source
        self.lineno = 0
        self.partial = ""
        self.last_ts = 0.0

    def entries(self) -> Iterator[Entry]:
        """What is there now; a half-written last line waits for its end."""
        while True:
            chunk = self.fh.readline()
            if not chunk:
                return
            if not chunk.endswith("\n"):
                self.partial += chunk
                return
            line, self.partial = (self.partial + chunk).rstrip("\n"), ""
            if not line.strip():
                continue
            self.lineno += 1
            e = parse(line, self.source)
            if e is None:
                if self.lineno == 1:
                    raise NotJsonLines(
                        f"{self.name}:1: not a JSON log line (titsd writes them with --log-json "
                        'or log_format = "json")'
                    )
                e = Entry(self.source, None, "info", "", raw=line)
            self.last_ts = e.after = e.ts if e.ts is not None else self.last_ts
            yield e

    def rest(self) -> Iterator[Entry]:
        """At the end of input: a last line without its newline."""
        if self.partial.strip():
            line, self.partial = self.partial, ""
            self.lineno += 1
            e = parse(line, self.source)
            if e is None and self.lineno == 1:
                raise NotJsonLines(f"{self.name}:1: not a JSON log line")
            yield e or Entry(self.source, None, "info", "", raw=line)


def journal_entry(line: str, unit: str) -> Entry | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    msg = rec.get("MESSAGE", "")
    if isinstance(msg, list):  # journald gives bytes that are not UTF-8 as a list of ints
        msg = bytes(msg).decode("utf-8", "replace")
    source = str(rec.get("_SYSTEMD_UNIT", unit)).removesuffix(".service")
    e = parse(str(msg), source)
    if e is not None:
        return e
    ts = int(rec.get("__REALTIME_TIMESTAMP", "0")) / 1e6 or None
    prio = int(rec.get("PRIORITY", "6"))
    level = "error" if prio <= 3 else "warning" if prio == 4 else "info"
    return Entry(source, ts, level, "", raw=str(msg))


def parse_since(text: str | None) -> float | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not m:
        raise TitsError(f"--since {text!r}: give an age like 90s, 10m, 2h, 1d")
    return time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def logs(
    files: Annotated[
        list[Path] | None, typer.Argument(help="JSON log files ('-': stdin) [stdin].")
    ] = None,
    unit: Annotated[
        str | None, typer.Option("--unit", "-u", help="A systemd unit: read journald.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading.")] = False,
    level: Annotated[str, typer.Option("--level", help="The lowest level shown.")] = "info",
    grep: Annotated[
        str | None, typer.Option("--grep", help="Only lines matching this regex.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only newer: 90s, 10m, 2h.")] = None,
) -> None:
    """Render titsd's JSON log lines as an aligned, coloured tail."""
    cutoff = parse_since(since)
    if unit:  # journalctl --since does the age
        return _journal(unit, follow, since, Filter(level, grep, None))
    keep = Filter(level, grep, cutoff)
    if not files and sys.stdin.isatty():
        raise TitsError("give a log FILE, - for stdin, or --unit titsd@NAME")
    paths = files or [Path("-")]
    readers: list[Reader] = []
    for p in paths:
        if str(p) == "-":
            readers.append(Reader("stdin", sys.stdin, "stdin"))
            continue
        try:
            fh = open(p, encoding="utf-8", errors="replace")  # noqa: SIM115 - kept for --follow
        except OSError as exc:
            raise TitsError(f"{p}: {exc.strerror}") from None
        readers.append(Reader(str(p), fh, source_name(p)))
    width = max((len(r.source) for r in readers), default=0) if len(readers) > 1 else 0
    tail = Tail(console, keep, width)
    try:
        _pump(readers, tail, follow)
    except NotJsonLines as exc:
        tail.flush()
        raise TitsError(exc.message) from None
    except KeyboardInterrupt:
        pass
    finally:
        tail.flush()
        for r in readers:
            if r.fh is not sys.stdin:
                r.fh.close()


def _pump(readers: list[Reader], tail: Tail, follow: bool) -> None:
    quiet_since = time.monotonic()
    while True:
        got = False
        batch = [e for r in readers for e in r.entries()]
        if len(readers) > 1:  # several brokers' logs: one tail in time order
            batch.sort(key=lambda e: e.after)
        for e in batch:
            got = True
            tail.add(e)
        if not follow:
            for r in readers:
                for e in r.rest():
                    tail.add(e)
            return
        now = time.monotonic()
        if got:
            quiet_since = now
        elif now - quiet_since > IDLE_FLUSH_S:
            tail.flush()  # the input went quiet: show what a fold holds back
            quiet_since = now
        time.sleep(0.1 if not got else 0)


def _journal(unit: str, follow: bool, since: str | None, keep: Filter) -> None:
    exe = shutil.which("journalctl")
    if exe is None:
        raise TitsError("--unit needs journalctl (systemd's journal), which is not here")
    argv = [exe, "-o", "json", "--no-pager", "-u", unit]
    if follow:
        argv.append("--follow")
    if since:
        argv += ["--since", f"-{since}"]
    tail = Tail(console, keep, 0)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    pending = b""
    try:
        while True:
            if not sel.select(IDLE_FLUSH_S):
                tail.flush()  # quiet: show what a fold holds back
                continue
            chunk = os.read(fd, 1 << 16)  # raw reads: no buffer hides lines from select
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                e = journal_entry(raw.decode("utf-8", "replace"), unit)
                if e is not None:
                    tail.add(e)
    except KeyboardInterrupt:
        pass
    finally:
        sel.close()
        tail.flush()
        proc.terminate()
        proc.wait()
    if proc.returncode not in (0, -15, None) and not follow:
        raise TitsError(f"journalctl exited with code {proc.returncode}")
