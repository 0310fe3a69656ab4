"""Device certificates: stock gpg verifies them; forged, expired and revoked ones are refused."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tits.device import Certificate, CertificateCache, DeviceKey, revoke
from tits.errors import VerificationError


def test_stock_gpg_verifies_the_certificate(users, tmp_path: Path) -> None:
    cert, data, sig = users.alice.certificate
    (tmp_path / "cert").write_bytes(data)
    (tmp_path / "cert.sig").write_text(sig)
    res = subprocess.run(
        [
            "gpg", "--homedir", str(users.bob.path / "gnupg"), "--status-fd", "1",
            "--verify", str(tmp_path / "cert.sig"), str(tmp_path / "cert"),
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"VALIDSIG {users.alice.fingerprint}" in res.stdout
    assert cert.identity == users.alice.fingerprint
    assert cert.device == users.alice.device.id


def test_cache_accepts_a_good_certificate_and_checks_messages(users) -> None:
    cache = CertificateCache(users.bob.identity)
    _, data, sig = users.alice.certificate
    cert = cache.add(data, sig, expected_identity=users.alice.fingerprint)
    msg = b"payload"
    cache.verify(users.alice.fingerprint, cert.device, msg, users.alice.device.sign(msg))
    with pytest.raises(VerificationError):
        cache.verify(users.alice.fingerprint, cert.device, msg, users.mallory.device.sign(msg))
    with pytest.raises(VerificationError, match="unknown device"):
        cache.verify(users.mallory.fingerprint, cert.device, msg, users.alice.device.sign(msg))


def test_certificate_signed_by_another_identity_is_refused(users) -> None:
    """Mallory certifies a device in Alice's name with her own GnuPG key."""
    dev = DeviceKey.generate()
    cert = Certificate(users.alice.fingerprint, dev.public_key, "evil", int(time.time()), 2**40)
    sig = users.mallory.identity.sign_detached(cert.to_bytes(), users.mallory.fingerprint)
    with pytest.raises(VerificationError):
        CertificateCache(users.bob.identity).add(cert.to_bytes(), sig)


def test_certificate_for_the_wrong_identity_is_refused(users) -> None:
    _, data, sig = users.alice.certificate
    with pytest.raises(VerificationError, match="expected"):
        CertificateCache(users.bob.identity).add(data, sig, expected_identity=users.bob.fingerprint)


def test_tampered_certificate_is_refused(users) -> None:
    _, data, sig = users.alice.certificate
    tampered = data.replace(b"alice-dev", b"alice-deV")
    with pytest.raises(VerificationError):
        CertificateCache(users.bob.identity).add(tampered, sig)


def test_expired_certificate_is_refused(users) -> None:
    dev = DeviceKey.generate()
    cert, sig = dev.certify(users.alice.identity, users.alice.fingerprint, "old", lifetime=60)
    with pytest.raises(VerificationError, match="expired"):
        CertificateCache(users.bob.identity).check_current(cert, now=time.time() + 61)
    later = CertificateCache(users.bob.identity, clock=lambda: time.time() + 61)
    with pytest.raises(VerificationError, match="expired"):
        later.add(cert.to_bytes(), sig)
    CertificateCache(users.bob.identity).add(cert.to_bytes(), sig)  # fine while it lasts


def test_revoked_device_signatures_become_invalid(users) -> None:
    dev = DeviceKey.generate()
    cert, sig = dev.certify(users.alice.identity, users.alice.fingerprint, "lost-phone")
    cache = CertificateCache(users.bob.identity)
    cache.add(cert.to_bytes(), sig)
    cache.verify(users.alice.fingerprint, dev.id, b"m", dev.sign(b"m"))
    rev, rsig = revoke(users.alice.identity, users.alice.fingerprint, dev.id)
    # a revocation signed by someone else is refused
    with pytest.raises(VerificationError):
        cache.add_revocation(
            rev.to_bytes(),
            users.mallory.identity.sign_detached(rev.to_bytes(), users.mallory.fingerprint),
        )
    cache.verify(users.alice.fingerprint, dev.id, b"m", dev.sign(b"m"))
    cache.add_revocation(rev.to_bytes(), rsig)
    with pytest.raises(VerificationError, match="revoked"):
        cache.verify(users.alice.fingerprint, dev.id, b"m", dev.sign(b"m"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"tits-device-certificate-v1\n",
        b"\xff\xfe",
        b"tits-device-certificate-v1\nidentity: X\ndevice-key: !\ndevice-name: a\n"
        b"created: 1\nexpires: 2\n",
    ],
)
def test_garbage_certificates_raise_verification_error(data: bytes) -> None:
    with pytest.raises(VerificationError):
        Certificate.parse(data)


def test_device_key_round_trips_through_its_file(tmp_path: Path) -> None:
    dev = DeviceKey.generate()
    dev.save(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert DeviceKey.load(tmp_path / "k").public_key == dev.public_key


def test_proof_of_possession(users) -> None:
    cert, data, sig = users.alice.certificate
    proof = users.alice.device.prove(data)
    assert len(proof) == 64 and proof == users.alice.device.prove(data)  # deterministic
    cert.check_proof(proof)
    # the same key over other bytes, another key, a plain signature of the bytes, junk
    other = Certificate(cert.identity, cert.public_key, "other", cert.created, cert.expires)
    for bad in (
        users.alice.device.prove(other.to_bytes()),
        users.mallory.device.prove(data),
        users.alice.device.sign(data),
        b"",
        bytes(64),
        proof[:63],
    ):
        with pytest.raises(VerificationError, match="proof of possession"):
            cert.check_proof(bad)
    cache = CertificateCache(users.bob.identity)
    with pytest.raises(VerificationError, match="proof of possession"):
        cache.add(data, sig, proof=users.mallory.device.prove(data))
    assert cache.get(cert.identity, cert.device) is None
    assert cache.add(data, sig, proof=proof) == cert
