"""Hostile HTTP against a real tits-keyd: every bad request gets a clear 4xx/5xx, the server
keeps answering, and the store is left exactly as it was."""

from __future__ import annotations

import json
import re
import socket
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess, StockGpg
from tits.keyd.openpgp import (
    TAG_PUBLIC_SUBKEY,
    TAG_SIGNATURE,
    TAG_USER_ID,
    armor,
    dearmor,
    packets,
)

keyd = kf.keyd


@dataclass
class World:
    server: KeydProcess
    alice: StockGpg
    alice_fp: str
    mallory: StockGpg
    mallory_fp: str
    stored: bytes  # Alice's key as served before the attacks
    stats: dict[str, int]

    def assert_unchanged(self) -> None:
        status, body = self.server.lookup(op="get", search="0x" + self.alice_fp)
        assert status == 200 and body == self.stored
        assert self.server.stats() == self.stats
        status, body = self.server.lookup(op="index", options="mr", search="alice@example.org")
        assert status == 200 and body.startswith(b"info:1:1\n") and body.count(b"\npub:") == 1


@pytest.fixture(scope="module")
def world(keyd: KeydProcess) -> Iterator[World]:
    alice, mallory = StockGpg(), StockGpg()
    try:
        afp = alice.gen("Alice Liddell <alice@example.org>")
        mfp = mallory.gen("Mallory Evil <mallory@example.org>", algo="future-default")
        assert keyd.add(alice.export(afp))[0] == 200
        stored = keyd.lookup(op="get", search="0x" + afp)[1]
        yield World(keyd, alice, afp, mallory, mfp, stored, keyd.stats())
    finally:
        alice.cleanup()
        mallory.cleanup()


def _raw(server: KeydProcess, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


LOOKUPS = [
    ("", 400),  # no op at all
    ("op=frobnicate&search=alice@example.org", 501),
    ("op=stats", 501),
    ("op=get", 400),  # no search
    ("op=get&search=", 400),
    ("op=index&search=%20%20", 400),
    ("op=index&search=*", 400),
    ("op=index&options=mr&search=al*", 400),
    ("op=get&search=" + "a" * 1000, 400),
    ("op=get&search=%00", 400),
    ("op=get&search=alice%00@example.org", 400),
    ("op=index&search=alice%0d%0aX-Injected:%201", 400),
    ("op=get&search=..%2f..%2f..%2fetc%2fpasswd", 400),
    ("op=index&search=../../../etc/passwd", 404),
    ("op=get&search=0x12345678", 400),  # short key id
    ("op=get&search=0x" + "1" * 32, 400),  # v3 fingerprint
    ("op=get&search=Alice", 400),  # op=get is exact only
    ("op=index&search=al", 400),  # too short a fragment
    ("op=index&search=%25%25%25", 404),  # LIKE wildcards are literal
    ("op=index&search=___", 404),
    ("op=get&search=0x" + "F" * 40, 404),
    ("op=get&search=%ff%fe%fd", 400),
    ("op=get&op=index&search=alice@example.org", 200),  # first op wins
]


@pytest.mark.parametrize(("query", "expected"), LOOKUPS)
def test_bad_lookups(world: World, query: str, expected: int) -> None:
    status, body = world.server.request("GET", "/pks/lookup", query)
    assert status == expected, body
    assert body.strip()  # a message, not an empty answer
    world.assert_unchanged()


def test_ten_kilobyte_search(world: World) -> None:
    status, _ = world.server.request("GET", "/pks/lookup", "op=get&search=" + "x" * 10_000)
    assert status in (400, 414, 431)
    world.assert_unchanged()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/pks/add"),
        ("DELETE", "/pks/lookup"),
        ("PUT", "/pks/lookup"),
        ("DELETE", "/tits/devices/" + "A" * 40),
        ("PATCH", "/tits/devices"),
    ],
)
def test_wrong_methods(world: World, method: str, path: str) -> None:
    status, _ = world.server.request(method, path, body=b"x")
    assert status == 405
    world.assert_unchanged()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/tits/devices/" + "Z" * 40, 400),
        ("/tits/devices/%00", 400),
        ("/tits/devices/..%2f..%2fetc%2fpasswd", 400),
        ("/tits/devices/../../etc/passwd", 404),
        ("/pks/../../etc/passwd", 404),
        ("/nothing-here", 404),
    ],
)
def test_bad_paths(world: World, path: str, expected: int) -> None:
    status, _ = world.server.request("GET", path)
    assert status == expected
    world.assert_unchanged()


def test_raw_protocol_garbage(world: World) -> None:
    for junk in (
        b"GARBAGE\r\n\r\n",
        b"GET /pks/lookup?op=get&search=a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /pks/lookup?op=get&search=a\rX: y HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /pks/add HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nkeytext=",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
    ):
        answer = _raw(world.server, junk)
        assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:80]
    world.assert_unchanged()


# -- uploads -----------------------------------------------------------------------------------


def _post(world: World, keytext: str | bytes) -> tuple[int, str]:
    status, body = world.server.add(keytext, headers={"Accept": "application/json"})
    return status, body.decode(errors="replace")


