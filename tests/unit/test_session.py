"""Texts sealed with a session key: every kind of tampering is refused; keys wrap with GnuPG."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from tits import wire
from tits.device import CertificateCache, DeviceKey, revoke
from tits.errors import DecryptionError, VerificationError, WireError
from tits.session import (
    Envelope,
    SessionKey,
    check_media,
    direct_conversation_id,
    open_sealed,
    seal,
    sign_media,
)


@pytest.fixture(scope="module")
def bob_certs(users) -> CertificateCache:
    cache = CertificateCache(users.bob.identity)
    for h in (users.alice, users.mallory):
        _, data, sig = h.certificate
        cache.add(data, sig, expected_identity=h.fingerprint)
    return cache


@pytest.fixture
def ctx(users):
    a, b = users.alice, users.bob
    key = SessionKey.generate(direct_conversation_id(a.fingerprint, b.fingerprint))
    env = Envelope(wire.new_msg_id(), a.fingerprint, [b.fingerprint], None)
    return key, env, seal(key, a.device, env, "你好 Bob".encode(), serial=7)


def _open(body: bytes, key: SessionKey, env: Envelope, certs: CertificateCache):
    return open_sealed(wire.BODY_DECODER.decode(body), key, env, certs)


def test_round_trip(ctx, bob_certs, users) -> None:
    key, env, body = ctx
    opened = _open(body, key, env, bob_certs)
    assert opened.payload == "你好 Bob".encode()
    assert opened.header.serial == 7 and opened.header.epoch == key.epoch
    assert opened.certificate.identity == users.alice.fingerprint
    assert "你好".encode() not in body  # the text never travels in the clear


@pytest.mark.parametrize("alg", ["aes256gcm", "chacha20poly1305"])
def test_both_algorithms(alg, users, bob_certs) -> None:
    key = SessionKey.generate(b"c" * 16, alg=alg)
    env = Envelope(wire.new_msg_id(), users.alice.fingerprint, [users.bob.fingerprint], b"g" * 16)
    assert _open(seal(key, users.alice.device, env, b"x"), key, env, bob_certs).payload == b"x"


def test_flipped_bit_anywhere_in_the_ciphertext_is_refused(ctx, bob_certs) -> None:
    key, env, body = ctx
    sealed = wire.BODY_DECODER.decode(body)
    for i in range(0, len(sealed.ciphertext), 7):
        ct = bytearray(sealed.ciphertext)
        ct[i] ^= 0x01
        bad = msgspec.structs.replace(sealed, ciphertext=bytes(ct))
        with pytest.raises(DecryptionError):
            open_sealed(bad, key, env, bob_certs)
    nonce = bytes([sealed.nonce[0] ^ 1]) + sealed.nonce[1:]
    with pytest.raises(DecryptionError):
        open_sealed(msgspec.structs.replace(sealed, nonce=nonce), key, env, bob_certs)


@pytest.mark.parametrize("field", ["id", "sender", "to", "group"])
def test_body_moved_to_another_envelope_is_refused(ctx, bob_certs, users, field) -> None:
    key, env, body = ctx
    moved = {
        "id": Envelope(wire.new_msg_id(), env.sender, env.to, env.group),
        "sender": Envelope(env.id, users.mallory.fingerprint, env.to, env.group),
        "to": Envelope(env.id, env.sender, [users.mallory.fingerprint], env.group),
        "group": Envelope(env.id, env.sender, env.to, b"\x01" * 16),
    }[field]
    with pytest.raises(DecryptionError):
        _open(body, key, moved, bob_certs)


def test_wrong_epoch_or_key_is_refused(ctx, bob_certs) -> None:
    key, env, body = ctx
    with pytest.raises(DecryptionError):
        _open(body, SessionKey.generate(key.conversation, epoch=key.epoch), env, bob_certs)
    with pytest.raises(DecryptionError, match="epoch"):
        _open(body, SessionKey.generate(key.conversation, epoch=key.epoch + 1), env, bob_certs)


def _reseal(key: SessionKey, env: Envelope, signed: wire.Signed) -> bytes:
    """What an insider with the session key could send: any Signed, properly encrypted."""
    nonce, ct = key.encrypt(wire.encode(signed), env.ad(key.epoch))
    return wire.encode(wire.SealedBody(key.epoch, key.alg, nonce, ct))


def test_flipped_bit_in_signature_or_header_is_refused(ctx, bob_certs) -> None:
    key, env, body = ctx
    sealed = wire.BODY_DECODER.decode(body)
    signed = wire.SIGNED_DECODER.decode(key.decrypt(sealed.nonce, sealed.ciphertext, env.ad(0)))
    sig = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    with pytest.raises(VerificationError):
        _open(
            _reseal(key, env, msgspec.structs.replace(signed, signature=sig)), key, env, bob_certs
        )
    hp = bytearray(signed.header_payload)
    hp[5] ^= 1
    bad = msgspec.structs.replace(signed, header_payload=bytes(hp))
    with pytest.raises(VerificationError):
        _open(_reseal(key, env, bad), key, env, bob_certs)


def test_signature_by_another_identitys_device_is_refused(users, bob_certs) -> None:
    """Mallory holds the session key (a group member) and signs in Alice's name."""
    key = SessionKey.generate(b"g" * 16)
    env = Envelope(wire.new_msg_id(), users.alice.fingerprint, [users.bob.fingerprint], b"g" * 16)
    forged = seal(key, users.mallory.device, env, b"I am Alice")
    with pytest.raises(VerificationError, match="unknown device"):
        _open(forged, key, env, bob_certs)


