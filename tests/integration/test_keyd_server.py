"""tits-keyd as an operator runs it: config file and flags, --port 0 and ready.json, the one
line on stdout, a clean stop on SIGTERM, and a store that survives a restart."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.keyd_fixtures import KEYD, KeydProcess, StockGpg, short_tmpdir


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmpdir("ks")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ready_file_stdout_line_sigterm_and_restart(root: Path) -> None:
    gpg = StockGpg()
    server = KeydProcess(root / "data")
    try:
        server.start()
        ready = json.loads((root / "data" / "ready.json").read_text())
        assert ready == {
            "pid": server.proc.pid,  # type: ignore[union-attr]
            "host": "127.0.0.1",
            "port": server.port,
            "url": f"http://127.0.0.1:{server.port}",
        }
        assert server.port > 0
        fp = gpg.gen("Persist Ent <persist@example.org>")
        assert server.add(gpg.export(fp))[0] == 200
        stored = server.lookup(op="get", search="0x" + fp)[1]
        proc = server.proc
        assert server.stop() == 0
        assert proc is not None and proc.stdout is not None
        assert not (root / "data" / "ready.json").exists()
        assert (root / "data" / "keys.sqlite").exists()
        assert "keyd.stopped" in server.stderr()

        server.start()  # same data directory: the key is still there
        assert server.lookup(op="get", search="0x" + fp) == (200, stored)
        assert server.stats()["keys"] == 1
    finally:
        server.stop()
        gpg.cleanup()


def test_stdout_announces_the_url(root: Path) -> None:
    server = KeydProcess(root / "data").start()
    try:
        assert server.proc is not None and server.proc.stdout is not None
        line = server.proc.stdout.readline().decode()
        assert line == f"tits-keyd listening on {server.url}\n"
    finally:
        assert server.stop() == 0


def test_config_file_and_flags(root: Path) -> None:
    cfg = root / "keyd.toml"
    cfg.write_text(
        f'host = "127.0.0.1"\nport = 1\ndata = "{root / "from-file"}"\n'
        'fallback = ["hkp://127.0.0.1:9"]\nlog_level = "debug"\n'
    )
    # the file's port 1 is overridden by --port 0 (KeydProcess always passes it), its data dir
    # by --data; the rest comes from the file
    server = KeydProcess(root / "data", "--config", str(cfg)).start()
    try:
        assert server.port != 1 and (root / "data" / "ready.json").exists()
        assert not (root / "from-file").exists()
        assert "hkp://127.0.0.1:9" not in server.stderr()  # normalised to http://
        assert "http://127.0.0.1:9" in server.stderr()
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 11371\nprot = 1\n", ":2: unknown setting prot"),
        ('port = "eleven"\n', "port must be an integer"),
        ("port = 70000\n", "out of range"),
        ('fallback = "hkp://x"\n', "fallback must be a list"),
        ('fallback = ["ftp://x"]\n', "not an hkp://"),
        ('log_level = "loud"\n', "log_level must be one of"),
        ("this is not toml\n", ":1: Expected '=' after a key"),
    ],
)
def test_bad_config_is_one_line_and_exit_1(root: Path, text: str, message: str) -> None:
    cfg = root / "bad.toml"
    cfg.write_text(text)
    r = subprocess.run(
        [*KEYD, "--config", str(cfg), "--data", str(root / "d")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("tits-keyd: ") and r.stderr.count("\n") == 1


def test_missing_config_and_taken_port(root: Path) -> None:
    r = subprocess.run([*KEYD, "--config", str(root / "nope.toml")], capture_output=True,
                       text=True, timeout=30)  # fmt: skip
    assert r.returncode == 1 and "no config file" in r.stderr
    server = KeydProcess(root / "one").start()
    try:
        r = subprocess.run(
            [*KEYD, "--port", str(server.port), "--data", str(root / "two")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "tits-keyd:" in r.stderr
    finally:
        assert server.stop() == 0
