"""The 2019 certificate-flooding attack: a key carrying ≥500 third-party certifications is
accepted quickly, stored and served with its self-signatures only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess, StockGpg, make_flooded_key
from tits.keyd.openpgp import TAG_SIGNATURE, dearmor, packets, parse_armored_keys, signature_info

keyd, stock_gpg = kf.keyd, kf.stock_gpg

CERTIFIERS = 500
ACCEPT_WITHIN = 3.0  # seconds; it takes tens of milliseconds


@pytest.fixture(scope="module")
def flooded() -> Iterator[tuple[StockGpg, str]]:
    gpg = StockGpg()
    try:
        fp, certs = make_flooded_key(gpg, CERTIFIERS)
        assert certs >= CERTIFIERS
        yield gpg, fp
    finally:
        gpg.cleanup()


def _issuers(armored: bytes) -> list[str]:
    (_, data), = dearmor(armored.decode())  # fmt: skip
    return [
        signature_info(p.body).issuer_fpr or "?" for p in packets(data) if p.tag == TAG_SIGNATURE
    ]


def test_flooded_key_is_accepted_fast_and_served_small(
    keyd: KeydProcess, flooded: tuple[StockGpg, str], stock_gpg: type[StockGpg]
) -> None:
    gpg, fp = flooded
    upload = gpg.export(fp)
    assert len(_issuers(upload)) > CERTIFIERS and len(upload) > 50_000

    t0 = time.perf_counter()
    status, body = keyd.add(upload, headers={"Accept": "application/json"})
    elapsed = time.perf_counter() - t0
    assert status == 200, body
    result = json.loads(body)
    assert result["status"] == "created" and result["stripped"] >= CERTIFIERS
    assert elapsed < ACCEPT_WITHIN

    status, served = keyd.lookup(op="get", search="0x" + fp)
    assert status == 200
    assert len(served) < 2_000, len(served)
    assert set(_issuers(served)) == {fp}  # self-signatures only
    assert parse_armored_keys(served.decode())[0].stripped == 0

    fresh = stock_gpg()
    fresh.run("--import", input=served)
    sigs = [r for r in fresh.colons("--list-sigs", fp) if r[0] == "sig"]
    assert len(sigs) == 1 and sigs[0][4] == fp[-16:]


def test_flooded_key_via_stock_send_keys(
    keyd: KeydProcess, flooded: tuple[StockGpg, str], stock_gpg: type[StockGpg]
) -> None:
    gpg, fp = flooded
    gpg.run("--keyserver", f"hkp://127.0.0.1:{keyd.port}", "--send-keys", fp)
    reader = stock_gpg()
    reader.run("--keyserver", f"hkp://127.0.0.1:{keyd.port}", "--recv-keys", fp)
    sigs = [r for r in reader.colons("--list-sigs", fp) if r[0] == "sig"]
    assert [s[4] for s in sigs] == [fp[-16:]]
    status, body = keyd.lookup(op="vindex", search="victim@example.org")
    assert status == 200 and body.count(b"\nsig ") == 1
