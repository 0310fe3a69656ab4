"""keyd's packet-level OpenPGP: armor, framing, and dropping third-party signatures."""

from __future__ import annotations

import hashlib
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tits.keyd import openpgp
from tits.keyd.openpgp import (
    PacketError,
    SecretKeyError,
    armor,
    crc24,
    dearmor,
    mr_escape,
    mr_unescape,
    packets,
    parse_armored_keys,
    split_keys,
)
from tits.keyd.validate import _colon_unescape, email_of


def new_packet(tag: int, body: bytes) -> bytes:
    return openpgp._new_header(tag, len(body)) + body


def key_body(seed: int) -> bytes:
    return (
        b"\x04"
        + struct.pack(">I", 1_700_000_000)
        + b"\x16"
        + hashlib.sha256(str(seed).encode()).digest()
    )


def fpr(body: bytes) -> str:
    return openpgp.v4_fingerprint(body)


def subpacket(kind: int, value: bytes) -> bytes:
    return bytes([len(value) + 1, kind]) + value


def sig(issuer: str | None, sigtype: int = 0x13, keyid_only: bool = False) -> bytes:
    hashed = subpacket(2, struct.pack(">I", 1_700_000_000))
    unhashed = b""
    if issuer is not None:
        if keyid_only:
            unhashed = subpacket(16, bytes.fromhex(issuer[-16:]))
        else:
            hashed += subpacket(33, b"\x04" + bytes.fromhex(issuer))
    body = (
        bytes([4, sigtype, 22, 8]) + struct.pack(">H", len(hashed)) + hashed
        + struct.pack(">H", len(unhashed)) + unhashed + b"\xab\xcd" + b"\x00\x08\xff"
    )  # fmt: skip
    return new_packet(openpgp.TAG_SIGNATURE, body)


def make_key(seed: int = 1, third_party: int = 0, subkey: bool = True) -> tuple[bytes, str]:
    primary = key_body(seed)
    fp = fpr(primary)
    out = new_packet(openpgp.TAG_PUBLIC_KEY, primary)
    out += new_packet(openpgp.TAG_USER_ID, f"User {seed} <u{seed}@example.org>".encode())
    out += sig(fp)
    for i in range(third_party):
        out += sig(fpr(key_body(10_000 + i)), 0x10, keyid_only=bool(i % 2))
    if subkey:
        out += new_packet(openpgp.TAG_PUBLIC_SUBKEY, key_body(seed + 500))
        out += sig(fp, 0x18)
    return out, fp


# -- armor ---------------------------------------------------------------------------------


def test_crc24_and_armor_round_trip() -> None:
    assert crc24(b"") == 0xB704CE
    data, _ = make_key()
    text = armor(data)
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
    assert dearmor(text) == [("PGP PUBLIC KEY BLOCK", data)]
    with_headers = text.replace("\n\n", "\nComment: hello\nVersion: x\n\n", 1)
    assert dearmor(with_headers.replace("\n", "\r\n")) == [("PGP PUBLIC KEY BLOCK", data)]


def test_broken_armor() -> None:
    data, _ = make_key()
    text = armor(data)
    lines = text.splitlines()
    with pytest.raises(PacketError, match="checksum"):
        dearmor(text.replace(lines[-2], "=AAAA"))
    with pytest.raises(PacketError, match="base64"):
        dearmor(text.replace(lines[2], "@@" + lines[2][2:]))
    with pytest.raises(PacketError, match="no ASCII-armored"):
        dearmor("just text")
    with pytest.raises(PacketError, match="expected a PGP PUBLIC KEY BLOCK"):
        parse_armored_keys(armor(data, "PGP MESSAGE"))
    with pytest.raises(SecretKeyError):
        parse_armored_keys(armor(data, "PGP PRIVATE KEY BLOCK"))


# -- framing -------------------------------------------------------------------------------


