"""Helpers every test module may use: temp dirs GnuPG can live in, waiting with a timeout,
stopping a server process, and killing the gpg-agents a test's homes started."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def short_tmpdir(prefix: str) -> Path:
    """A 0700 directory under /tmp: GnuPG's socket paths must stay under ~100 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def kill_agent(gnupghome: Path) -> None:
    if gnupghome.exists():
        subprocess.run(
            ["gpgconf", "--homedir", str(gnupghome), "--kill", "all"],
            check=False,
            capture_output=True,
            timeout=10,
        )


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `pred` (backing off to 0.1 s) until it is truthy; return its value, or fail."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it is still there after `timeout`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
