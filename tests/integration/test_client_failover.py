"""A client whose broker does not answer says so within seconds and tries the other brokers
of its cloud (learnt from the last welcome); nothing typed is lost. And a text argument that
is not valid UTF-8 is a clear error, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_fixtures import People, people_fixture  # noqa: F401 - fixtures
from tests.proc_cloud import ProcCloud
from tits.client.blocking import Message, Messenger
from tits.home import Home

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cloud4() -> Iterator[ProcCloud]:
    cloud = ProcCloud(4)
    yield cloud
    cloud.close()


def tits(home: Path, *args: str | bytes) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TITS_LANG="en", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(home), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_a_dead_broker_is_reported_and_the_next_one_used(cloud4: ProcCloud, people: People) -> None:
    a, b = people.alice, people.bob
    for h in (a, b):
        h.save_config(broker=cloud4.url(0), keyserver=cloud4.local.keyserver)
    for h in (a, b):  # a first login learns the cloud's brokers
        assert tits(h.path, "recv", "--timeout", "2").returncode == 0
        assert len(Home(h.path).config["cloud_brokers"]) == 4
    cloud4.kill9(0)
    t0 = time.monotonic()
    r = tits(a.path, "send", b.fingerprint, "換一台伺服器", "--json")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "did not answer" in r.stderr and cloud4.url(0).split("#")[0] in r.stderr
    assert json.loads(r.stdout)["broker"] != cloud4.brokers[0]["id"]
    print(f"send with its broker dead took {took:.1f} s")
    bob = Messenger(Home(b.path))  # Bob's config names the dead one too: he fails over as well
    got: list[Message] = []
    bob.receive(got.append, timeout=30, until=lambda: bool(got))
    assert [m.text for m in got] == ["換一台伺服器"]
    bob.close()


def test_a_text_that_is_not_utf8_is_a_clear_error(cloud4: ProcCloud, people: People) -> None:
    a = people.alice
    r = subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(a.path), "send", a.fingerprint,
         b"caf\xe9"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, TITS_LANG="en"),
    )  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "not valid UTF-8" in r.stderr
