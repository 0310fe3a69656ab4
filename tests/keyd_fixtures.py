"""Helpers and fixtures for tests that need a real tits-keyd and stock gpg homes.

Import what you need into a test module:

    from tests import keyd_fixtures as kf
    keyd, stock_gpg = kf.keyd, kf.stock_gpg      # fixtures, registered in this module

* `KeydProcess` runs the real `tits-keyd` (a subprocess on 127.0.0.1, `--port 0`), learns its
  URL from `<data>/ready.json`, and stops it with SIGTERM, checking it exits 0.
* `StockGpg` is a plain GnuPG home in a short temp dir (socket paths stay short), driven with
  `gpg --batch`; `kill()` stops the gpg-agent and dirmngr it started.
* `keyd` (a running server per test module) and `stock_gpg` (a factory of homes, agents killed
  at teardown) are the fixtures.
* `make_flooded_key` builds a key carrying N third-party certifications in one gpg home, fast:
  N ed25519 certifier keys in one `--gen-key` batch, then one `--quick-sign-key` with N `-u`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import short_tmpdir, stop_process  # noqa: F401 - re-exported

KEYD = [sys.executable, "-m", "tits.keyd.main"]
READY_TIMEOUT = 20.0


class KeydProcess:
    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data = Path(data)
        self.args = list(args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self._log = self.data.parent / f"{self.data.name}.stderr"

    def start(self) -> KeydProcess:
        self.data.mkdir(parents=True, exist_ok=True)
        ready = self.data / "ready.json"
        ready.unlink(missing_ok=True)
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(
                [*KEYD, "--port", "0", "--data", str(self.data), *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tits-keyd exited {self.proc.returncode}: {self.stderr()}")
            try:
                info = json.loads(ready.read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.02)
                continue
            self.url, self.port = info["url"], int(info["port"])
            assert info["pid"] == self.proc.pid
            return self
        self.proc.kill()
        raise RuntimeError(f"tits-keyd not ready within {READY_TIMEOUT}s: {self.stderr()}")

    def stderr(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> int:
        if self.proc is None:
            return 0
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    # -- small HTTP helpers --------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        url = self.url + path
        if query:
            url += "?" + (query if isinstance(query, str) else urllib.parse.urlencode(query))
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def lookup(self, **query: str) -> tuple[int, bytes]:
        return self.request("GET", "/pks/lookup", query)

    def add(self, keytext: str | bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        body = urllib.parse.urlencode({"keytext": keytext}).encode()
        h = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self.request("POST", "/pks/add", body=body, headers=h)

    def stats(self) -> dict[str, int]:
        status, body = self.request("GET", "/tits/status")
        assert status == 200, body
        return dict(json.loads(body))


class StockGpg:
    """A plain GnuPG home, as a user of stock gpg has one."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home) if home else short_tmpdir("tg")
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)

    def run(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        r = subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", *args],
            input=input,
            capture_output=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"gpg {' '.join(args)} failed: {r.stderr.decode(errors='replace')}"
            )
        return r

    def gen(self, uid: str, algo: str = "ed25519", usage: str = "default") -> str:
        self.run("--passphrase", "", "--pinentry-mode", "loopback",
                 "--quick-gen-key", uid, algo, usage, "never")  # fmt: skip
        return self.fingerprints(uid)[-1]

    def fingerprints(self, pattern: str | None = None) -> list[str]:
        args = ["--with-colons", "--list-keys"] + ([pattern] if pattern else [])
        out = self.run(*args, check=False).stdout.decode()
        fps, want = [], False
        for line in out.splitlines():
            f = line.split(":")
            if f[0] == "pub":
                want = True
            elif f[0] == "fpr" and want:
                fps.append(f[9])
                want = False
            elif f[0] == "sub":
                want = False
        return fps

    def export(self, fp: str, armor: bool = True) -> bytes:
        return self.run(*(["--armor"] if armor else []), "--export", fp).stdout

    def colons(self, *args: str) -> list[list[str]]:
        out = self.run("--with-colons", "--fixed-list-mode", *args, check=False).stdout.decode()
        return [line.split(":") for line in out.splitlines()]

    def kill(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            timeout=10,
            check=False,
        )

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.home, ignore_errors=True)


def make_flooded_key(gpg: StockGpg, certifiers: int = 500) -> tuple[str, int]:
    """A key in `gpg` certified by `certifiers` other keys; (fingerprint, certifications)."""
    params = "".join(
        "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign,cert\n"
        f"Name-Real: Flooder {i}\nName-Email: flooder{i}@flood.example\n"
        "Expire-Date: 0\n%no-protection\n%commit\n"
        for i in range(certifiers)
    )
    gpg.run("--gen-key", input=params.encode(), timeout=120)
    victim = gpg.gen("Victim Example <victim@example.org>")
    signers = [fp for fp in gpg.fingerprints() if fp != victim]
    assert len(signers) >= certifiers
    users = [a for fp in signers for a in ("-u", fp)]
    gpg.run("--yes", *users, "--quick-sign-key", victim, timeout=120)
    sigs = [r for r in gpg.colons("--list-sigs", victim) if r[0] == "sig"]
    return victim, len(sigs) - 1


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyd() -> Iterator[KeydProcess]:
    """A real tits-keyd on 127.0.0.1 with a fresh store, for one test module."""
    root = short_tmpdir("kd")
    server = KeydProcess(root / "data").start()
    try:
        yield server
    finally:
        rc = server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert rc == 0, f"tits-keyd exited {rc} on SIGTERM"


@pytest.fixture
def stock_gpg() -> Iterator[type[StockGpg]]:
    """Factory of stock GnuPG homes: `stock_gpg()`; agents killed and homes removed after."""
    made: list[StockGpg] = []

    class Factory(StockGpg):
        def __init__(self, home: Path | None = None) -> None:
            super().__init__(home)
            made.append(self)

    yield Factory
    for g in made:
        g.cleanup()


class FakeHkp:
    """A stand-in public key server on 127.0.0.1 that records every request it gets.

    `keys` maps a search string (as sent, e.g. "0x<FPR>" or an email) to ASCII armor that
    `op=get` answers; anything else is 404. Uploads are recorded and answered 200, so that an
    upload would go unnoticed by its sender — and be caught by the test reading `requests`.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.keys: dict[str, str] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                fake.requests.append((self.command, parts.path, urllib.parse.parse_qs(parts.query)))

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                _, path, query = fake.requests[-1]
                search = (query.get("search") or [""])[0]
                op = (query.get("op") or [""])[0]
                if path == "/pks/lookup" and op == "get" and search in fake.keys:
                    body = fake.keys[search].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/pgp-keys")
                else:
                    body = b"not found\n"
                    self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                self._record()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"hkp://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def uploads(self) -> list[tuple[str, str, dict[str, list[str]]]]:
        """Every request that was not a read-only lookup (op=get or op=index)."""
        return [
            r
            for r in self.requests
            if not (
                r[0] == "GET"
                and r[1] == "/pks/lookup"
                and set(r[2].get("op", [])) <= {"get", "index"}
            )
        ]
