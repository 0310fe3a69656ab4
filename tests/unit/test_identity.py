"""GnuPG identity: signatures and decryption are trusted only from the expected fingerprint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tits.errors import IdentityError, VerificationError
from tits.identity import Identity, normalise_fingerprint


def test_signature_is_checked_against_the_expected_signer(users) -> None:
    a, b, m = users.alice, users.bob, users.mallory
    sig = a.identity.sign_detached(b"hello", a.fingerprint)
    b.identity.verify_detached(b"hello", sig, a.fingerprint)
    # valid signature, but by Alice: claiming it is Mallory's must fail
    with pytest.raises(VerificationError, match="expected"):
        b.identity.verify_detached(b"hello", sig, m.fingerprint)
    with pytest.raises(VerificationError):
        b.identity.verify_detached(b"hellO", sig, a.fingerprint)


def test_decrypt_requires_the_expected_signer(users) -> None:
    a, b, m = users.alice, users.bob, users.mallory
    signed = a.identity.encrypt_to(b"k", b.fingerprint, signer=a.fingerprint)
    assert b.identity.decrypt_from(signed, expected_signer=a.fingerprint) == b"k"
    with pytest.raises(VerificationError):
        b.identity.decrypt_from(signed, expected_signer=m.fingerprint)
    unsigned = a.identity.encrypt_to(b"k", b.fingerprint)
    with pytest.raises(VerificationError):  # python-gnupg calls this "ok"; we do not
        b.identity.decrypt_from(unsigned, expected_signer=a.fingerprint)
    assert b.identity.decrypt_from(unsigned, expected_signer=None) == b"k"


def test_secret_keys_are_never_imported(users, tmp_path: Path) -> None:
    secret = users.alice.identity.gpg.export_keys(
        users.alice.fingerprint, secret=True, expect_passphrase=False
    )
    assert "PRIVATE KEY" in secret
    fresh = Identity(tmp_path / "g")
    with pytest.raises(IdentityError, match="secret"):
        fresh.import_public(secret)
    assert fresh.keys(secret=True) == []


def test_import_returns_fingerprints_and_rejects_garbage(users, tmp_path: Path) -> None:
    fresh = Identity(tmp_path / "g")
    assert fresh.import_public(users.bob.identity.export_public(users.bob.fingerprint)) == [
        users.bob.fingerprint
    ]
    with pytest.raises(IdentityError):
        fresh.import_public("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnope\n")


def test_homes_are_isolated(make_home) -> None:
    one, two = make_home("one"), make_home("two")
    assert [k.fingerprint for k in one.identity.keys(secret=True)] == [one.fingerprint]
    assert [k.fingerprint for k in two.identity.keys(secret=True)] == [two.fingerprint]
    assert not two.identity.has_key(one.fingerprint)
    # stock gpg agrees: home two holds no secret of home one
    out = subprocess.run(
        ["gpg", "--homedir", str(two.path / "gnupg"), "--list-secret-keys", "--with-colons"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert one.fingerprint not in out and two.fingerprint in out
    assert (one.path / "device.key").stat().st_mode & 0o077 == 0


def test_gpg_conf_never_names_a_key_server(make_home) -> None:
    conf = (make_home("c").path / "gnupg" / "gpg.conf").read_text()
    assert "no-auto-key-retrieve" in conf
    assert "keyserver " not in conf.replace("keyserver-options", "")


@pytest.mark.parametrize("bad", ["", "ABC", "G" * 40, "A" * 41, "0x" + "a" * 39])
def test_fingerprints_are_validated(bad: str) -> None:
    with pytest.raises(IdentityError):
        normalise_fingerprint(bad)


def test_fingerprint_forms_are_normalised() -> None:
    assert normalise_fingerprint("0x" + "ab" * 20) == "AB" * 20
    assert normalise_fingerprint(" ".join(["ABCD"] * 10)) == "ABCD" * 10
