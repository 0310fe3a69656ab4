"""Issue 15, hole 5: keyd could be slowed by malformed uploads.

A malformed multipart or non-UTF-8 form POST to /pks/add answered 500 and held the event loop
while the error was rendered (20 in a row raised lookup latency from 6 to 395 ms); uploads were
dearmored on the loop (0.28 s a MiB); nothing limited how fast one client uploaded. Now: a fast
400, dearmoring in a worker thread, and a per-client budget answered 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess, StockGpg
from tits.keyd.fallback import Fallback
from tits.keyd.openpgp import armor
from tits.keyd.service import KeydError, KeyService
from tits.keyd.store import Store
from tits.keyd.validate import KeyValidator

keyd = kf.keyd
GENEROUS = 1.0  # seconds: a lookup slower than this during a flood means the loop was held

FORM = "application/x-www-form-urlencoded"
MALFORMED = [
    # (body, content type)
    (b'--XX\r\nContent-Disposition: form-data; name="keytext"\r\n\r\nabc\r\n--YY--', "XX"),
    (b"no parts at all", "XX"),
    (b'--XX\r\nContent-Disposition: form-data; name="keytext"\r\n\r\n\xff\xfe\r\n--XX--\r\n', "XX"),
    (b"junk", None),  # multipart without a boundary
    (b"keytext=\xff\xfe\xfd", FORM),
    (b"keytext=%ff%fe%fd", FORM),
    (b"\x00\x01\x02keytext", FORM),
    (b"&".join(b"f%d=1" % i for i in range(1000)), FORM),
]


def _content_type(kind: str | None) -> str:
    if kind is None:
        return "multipart/form-data"
    if kind == FORM:
        return FORM
    return f"multipart/form-data; boundary={kind}"


def _post_raw(server: KeydProcess, body: bytes, kind: str | None) -> tuple[int, bytes]:
    return server.request(
        "POST", "/pks/add", body=body, headers={"Content-Type": _content_type(kind)}
    )


@pytest.fixture(scope="module")
def alice(keyd: KeydProcess) -> Iterator[tuple[StockGpg, str]]:
    gpg = StockGpg()
    try:
        fp = gpg.gen("Alice Liddell <alice@example.org>")
        assert keyd.add(gpg.export(fp))[0] == 200
        yield gpg, fp
    finally:
        gpg.cleanup()


@pytest.mark.parametrize(
    ("body", "kind"), MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))]
)
def test_a_malformed_upload_is_a_4xx_not_a_crash(
    keyd: KeydProcess, alice: tuple[StockGpg, str], body: bytes, kind: str | None
) -> None:
    status, text = _post_raw(keyd, body, kind)
    assert 400 <= status < 500 and status != 429, (status, text)
    assert text.strip()
    assert "request.crashed" not in keyd.stderr()
    assert keyd.lookup(op="get", search="0x" + alice[1])[0] == 200


def test_a_well_formed_multipart_upload_still_works(
    keyd: KeydProcess, alice: tuple[StockGpg, str]
) -> None:
    gpg, fp = alice
    body = (
        b'--B0und\r\nContent-Disposition: form-data; name="keytext"\r\n\r\n'
        + gpg.export(fp)
        + b"\r\n--B0und--\r\n"
    )
    status, text = _post_raw(keyd, body, "B0und")
    assert status == 200 and fp.encode() in text


def test_a_flood_of_malformed_uploads_leaves_lookups_answering(
    keyd: KeydProcess, alice: tuple[StockGpg, str]
) -> None:
    fp = alice[1]
    lookups: list[tuple[int, float]] = []
    flooding = threading.Event()
    flooding.set()

    def look() -> None:
        while flooding.is_set():
            t0 = time.perf_counter()
            status, _ = keyd.lookup(op="get", search="0x" + fp)
            lookups.append((status, time.perf_counter() - t0))

    looker = threading.Thread(target=look)
    looker.start()
    try:
        statuses = [_post_raw(keyd, *MALFORMED[i % 5])[0] for i in range(20)]
    finally:
        flooding.clear()
        looker.join(timeout=60)
    assert all(400 <= s < 500 and s != 429 for s in statuses), statuses
    assert len(lookups) >= 5
    assert all(status == 200 for status, _ in lookups)
    assert max(t for _, t in lookups) < GENEROUS, sorted(t for _, t in lookups)[-3:]
    assert "request.crashed" not in keyd.stderr()


def test_dearmoring_a_mebibyte_leaves_the_loop_free(tmp_path: Path) -> None:
    """A 1 MiB upload whose checksum fails only after the whole body is read: the loop must
    keep running (here: a ticker) while it is dearmored."""
    text = armor(os.urandom(768 * 1024))
    lines = text.splitlines()
    crc = next(i for i in range(len(lines) - 1, 0, -1) if lines[i].startswith("="))
    big = "\n".join(lines[:crc] + ["=AAAA"] + lines[crc + 1 :]) + "\n"
    assert len(big) > 1_000_000

    async def run() -> tuple[int, int]:
        store = Store(tmp_path / "keys.sqlite")
        fallback = Fallback([])
        service = KeyService(store, KeyValidator(tmp_path / "tmp"), fallback)
        ticks = 0
        running = True

        async def ticker() -> None:
            nonlocal ticks
            while running:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        before = ticks
        try:
            await service.add(big)
            status = 200
        except KeydError as exc:
            status = exc.status
        during = ticks - before
        running = False
        await task
        await fallback.close()
        store.close()
        return status, during

    status, during = asyncio.run(run())
    assert status == 400
    assert during >= 3  # 0 when the checksum was computed on the loop


@pytest.fixture
def strict_keyd() -> Iterator[KeydProcess]:
    root = kf.short_tmpdir("kl")
    server = KeydProcess(
        root / "data",
        *("--upload-burst", "3", "--upload-rate", "0.01"),
        *("--search-burst", "2", "--search-rate", "0.01"),
    ).start()
    try:
        yield server
    finally:
        rc = server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert rc == 0


def test_uploads_are_rate_limited_per_client(strict_keyd: KeydProcess) -> None:
    statuses = [_post_raw(strict_keyd, b"keytext=nothing", FORM)[0] for _ in range(3)]
    assert statuses == [400, 400, 400]
    status, body = strict_keyd.request(
        "POST",
        "/pks/add",
        body=b"keytext=nothing",
        headers={"Content-Type": FORM, "X-Forwarded-For": "192.0.2.9"},  # not believed
    )
    assert status == 429 and b"too many uploads" in body
    _, headers = _head(strict_keyd, "POST", "/pks/add", b"keytext=x", FORM)
    assert headers["status"] == "429"
    assert 1 <= int(headers["retry-after"]) <= 101
    # lookups are not uploads: still answered
    assert strict_keyd.lookup(op="get", search="0x" + "A" * 40)[0] == 404


def test_behind_a_trusted_proxy_each_client_has_its_own_budget() -> None:
    root = kf.short_tmpdir("kx")
    server = KeydProcess(
        root / "data", "--upload-burst", "1", "--upload-rate", "0.01",
        "--trusted-proxy", "127.0.0.1",
    ).start()  # fmt: skip
    try:

        def post(client: str) -> int:
            headers = {"Content-Type": FORM, "X-Forwarded-For": client}
            return server.request("POST", "/pks/add", body=b"keytext=x", headers=headers)[0]

        assert [post("192.0.2.1"), post("192.0.2.1"), post("192.0.2.2")] == [400, 429, 400]
        # a client's own X-Forwarded-For, passed on by the proxy, does not buy a new budget
        assert post("203.0.113.5, 192.0.2.1") == 429
    finally:
        rc = server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert rc == 0


def test_searches_are_rate_limited_but_gets_are_not(strict_keyd: KeydProcess) -> None:
    for _ in range(2):
        assert strict_keyd.lookup(op="index", options="mr", search="nobody here")[0] == 404
    status, body = strict_keyd.lookup(op="index", options="mr", search="nobody here")
    assert status == 429 and b"too many searches" in body
    assert strict_keyd.lookup(op="vindex", search="nobody here")[0] == 429
    for _ in range(10):
        assert strict_keyd.lookup(op="get", search="0x" + "B" * 40)[0] == 404


def _head(
    server: KeydProcess, method: str, path: str, body: bytes, ctype: str
) -> tuple[bytes, dict[str, str]]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        headers["status"] = str(resp.status)
        return resp.read(), headers
    finally:
        conn.close()
