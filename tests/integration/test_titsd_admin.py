"""`titsd admin` against a real broker (issue 13): users and stats as a person and a script
read them, a kick that logs a user out and keeps them out a while, a drain that sends every
device away and takes no logins until `--off`; the socket is the broker user's alone (0600);
a bad fingerprint is exit 2, a broker that is not running exit 1, each one clear line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import Any

import pytest

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    connect,
    people_fixture,
    wait_for,
)
from tits import wire
from tits.client.connection import Connection
from tits.errors import BrokerError

pytestmark = pytest.mark.timeout(240)


def admin(b: BrokerProc, *args: str, lang: str = "en") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", TITS_LANG=lang)
    return subprocess.run(
        [sys.executable, "-m", "tits.broker.main", "admin", "--data", str(b.data), *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def admin_json(b: BrokerProc, *args: str) -> dict[str, Any]:
    done = admin(b, "--json", *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def errors_of(conn: Connection) -> list[str]:
    return [m.code for m in conn.poll(0.5) if isinstance(m, wire.Error)]


def test_users_stats_kick_and_drain(broker: BrokerProc, people: People) -> None:
    sock = broker.data / "admin.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    alice = connect(people.alice, broker.url)
    bob = connect(people.bob, broker.url)
    try:
        users = admin_json(broker, "users")["users"]
        assert {u["fingerprint"] for u in users} == {
            people.alice.fingerprint,
            people.bob.fingerprint,
        }
        assert all(len(u["devices"]) == 1 for u in users)
        table = admin(broker, "users")
        assert table.returncode == 0 and people.alice.fingerprint in table.stdout
        assert "2 users here" in table.stdout
        zh = admin(broker, "users", lang="zh_TW")
        assert "本機使用者 2 位" in zh.stdout

        stats = admin_json(broker, "stats")
        assert stats["users_here"] == 2 and stats["devices_here"] == 2
        assert stats["id"] == broker.id and stats["draining"] is False
        assert stats["logins"] == {"ok": 2}
        human = admin(broker, "stats")
        assert human.returncode == 0 and "users here" in human.stdout and "serving" in human.stdout

        kicked = admin_json(broker, "kick", people.bob.fingerprint, "--minutes", "5")
        assert kicked == {"fingerprint": people.bob.fingerprint, "devices": 1, "seconds": 300.0}
        wait_for(lambda: "dropped" in errors_of(bob), 10, "Bob told he was logged out")
        with pytest.raises(BrokerError) as refused:
            bob.login()
        assert refused.value.code == "login-refused" and "operator" in refused.value.message
        assert [u["fingerprint"] for u in admin_json(broker, "users")["users"]] == [
            people.alice.fingerprint
        ]
        again = admin(broker, "kick", people.mallory.fingerprint)  # not online: said so
        assert again.returncode == 0 and "is not online at this broker" in again.stdout

        drained = admin_json(broker, "drain")
        assert drained == {"draining": True, "devices": 1}
        wait_for(lambda: "not-logged-in" in errors_of(alice), 10, "Alice sent away")
        with pytest.raises(BrokerError) as unavailable:
            alice.login()
        assert unavailable.value.code == "login-unavailable"  # the client tries another broker
        assert admin_json(broker, "stats")["draining"] is True
        assert admin_json(broker, "drain", "--off") == {"draining": False, "devices": 0}
        alice.login()
        # presence is refreshed on the broker's tick, after the login's answer: wait for it
        wait_for(lambda: admin_json(broker, "stats")["users_here"] == 1, 10, "Alice back here")
    finally:
        alice.close()
        bob.close()


def test_bad_fingerprint_and_no_broker(broker: BrokerProc) -> None:
    bad = admin(broker, "kick", "not-a-fingerprint")
    assert bad.returncode == 2
    assert "'not-a-fingerprint' is not a fingerprint (40 hex digits)" in bad.stderr
    assert bad.stderr.count("\n") == 1
    broker.stop()
    down = admin(broker, "stats")
    assert down.returncode == 1
    assert down.stderr.strip() == (
        f"titsd admin: the broker is not running (no admin socket at {broker.data / 'admin.sock'})"
    )
    down_zh = admin(broker, "users", lang="zh_TW")
    assert down_zh.returncode == 1 and "伺服器沒有在執行" in down_zh.stderr
