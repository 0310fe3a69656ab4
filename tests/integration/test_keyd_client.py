"""`tits.keyclient.KeyClient` against a real keyd and against servers that misbehave."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import FakeHkp, KeydProcess, StockGpg
from tits.errors import KeyServerError, TitsError
from tits.keyclient import KeyClient

keyd, stock_gpg = kf.keyd, kf.stock_gpg


@pytest.fixture
def fake() -> Iterator[FakeHkp]:
    server = FakeHkp()
    yield server
    server.close()


def test_round_trip_against_keyd(keyd: KeydProcess, stock_gpg: type[StockGpg]) -> None:
    g = stock_gpg()
    fp = g.gen("Kay Client <kay@example.org>")
    kc = KeyClient(keyd.url + "/", timeout=5)
    assert kc.publish_key(g.export(fp).decode()) == {
        "fingerprint": fp, "status": "created", "stripped": 0,
    }  # fmt: skip
    armored = kc.get_key(fp.lower())
    assert armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    (hit,) = kc.search("kay@example.org")
    assert hit["fingerprint"] == fp and hit["uids"] == ["Kay Client <kay@example.org>"]
    assert hit["algo"] == 22 and hit["revoked"] is False and isinstance(hit["created"], int)
    assert kc.search("0x" + fp) == [hit] == kc.search("Kay Cli")
    assert kc.search("nobody@example.org") == []
    assert kc.devices(fp) == []


def test_refusals_carry_the_servers_reason(keyd: KeydProcess) -> None:
    kc = KeyClient(keyd.url)
    with pytest.raises(KeyServerError, match=r"refused \(400\): no ASCII-armored key block"):
        kc.publish_key("garbage")
    with pytest.raises(KeyServerError, match=r"refused \(400\): wildcard"):
        kc.search("*")
    with pytest.raises(KeyServerError, match="not on key server") as err:
        kc.get_key("AB" * 20)
    assert err.value.code == "not-found"
    with pytest.raises(TitsError, match="fingerprint"):
        kc.get_key("not a fingerprint")


def test_urls_and_unreachable_servers() -> None:
    assert KeyClient("hkp://127.0.0.1").base_url == "http://127.0.0.1:11371"
    assert KeyClient("hkps://keys.example").base_url == "https://keys.example"
    assert KeyClient("http://h:1/base/").base_url == "http://h:1/base"
    for bad in ("ftp://x", "127.0.0.1:11371", ""):
        with pytest.raises(KeyServerError, match="not a key server URL"):
            KeyClient(bad)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(KeyServerError, match="cannot reach"):
        KeyClient(f"http://127.0.0.1:{port}").get_key("AB" * 20)


def test_silent_server_times_out() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        kc = KeyClient(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(KeyServerError, match="cannot reach"):
            kc.search("kay@example.org")
        assert time.monotonic() - t0 < 5


def test_a_lying_server_cannot_hand_over_another_key(
    fake: FakeHkp, stock_gpg: type[StockGpg]
) -> None:
    g = stock_gpg()
    wanted = "C0" * 20
    other = g.gen("Other Key <other@example.org>")
    fake.keys["0x" + wanted] = g.export(other).decode()
    fake.keys["0x" + "D0" * 20] = "not a key at all"
    fake.keys["0x" + other] = g.export(other).decode() + g.export(other).decode()
    kc = KeyClient(fake.url)
    with pytest.raises(KeyServerError, match="different key"):
        kc.get_key(wanted)
    with pytest.raises(KeyServerError, match="unusable key"):
        kc.get_key("D0" * 20)
    with pytest.raises(KeyServerError, match="different key"):
        kc.get_key(other)  # the right key, twice over: refused too
    assert kc.search("other@example.org") == []
    with pytest.raises(KeyServerError, match=r"refused \(404\)"):  # not a keyd at all
        kc.devices(other)