def test_expired_or_revoked_device_is_refused(users) -> None:
    a = users.alice
    now = [time.time()]
    certs = CertificateCache(users.bob.identity, clock=lambda: now[0])
    dev = DeviceKey.generate()
    cert, sig = dev.certify(a.identity, a.fingerprint, "short", lifetime=60)
    certs.add(cert.to_bytes(), sig)
    key = SessionKey.generate(b"c" * 16)
    env = Envelope(wire.new_msg_id(), a.fingerprint, [users.bob.fingerprint], None)
    body = seal(key, dev, env, b"hi")
    assert _open(body, key, env, certs).payload == b"hi"
    now[0] += 61  # the certificate's lifetime is over
    with pytest.raises(VerificationError, match="expired"):
        _open(body, key, env, certs)

    dev2 = DeviceKey.generate()
    cert2, sig2 = dev2.certify(a.identity, a.fingerprint, "stolen")
    certs.add(cert2.to_bytes(), sig2)
    body2 = seal(key, dev2, env, b"hi")
    certs.add_revocation(*_revocation(a, dev2.id))
    with pytest.raises(VerificationError, match="revoked"):
        _open(body2, key, env, certs)


def _revocation(home, device_id: str) -> tuple[bytes, str]:
    rev, sig = revoke(home.identity, home.fingerprint, device_id)
    return rev.to_bytes(), sig


def test_secure_chat_refuses_an_expired_epoch(users, bob_certs) -> None:
    key = SessionKey.generate(b"s" * 16, secure=True, lifetime=600)
    env = Envelope(wire.new_msg_id(), users.alice.fingerprint, [users.bob.fingerprint], b"s" * 16)
    body = seal(key, users.alice.device, env, b"x")
    assert _open(body, key, env, bob_certs).payload == b"x"
    key.expires = time.time() - 1  # the rotation period has passed
    with pytest.raises(DecryptionError, match="expired"):
        _open(body, key, env, bob_certs)


def test_media_is_signed_not_encrypted(users, bob_certs) -> None:
    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    env = Envelope(wire.new_msg_id(), users.alice.fingerprint, [users.bob.fingerprint], None)
    raw = sign_media(users.alice.device, env, picture, "image/png")
    assert picture in raw  # never encrypted
    body = wire.BODY_DECODER.decode(raw)
    assert isinstance(body, wire.MediaBody) and body.sha256 == wire.sha256(picture)
    opened = check_media(body, env, bob_certs)
    assert opened.payload == picture and opened.header.mime == "image/png"
    tampered = raw.replace(bytes(range(10, 20)), bytes(range(11, 21)), 1)
    with pytest.raises((VerificationError, WireError)):
        check_media(wire.BODY_DECODER.decode(tampered), env, bob_certs)
    other = Envelope(wire.new_msg_id(), users.mallory.fingerprint, env.to, None)
    with pytest.raises(VerificationError):
        check_media(body, other, bob_certs)


