"""`tits-keyd --check --config FILE`, as titsd's: the shipped config passes; each broken
setting is one line naming the key and its line in the file, exit 2, and nothing is made."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYD = [sys.executable, "-m", "tits.keyd.main"]


def keyd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYD, *args], capture_output=True, text=True, timeout=60, check=False)


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("tits-keyd: ")
    return lines[0]


def test_the_shipped_config_passes_check(tmp_path: Path) -> None:
    shipped = ROOT / "configs" / "keyd.toml"
    # /var/lib is the operator's (root's); anyone else checks the rest with a data of theirs
    extra = [] if os.geteuid() == 0 else ["--data", str(tmp_path / "d")]
    res = keyd("--config", str(shipped), "--check", *extra)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"tits-keyd: {shipped}: OK — binds 127.0.0.1:11371")
    assert not (tmp_path / "d").exists()  # --check makes nothing


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ('host = "127.0.0.1"\nprot = 1\n', ":2: unknown setting prot (known: "),
        ("port = 1\nport = 2\n", ":2: duplicate key port"),
        ("port = 0\n\nport_x = 1\n", ":3: unknown setting port_x"),
        ('port = "11371"\n', ":1: port must be an integer"),
        ("port = 70000\n", ":1: port 70000 is out of range 0–65535"),
        ("port = 0\nupload_rate = -1.0\n", ":2: upload_rate must be above 0"),
        ("port = 0\n\nsearch_burst = 0\n", ":3: search_burst must be between 1 and"),
        ("port = 0\nmax_upload = 10\n", ":2: max_upload must be between 1024"),
        ('port = 0\nlog_level = "loud"\n', ":2: log_level must be one of"),
        ("port = 0\nlog_json = 1\n", ":2: log_json must be true or false"),
        ('port = 0\nfallback = ["ftp://x"]\n', ":2: fallback 'ftp://x' is not an hkp://"),
        ('port = 0\ntrusted_proxies = ["nginx"]\n', ":2: trusted_proxies: "),
        ('port = 0\ndata = "/proc/keyd-check"\n', ":2: data directory /proc is not writable"),
        ("port = [\n", ":1: "),
    ],
)
def test_a_broken_config_is_one_line_naming_the_key(tmp_path: Path, text: str, expect: str) -> None:
    cfg = tmp_path / "keyd.toml"
    cfg.write_text(f'data = "{tmp_path / "d"}"\n' + text if "data" not in text else text)
    line = _one_line(keyd("--config", str(cfg), "--check"))
    shift = 0 if "data" in text else 1  # the data line put first
    if expect.startswith(":") and expect[1:2].isdigit():
        n = int(expect[1 : expect.index(":", 1)]) + shift
        expect = f":{n}:" + expect[expect.index(":", 1) + 1 :]
    assert line.startswith(f"tits-keyd: {cfg}:") and expect in line, line
    assert not (tmp_path / "d").exists()


def test_unreadable_missing_and_a_flag(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'host = "caf\xe9"\n')
    assert f"cannot read {bad}" in _one_line(keyd("--config", str(bad), "--check"))
    assert f"no config file {tmp_path / 'nope.toml'}" in _one_line(
        keyd("--config", str(tmp_path / "nope.toml"), "--check")
    )
    assert f"{tmp_path} is a directory" in _one_line(keyd("--config", str(tmp_path), "--check"))
    flag = _one_line(keyd("--port", "99999", "--data", str(tmp_path / "d"), "--check"))
    assert flag == "tits-keyd: --port: port 99999 is out of range 0–65535"


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "keyd.toml"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg.write_text(f'data = "{tmp_path / "d"}"\nport = {port}\n')
        line = _one_line(keyd("--config", str(cfg), "--check"))
    assert line.startswith(f"tits-keyd: {cfg}:2: port 127.0.0.1:{port}: ") and "in use" in line
