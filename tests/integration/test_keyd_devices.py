"""Device certificates on a real tits-keyd: only the named identity can publish or revoke one;
a revoked device is served marked revoked, for good."""

from __future__ import annotations

import base64
import time

import pytest

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess
from tits.device import Certificate, DeviceKey, revoke
from tits.errors import KeyServerError
from tits.keyclient import KeyClient

keyd = kf.keyd


def _client(server: KeydProcess) -> KeyClient:
    return KeyClient(server.url, timeout=20)


def test_publish_list_forge_and_revoke(keyd: KeydProcess, users) -> None:  # type: ignore[no-untyped-def]
    kc = _client(keyd)
    alice, mallory = users.alice, users.mallory
    cert, cert_bytes, sig = alice.certificate
    proof = alice.device.prove(cert_bytes)

    # no identity key on the server yet: refused with a hint
    with pytest.raises(KeyServerError, match="publish the identity key first"):
        kc.publish_device(cert_bytes, sig, proof)

    kc.publish_key(alice.identity.export_public(alice.fingerprint))
    kc.publish_key(mallory.identity.export_public(mallory.fingerprint))
    assert kc.publish_device(cert_bytes, sig, proof)["device"] == cert.device
    (dev,) = kc.devices(alice.fingerprint)
    assert base64.b64decode(dev["certificate"]) == cert_bytes
    assert dev["signature"] == sig and dev["revoked"] is False and dev["name"] == cert.name
    assert base64.b64decode(dev["proof"]) == proof

    # Mallory certifies a device of hers in Alice's name: signed by the wrong key
    evil = DeviceKey.generate()
    now = int(time.time())
    forged = Certificate(alice.fingerprint, evil.public_key, "alice-laptop", now, now + 3600)
    forged_sig = mallory.identity.sign_detached(forged.to_bytes(), mallory.fingerprint)
    with pytest.raises(KeyServerError, match="403.*not signed by"):
        kc.publish_device(forged.to_bytes(), forged_sig, evil.prove(forged.to_bytes()))
    # Alice's real signature, over other bytes
    with pytest.raises(KeyServerError, match="403.*not signed by"):
        kc.publish_device(forged.to_bytes(), sig, evil.prove(forged.to_bytes()))
    # a certificate not in canonical form
    with pytest.raises(KeyServerError, match="400"):
        kc.publish_device(cert_bytes + b"extra: 1\n", sig, proof)
    assert [d["device"] for d in kc.devices(alice.fingerprint)] == [cert.device]

    # Mallory revokes Alice's device: refused
    rev, rev_sig = revoke(mallory.identity, mallory.fingerprint, cert.device)
    fake = rev.to_bytes().replace(mallory.fingerprint.encode(), alice.fingerprint.encode())
    with pytest.raises(KeyServerError, match="403"):
        kc.revoke_device(fake, rev_sig)
    assert kc.devices(alice.fingerprint)[0]["revoked"] is False

    # Alice revokes it: served revoked, with the revocation anyone can check
    rev, rev_sig = revoke(alice.identity, alice.fingerprint, cert.device)
    assert kc.revoke_device(rev.to_bytes(), rev_sig)["revoked"] is True
    (dev,) = kc.devices(alice.fingerprint)
    assert dev["revoked"] is True
    assert base64.b64decode(dev["revocation"]) == rev.to_bytes()
    assert dev["revocation_signature"] == rev_sig
    # publishing the certificate again does not un-revoke it
    assert kc.publish_device(cert_bytes, sig, proof)["revoked"] is True
    assert kc.devices(alice.fingerprint)[0]["revoked"] is True


def test_device_list_of_unknown_or_bad_fingerprint(keyd: KeydProcess) -> None:
    kc = _client(keyd)
    assert kc.devices("AB" * 20) == []
    status, body = keyd.request("GET", "/tits/devices/not-a-fingerprint")
    assert status == 400 and b'"error"' in body


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'{"certificate": 5, "signature": "x"}',
        b'{"certificate": "!!!", "signature": "-----BEGIN PGP SIGNATURE-----"}',
        b'{"certificate": "dGl0cw==", "signature": "not armored"}',
        b'{"certificate": "dGl0cw==", "signature": "-----BEGIN PGP SIGNATURE-----"}',
        b'{"certificate": "dGl0cw==", "signature": "-----BEGIN PGP SIGNATURE-----", "proof": 5}',
        b'{"certificate": "dGl0cw==", "signature": "-----BEGIN PGP SIGNATURE-----", "proof": "!"}',
        b"not json",
        b"\xff\xfe",
    ],
)
def test_malformed_device_requests(keyd: KeydProcess, payload: bytes) -> None:
    before = keyd.stats()
    for path in ("/tits/devices", "/tits/revocations"):
        status, body = keyd.request(
            "POST", path, body=payload, headers={"Content-Type": "application/json"}
        )
        assert status == 400, body
        assert b'"message"' in body
    assert keyd.stats() == before