def test_wrapped_key_opens_with_stock_gpg(users) -> None:
    a, b = users.alice, users.bob
    key = SessionKey.generate(b"w" * 16, epoch=3, secure=True, members=[a.fingerprint])
    wrapped = key.wrap(a.identity, a.fingerprint, b.fingerprint)
    out = subprocess.run(
        ["gpg", "--homedir", str(b.path / "gnupg"), "--batch", "--decrypt"],
        input=wrapped,
        capture_output=True,
        check=True,
    )
    assert SessionKey.from_json(out.stdout).key == key.key
    assert (
        f"{a.fingerprint}".encode()
        in subprocess.run(
            ["gpg", "--homedir", str(b.path / "gnupg"), "--batch", "--status-fd", "1", "--decrypt"],
            input=wrapped,
            capture_output=True,
            check=True,
        ).stdout
    )  # signed by the inviter
    got = SessionKey.unwrap(b.identity, wrapped, inviter=a.fingerprint)
    assert (got.key, got.epoch, got.secure) == (key.key, 3, True)


def test_a_groups_key_bundle_is_one_message_every_member_opens_with_stock_gpg(
    users, tmp_path: Path
) -> None:
    """What groups send (Keyring.wrap): ONE OpenPGP message for all members (one gpg process
    at the sender, however many), signed by the maker, which each opens with plain gpg."""
    from tits.client.keyring import Keyring
    from tits.client.store import LocalStore

    a, b, m = users.alice, users.bob, users.mallory
    store = LocalStore(tmp_path)
    try:
        payload = SessionKey.generate(b"g" * 16, epoch=7, secure=True).to_json()
        wrapped = Keyring(store, a.identity, a.fingerprint).wrap(
            payload, [b.fingerprint, m.fingerprint]
        )
    finally:
        store.close()
    packets = subprocess.run(
        ["gpg", "--homedir", str(b.path / "gnupg"), "--batch", "--list-packets"],
        input=wrapped, capture_output=True, check=False,
    ).stdout.decode()  # fmt: skip
    assert packets.count(":pubkey enc packet:") == 3  # Bob, Mallory and Alice's other devices
    for who in (b, m):
        out = subprocess.run(
            ["gpg", "--homedir", str(who.path / "gnupg"), "--batch", "--status-fd", "2",
             "--decrypt"], input=wrapped, capture_output=True, check=True,
        )  # fmt: skip
        assert out.stdout == payload
        assert f"VALIDSIG {a.fingerprint}".encode() in out.stderr


def test_unwrap_refuses_a_key_from_the_wrong_inviter(users) -> None:
    a, b, m = users.alice, users.bob, users.mallory
    wrapped = SessionKey.generate(b"w" * 16).wrap(m.identity, m.fingerprint, b.fingerprint)
    with pytest.raises(VerificationError):
        SessionKey.unwrap(b.identity, wrapped, inviter=a.fingerprint)
    with pytest.raises(VerificationError):  # not for Alice at all
        SessionKey.unwrap(a.identity, wrapped, inviter=m.fingerprint)


def test_direct_conversation_id_is_symmetric() -> None:
    a, b = "A" * 40, "B" * 40
    assert (
        direct_conversation_id(a, b) == direct_conversation_id(b, a) != direct_conversation_id(a, a)
    )


def test_rotation_settings_out_of_range_are_the_defaults() -> None:
    """A hand-edited config with a rotation the `tits config set` check would refuse gets the
    default, not a key that lives a second or a year."""
    from tits.client.keyring import rotation

    assert rotation({"rotate_after": 3600, "rotate_messages": 20}) == {
        "rotate_s": 3600.0, "rotate_messages": 20}  # fmt: skip
    bad: list[dict[str, object]] = [
        {"rotate_after": 1}, {"rotate_after": 10**9}, {"rotate_after": "1d"},
        {"rotate_messages": 0}, {"rotate_messages": True}, {"rotate_messages": 2.5},
    ]  # fmt: skip
    for cfg in bad:
        assert rotation(cfg) == {}, cfg
