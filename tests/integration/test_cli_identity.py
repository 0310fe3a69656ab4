"""`tits init` and `tits whoami` as a user runs them: real processes, real GnuPG."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import kill_agent

TITS = [sys.executable, "-m", "tits.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TITS, *args], capture_output=True, text=True, timeout=60, env=env or os.environ.copy()
    )


def test_init_and_whoami_json(tmp_path: Path) -> None:
    home = tmp_path / "h"
    try:
        r = run(
            "--home", str(home), "init", "--name", "陳小明", "--email", "ming@example.tw", "--json"
        )
        assert r.returncode == 0, r.stderr
        fp = json.loads(r.stdout)["fingerprint"]
        assert len(fp) == 40
        w = run("--home", str(home), "whoami", "--json")
        info = json.loads(w.stdout)
        assert info["fingerprint"] == fp and info["name"] == "陳小明"
        assert info["email"] == "ming@example.tw"
        cert = base64.b64decode(info["device"]["certificate"])
        assert f"identity: {fp}".encode() in cert
        assert info["device"]["signature"].startswith("-----BEGIN PGP SIGNATURE-----")
        # the certificate verifies with plain gpg in the user's own home
        (tmp_path / "c").write_bytes(cert)
        (tmp_path / "c.sig").write_text(info["device"]["signature"])
        v = subprocess.run(
            ["gpg", "--homedir", str(home / "gnupg"), "--verify", str(tmp_path / "c.sig"),
             str(tmp_path / "c")],
            capture_output=True,
        )  # fmt: skip
        assert v.returncode == 0
    finally:
        kill_agent(home / "gnupg")


def test_home_from_environment_and_refusals(tmp_path: Path) -> None:
    env = {**os.environ, "TITS_HOME": str(tmp_path / "e"), "TITS_LANG": "en"}
    try:
        r = run("whoami", env=env)
        assert r.returncode == 1
        assert "init" in r.stderr and "Traceback" not in r.stderr
        assert run("init", "--name", "E", "--email", "e@x", env=env).returncode == 0
        again = run("init", "--name", "E", "--email", "e@x", env=env)
        assert again.returncode == 1 and "already holds" in again.stderr
        bad = run("--home", str(tmp_path / "b"), "init", "--name", "a<b", "--email", "x", env=env)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert run("init", "--name", "only", env=env).returncode == 2  # usage error from Typer
    finally:
        kill_agent(tmp_path / "e" / "gnupg")
        kill_agent(tmp_path / "b" / "gnupg")


def test_help_is_helpful() -> None:
    r = run("--help")
    assert r.returncode == 0 and "init" in r.stdout and "whoami" in r.stdout