def test_broken_armor_and_non_keys(world: World) -> None:
    good = world.alice.export(world.alice_fp).decode()
    lines = good.splitlines()
    truncated = "\n".join(lines[:4] + lines[-1:]) + "\n"
    bad_crc = good.replace(lines[-2], "=AAAA")
    not_b64 = good.replace(lines[3], "!!!!" + lines[3][4:])
    for text, expected in (
        (truncated, 400),
        (bad_crc, 400),
        (not_b64, 400),
        ("hello, world", 400),
        ("", 400),
        ("-----BEGIN PGP MESSAGE-----\n\nowGbwMvMwCE=\n-----END PGP MESSAGE-----\n", 400),
        (armor(b"\x00\x01garbage"), 400),
        (armor(b"\x99\x00\x05\x04\x00\x00\x00\x00"), 400),  # v4 key packet cut short
        (armor(b"\xc6\xe1" + b"\x04" * 40), 400),  # partial length
    ):
        status, body = _post(world, text)
        assert status == expected, body
    world.assert_unchanged()


def test_missing_keytext_and_file_upload(world: World) -> None:
    status, _ = world.server.request(
        "POST",
        "/pks/add",
        body=b"other=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400
    boundary = "XyZ"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="keytext"; filename="k.asc"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + world.alice.export(world.alice_fp)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _ = world.server.request(
        "POST",
        "/pks/add",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 400
    world.assert_unchanged()


def test_secret_key_is_refused(world: World) -> None:
    secret = world.mallory.run(
        "--passphrase", "", "--pinentry-mode", "loopback", "--armor",
        "--export-secret-keys", world.mallory_fp,
    ).stdout  # fmt: skip
    assert b"PRIVATE KEY BLOCK" in secret
    status, body = _post(world, secret)
    assert status == 422 and "secret" in body
    # the same secret packets dressed up as a public key block
    (_, data), = dearmor(secret.decode())  # fmt: skip
    status, body = _post(world, armor(data))
    assert status == 422 and "secret" in body
    world.assert_unchanged()


def test_body_over_the_cap(world: World) -> None:
    status, _ = world.server.request(
        "POST",
        "/pks/add",
        body=b"keytext=" + b"A" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 413
    status, _ = world.server.request(
        "POST", "/tits/devices", body=b"{" + b" " * 100_000 + b"}",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 413
    world.assert_unchanged()


def test_hundred_keys_in_one_upload(world: World) -> None:
    many = StockGpg()
    try:
        params = "".join(
            f"Key-Type: EDDSA\nKey-Curve: ed25519\nName-Real: Many {i}\n"
            f"Name-Email: many{i}@example.org\nExpire-Date: 0\n%no-protection\n%commit\n"
            for i in range(100)
        )
        many.run("--gen-key", input=params.encode(), timeout=60)
        bundle = many.run("--armor", "--export").stdout
    finally:
        many.cleanup()
    status, body = _post(world, bundle)
    assert status == 400 and "one key per upload" in body and "100" in body
    # two armor blocks, one key each, is still two keys
    two = world.alice.export(world.alice_fp) + world.mallory.export(world.mallory_fp)
    status, body = _post(world, two)
    assert status == 400 and "one key per upload" in body
    world.assert_unchanged()


def _key_packets(gpg: StockGpg, fp: str) -> list[bytes]:
    return [p.raw for p in packets(gpg.export(fp, armor=False))]


def test_updates_to_someone_elses_key(world: World) -> None:
    alice = _key_packets(world.alice, world.alice_fp)
    mallory = [p for p in packets(world.mallory.export(world.mallory_fp, armor=False))]
    m_uid = next(i for i, p in enumerate(mallory) if p.tag == TAG_USER_ID)
    m_sub = next(i for i, p in enumerate(mallory) if p.tag == TAG_PUBLIC_SUBKEY)

    # 1. Mallory's user id, with her own signature on it, tacked onto Alice's key
    attack = alice + [mallory[m_uid].raw, mallory[m_uid + 1].raw]
    status, body = _post(world, armor(b"".join(attack)))
    assert status == 422 and "self-signature" in body

    # 2. Mallory's encryption subkey, bound by Mallory, tacked onto Alice's key
    attack = alice + [mallory[m_sub].raw, mallory[m_sub + 1].raw]
    status, body = _post(world, armor(b"".join(attack)))
    assert status == 422 and "subkey" in body

    # 3. the same user id with its signature's issuer rewritten to Alice: a forged self-sig
    sig = bytearray(mallory[m_uid + 1].raw)
    mfp, afp = bytes.fromhex(world.mallory_fp), bytes.fromhex(world.alice_fp)
    assert bytes(sig).count(mfp) == 1
    forged = bytes(sig).replace(mfp, afp).replace(mfp[-8:], afp[-8:])
    assert mallory[m_uid + 1].tag == TAG_SIGNATURE
    attack = alice + [mallory[m_uid].raw, forged]
    status, body = _post(world, armor(b"".join(attack)))
    assert status == 422, body

    # 4. Mallory certifies Alice's key: accepted as an upload, but nothing changes
    world.mallory.run("--import", input=world.alice.export(world.alice_fp))
    world.mallory.run("--yes", "-u", world.mallory_fp, "--quick-sign-key", world.alice_fp)
    status, body = _post(world, world.mallory.export(world.alice_fp))
    assert status == 200 and json.loads(body)["status"] == "unchanged"
    world.assert_unchanged()


def test_still_serving_after_everything(world: World) -> None:
    status, body = world.server.lookup(op="index", options="mr", search="Alice Lid")
    assert status == 200 and body.startswith(b"info:1:1\n")
    assert urllib.parse.quote("Alice") in body.decode() or "Alice" in body.decode()
    world.assert_unchanged()