def test_packet_lengths_old_and_new() -> None:
    body = b"x" * 300
    old_1 = bytes([0x80 | (13 << 2) | 0, 5]) + b"hello"
    old_2 = bytes([0x80 | (13 << 2) | 1]) + struct.pack(">H", 300) + body
    old_4 = bytes([0x80 | (13 << 2) | 2]) + struct.pack(">I", 300) + body
    new_5 = bytes([0xC0 | 13, 255]) + struct.pack(">I", 300) + body
    new_2 = new_packet(13, body)
    got = list(packets(old_1 + old_2 + old_4 + new_5 + new_2))
    assert [p.body for p in got] == [b"hello", body, body, body, body]
    assert all(p.tag == 13 for p in got)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00abc", "not an OpenPGP packet"),
        (bytes([0xC0 | 13, 225]) + b"x" * 10, "partial-length"),
        (bytes([0x80 | (13 << 2) | 3]) + b"xx", "indeterminate"),
        (bytes([0xC0 | 13, 50]) + b"short", "truncated"),
        (bytes([0xC0 | 13]), "truncated"),
        (bytes([0xC0 | 13, 200]), "truncated"),
    ],
)
def test_bad_framing(data: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        list(packets(data))


# -- third-party signatures ------------------------------------------------------------------


def test_split_keys_keeps_self_signatures_only() -> None:
    data, fp = make_key(third_party=7)
    (key,) = split_keys(data)
    assert key.fingerprint == fp and key.keyid == fp[-16:]
    assert key.stripped == 7
    tags = [p.tag for p in key.packets]
    assert tags == [6, 13, 2, 14, 2]
    assert key.user_ids == [b"User 1 <u1@example.org>"]
    assert key.subkeys == [fpr(key_body(501))]
    assert split_keys(key.to_bytes())[0].stripped == 0


def test_issuerless_and_keyid_only_signatures() -> None:
    data, fp = make_key(subkey=False)
    extra = sig(None) + sig(fp, keyid_only=True)
    (key,) = split_keys(data + extra)
    assert key.stripped == 1  # the one without any issuer
    assert sum(p.tag == 2 for p in key.packets) == 2


def test_secret_keys_and_strange_streams_are_refused() -> None:
    data, _ = make_key()
    secret = new_packet(openpgp.TAG_SECRET_KEY, key_body(9) + b"\x00secret")
    with pytest.raises(SecretKeyError):
        split_keys(secret)
    with pytest.raises(SecretKeyError):
        split_keys(data + new_packet(openpgp.TAG_SECRET_SUBKEY, key_body(8)))
    with pytest.raises(PacketError, match="start with a public key"):
        split_keys(new_packet(13, b"uid first"))
    with pytest.raises(PacketError, match="version 4"):
        split_keys(new_packet(6, b"\x03" + key_body(1)[1:]))
    with pytest.raises(PacketError, match="user id too long"):
        split_keys(new_packet(6, key_body(1)) + new_packet(13, b"x" * 3000))
    many = new_packet(6, key_body(1)) + new_packet(13, b"a") * (openpgp.MAX_USER_IDS + 1)
    with pytest.raises(PacketError, match="too many"):
        split_keys(many)


def test_two_keys_are_two_blocks() -> None:
    a, fa = make_key(1)
    b, fb = make_key(2)
    assert [k.fingerprint for k in split_keys(a + b)] == [fa, fb]
    assert [k.fingerprint for k in parse_armored_keys(armor(a) + armor(b))] == [fa, fb]


def test_a_flood_is_one_linear_scan() -> None:
    data, fp = make_key(third_party=10_000)
    t0 = time.perf_counter()
    (key,) = split_keys(data)
    assert time.perf_counter() - t0 < 2.0
    assert key.stripped == 10_000 and len(key.to_bytes()) < 400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_ever_raise_packet_error(data: bytes) -> None:
    try:
        split_keys(data)
    except PacketError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=199))
def test_corrupted_keys_only_ever_raise_packet_error(noise: bytes, at: int) -> None:
    data, _ = make_key(third_party=2)
    broken = data[:at] + noise + data[at + len(noise) :]
    try:
        split_keys(broken)
    except PacketError:
        pass


# -- machine-readable output -------------------------------------------------------------------


@given(st.text(max_size=80))
def test_mr_escape_round_trip(text: str) -> None:
    escaped = mr_escape(text)
    assert ":" not in escaped and "\n" not in escaped
    assert all(0x20 < ord(c) < 0x7F for c in escaped)
    assert mr_unescape(escaped) == text


def test_mr_escape_examples() -> None:
    assert mr_escape("Ann <a@b>") == "Ann%20<a@b>"
    assert mr_escape("陳 50%:x") == "%E9%99%B3%2050%25%3Ax"
    assert mr_unescape("bad%zz%4") == "bad%zz%4"


def test_colon_unescape_and_email() -> None:
    assert _colon_unescape(r"a\x3ab\\c\nd") == "a:b\\c\nd"
    assert _colon_unescape("plain 陳") == "plain 陳"
    assert email_of("Ann Example <Ann@Example.ORG>") == "ann@example.org"
    assert email_of("ann@example.org") == "ann@example.org"
    assert email_of("Just A Name") == ""
