"""The read-only fallback: on a miss keyd may ask other key servers with `op=get`, and caches
what it validated. No publish, refresh or search ever reaches them as anything but a lookup."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import keyd_fixtures as kf
from tests.conftest import kill_agent
from tests.keyd_fixtures import FakeHkp, KeydProcess, StockGpg, short_tmpdir
from tits.errors import KeyServerError
from tits.keyclient import KeyClient
from tits.keyd.openpgp import TAG_SIGNATURE, packets, parse_armored_keys, signature_info

stock_gpg = kf.stock_gpg


@dataclass
class World:
    fake: FakeHkp
    server: KeydProcess
    carol: StockGpg  # keys that live only on the public server
    carol_fp: str
    dave_fp: str
    eve_fp: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    fake = FakeHkp()
    carol = StockGpg()
    root = short_tmpdir("kf")
    server = KeydProcess(root / "data", "--fallback", fake.url)
    try:
        cfp = carol.gen("Carol Public <carol@example.org>")
        dfp = carol.gen("Dave Public <dave@example.org>")
        efp = carol.gen("Eve Impostor <eve@example.org>")
        carol.run("--yes", "-u", dfp, "--quick-sign-key", cfp)  # a third-party certification
        fake.keys["0x" + cfp] = carol.export(cfp).decode()
        fake.keys["dave@example.org"] = carol.export(dfp).decode()
        fake.keys["0x" + "E" * 40] = carol.export(efp).decode()  # answers with the wrong key
        fake.keys["frank@example.org"] = carol.export(efp).decode()  # and for the wrong email
        server.start()
        yield World(fake, server, carol, cfp, dfp, efp)
    finally:
        rc = server.stop()
        fake.close()
        carol.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    assert rc == 0


def test_miss_is_fetched_from_fallback_validated_and_cached(world: World) -> None:
    kc = KeyClient(world.server.url)
    before = len(world.fake.requests)
    armored = kc.get_key(world.carol_fp)
    (key,) = parse_armored_keys(armored)
    assert key.fingerprint == world.carol_fp
    sigs = [p for p in packets(key.to_bytes()) if p.tag == TAG_SIGNATURE]
    assert len(sigs) == 1  # the self-signature only: Dave's certification is gone
    assert all(signature_info(p.body).issuer_fpr == world.carol_fp for p in sigs)
    assert len(world.fake.requests) == before + 1
    assert kc.get_key(world.carol_fp) == armored  # served from keyd's own store now
    assert len(world.fake.requests) == before + 1


def test_search_by_email_falls_back_to_op_get(world: World) -> None:
    kc = KeyClient(world.server.url)
    (hit,) = kc.search("dave@example.org")
    assert hit["fingerprint"] == world.dave_fp and hit["uids"] == ["Dave Public <dave@example.org>"]
    method, path, query = world.fake.requests[-1]
    assert (method, path, query["op"], query["search"]) == (
        "GET", "/pks/lookup", ["get"], ["dave@example.org"],
    )  # fmt: skip


def test_wrong_key_from_fallback_is_not_cached(world: World) -> None:
    kc = KeyClient(world.server.url)
    with pytest.raises(KeyServerError, match="not on key server"):
        kc.get_key("E" * 40)
    assert kc.search("frank@example.org") == []
    assert kc.search("eve@example.org") == []  # Eve's key was never stored


def test_misses_are_remembered(world: World) -> None:
    kc = KeyClient(world.server.url)
    before = len(world.fake.requests)
    for _ in range(3):
        with pytest.raises(KeyServerError):
            kc.get_key("12" * 20)
    assert len(world.fake.requests) == before + 1


def test_publish_refresh_and_search_never_upload_to_fallback(
    world: World, stock_gpg: type[StockGpg]
) -> None:
    env = {**os.environ, "TITS_LANG": "en"}
    tits = [sys.executable, "-m", "tits.cli"]
    url = world.server.url
    alice, bob = short_tmpdir("ha"), short_tmpdir("hb")
    try:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*tits, *args], capture_output=True, text=True, timeout=60, env=env
            )

        r = run("--home", str(alice), "init", "--name", "Alice", "--email", "alice@fb.example",
                "--keyserver", url, "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert run("--home", str(bob), "init", "--name", "Bob", "--email", "bob@fb.example",
                   "--keyserver", url).returncode == 0  # fmt: skip
        for home in (alice, bob):  # publish (twice: the second is an update)
            for _ in range(2):
                r = run("--home", str(home), "key", "publish")
                assert r.returncode == 0, r.stderr
        r = run("--home", str(bob), "key", "fetch", "alice@fb.example", "--json")  # search
        assert r.returncode == 0, r.stderr
        r = run("--home", str(bob), "key", "fetch", "@alice")  # refresh a contact
        assert r.returncode == 0, r.stderr
        r = run("--home", str(bob), "key", "fetch", "carol@example.org")  # via the fallback
        assert r.returncode == 0, r.stderr
        r = run("--home", str(bob), "key", "fetch", "nobody@example.org")  # a miss
        assert r.returncode == 1 and "no key" in r.stderr

        g = stock_gpg()
        fp = g.gen("Stock User <stock@example.org>")
        ks = ("--keyserver", f"hkp://127.0.0.1:{world.server.port}")
        g.run(*ks, "--send-keys", fp)
        g.run(*ks, "--recv-keys", world.carol_fp)
        g.run(*ks, "--refresh-keys")
        g.run(*ks, "--search-keys", "missing@example.org", check=False)
    finally:
        kill_agent(alice / "gnupg")
        kill_agent(bob / "gnupg")
        shutil.rmtree(alice, ignore_errors=True)
        shutil.rmtree(bob, ignore_errors=True)

    assert world.fake.requests, "the fallback was never consulted at all"
    assert world.fake.uploads() == []
    for method, path, query in world.fake.requests:
        assert method == "GET" and path == "/pks/lookup" and query["op"] in (["get"], ["index"])
