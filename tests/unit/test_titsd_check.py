"""`titsd --check`: the shipped configs pass; each broken setting is one line naming the key
(and its line in the file), exit 2, and nothing is made on disk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tits.broker.config import BrokerConfig
from tits.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TITSD = [sys.executable, "-m", "tits.broker.main"]


def titsd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TITSD, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_every_shipped_config_passes_check(tmp_path: Path) -> None:
    res = titsd("--config", str(ROOT / "configs" / "titsd.toml"), "--check")
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout and str(ROOT / "var" / "titsd") in res.stdout  # relative: to the file
    # the public one leaves data and the secret to the unit (--data, --cloud-secret)
    secret = tmp_path / "cloud.secret"
    secret.write_text("ab" * 32 + "\n")
    secret.chmod(0o600)
    res = titsd(
        "--config", str(ROOT / "configs" / "titsd-public.toml"), "--data", str(tmp_path / "d"),
        "--cloud-secret", str(secret), "--check",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "binds 0.0.0.0, advertises tits.example.tw" in res.stdout
    assert not (tmp_path / "d").exists()  # --check makes nothing


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ('data = "d"\nclinet_port = 1\n', ":2: unknown setting clinet_port"),
        ('data = "d"\nclient_port = 1\nclient_port = 2\n', ":3: duplicate key client_port"),
        ('data = "d"\n[limits]\nrate = -5\n', ":3: limits.rate must be greater than 0"),
        ('data = "d"\n[limits]\nwindow = 0\n', ":3: limits.window must be at least 1"),
        ('data = "d"\n\n\nsession_timeout = -1.0\n', ":4: session_timeout must be"),
        ('data = "d"\nclient_port = "5570"\n', ":2: client_port must be an integer"),
        ('data = "d"\nhttp_port = 70000\n', ":2: http_port must be a port number"),
        ('data = "d"\nbind = "0.0.0.0"\n', "public_host is needed"),
        ('data = "d"\nlog_format = "xml"\n', ":2: log_format must be"),
        ('data = "/proc/titsd-check"\n', ":1: data directory /proc is not writable"),
        ('data = "d"\nclient_port = 6001\npeer_port = 6001\n', ":3: peer_port 6001 is also"),
    ],
)
def test_a_broken_config_is_one_line_naming_the_key(tmp_path: Path, text: str, expect: str) -> None:
    cfg = tmp_path / "titsd.toml"
    cfg.write_text(text)
    line = _one_line(titsd("--config", str(cfg), "--check"))
    assert str(cfg) in line and expect in line, line
    assert not (tmp_path / "d").exists()


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "titsd.toml"
        cfg.write_text(f'data = "d"\nclient_port = 0\npeer_port = {port}\n')
        line = _one_line(titsd("--config", str(cfg), "--check"))
        assert f":3: peer_port 127.0.0.1:{port}: Address already in use" in line, line
        # a real start refuses the same way, before it makes keys or a mailbox
        line = _one_line(titsd("--config", str(cfg), "--pub-port", "0", "--http-port", "0"))
        assert "peer_port" in line
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_cloud_secret_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    secret = tmp_path / "cloud.secret"
    secret.write_text("ab" * 32 + "\n")
    secret.chmod(mode)
    cfg = tmp_path / "titsd.toml"
    cfg.write_text('data = "d"\nclient_port = 0\ncloud_secret = "cloud.secret"\n')
    line = _one_line(titsd("--config", str(cfg), "--check"))
    assert f"{cfg}:3: cloud secret {secret} is readable by others (mode {mode:04o})" in line
    secret.chmod(0o600)
    ok = titsd("--config", str(cfg), "--check", "--peer-port", "0", "--pub-port", "0",
               "--http-port", "0")  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def test_a_bare_titsd_says_what_it_needs(tmp_path: Path) -> None:
    line = _one_line(titsd(cwd=tmp_path))
    assert "--data DIR" in line and "--config FILE" in line
    assert not (tmp_path / "var").exists()


def test_bind_and_public_host_are_two_settings_and_host_sets_both(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text('data = "d"\nbind = "::"\npublic_host = "tits.example.tw"\n')
    c = BrokerConfig.load(cfg)
    assert (c.bind, c.public_host, c.host) == ("::", "tits.example.tw", "tits.example.tw")
    assert c.data == tmp_path / "d"  # relative to the file, whatever the cwd
    cfg.write_text('data = "d"\nhost = "10.0.0.5"\n')
    c = BrokerConfig.load(cfg)
    assert (c.bind, c.public_host) == ("10.0.0.5", "10.0.0.5") and "deprecated" in c.warnings[0]
    c = BrokerConfig.load(cfg, bind="0.0.0.0", public_host="h.example")  # flags win
    assert (c.bind, c.public_host) == ("0.0.0.0", "h.example")
    c = BrokerConfig.load(None, data=Path("rel"))  # a flag's relative path: the cwd's
    assert c.data == Path("rel")


def test_environment_variables_sit_between_the_file_and_the_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text('data = "d"\nclient_port = 1000\n[limits]\nrate = 5.0\nburst = 9.0\n')
    env = {"TITSD_CLIENT_PORT": "2000", "TITSD_LIMITS_RATE": "500", "TITSD_NAME": "b-7",
           "TITSD_JOIN": '["tcp://h:1#' + "ab" * 32 + '"]', "HOME": "/x"}  # fmt: skip
    c = BrokerConfig.load(cfg, environ=env)
    assert (c.client_port, c.limits.rate, c.limits.burst, c.name) == (2000, 500.0, 9.0, "b-7")
    assert len(c.join) == 1
    assert BrokerConfig.load(cfg, environ=env, client_port=3000).client_port == 3000  # flags win
    with pytest.raises(ConfigError, match="TITSD_CLINET_PORT: unknown setting"):
        BrokerConfig.load(cfg, environ={"TITSD_CLINET_PORT": "1"})
    with pytest.raises(ConfigError, match="client_port must be an integer"):
        BrokerConfig.load(cfg, environ={"TITSD_CLIENT_PORT": "many"})
    res = subprocess.run(
        [*TITSD, "--check", "--peer-port", "0", "--pub-port", "0", "--http-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TITSD_DATA": str(tmp_path / "e"), "TITSD_CLIENT_PORT": "0"},
    )  # fmt: skip
    assert res.returncode == 0 and f"data {tmp_path / 'e'}" in res.stdout, res.stderr
