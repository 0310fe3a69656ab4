"""Issue 15, "also look at": proof of possession for device certificates.

Mallory could certify Alice's device *public* key as a device of her own, and keyd stored it:
her identity's signature was all it asked for. A device certificate now travels with the
device key's signature over it (`DeviceKey.prove`), which only the holder of the private key
can make; keyd refuses one without it, and the key-server client drops listed devices whose
proof does not check.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import time

import pytest

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess
from tits.device import Certificate, DeviceKey
from tits.errors import KeyServerError
from tits.keyclient import KeyClient

keyd = kf.keyd


def _post(server: KeydProcess, **fields: object) -> tuple[int, dict[str, object]]:
    status, body = server.request(
        "POST",
        "/tits/devices",
        body=json.dumps(fields).encode(),
        headers={"Content-Type": "application/json"},
    )
    return status, json.loads(body)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_mallory_cannot_certify_alices_device_key_as_hers(keyd: KeydProcess, users) -> None:  # type: ignore[no-untyped-def]
    alice, mallory = users.alice, users.mallory
    kc = KeyClient(keyd.url, timeout=20)
    for who in (alice, mallory):
        kc.publish_key(who.identity.export_public(who.fingerprint))
    _, alice_bytes, alice_sig = alice.certificate
    alice_proof = alice.device.prove(alice_bytes)
    kc.publish_device(alice_bytes, alice_sig, alice_proof)

    # Mallory's certificate over Alice's device public key, properly signed by Mallory
    now = int(time.time())
    stolen = Certificate(mallory.fingerprint, alice.device.public_key, "mallory-phone", now,
                         now + 3600).to_bytes()  # fmt: skip
    stolen_sig = mallory.identity.sign_detached(stolen, mallory.fingerprint)

    # without a proof (what keyd accepted before): refused, typed
    status, body = _post(keyd, certificate=_b64(stolen), signature=stolen_sig)
    assert (status, body["error"]) == (400, "no-proof"), body
    # with Alice's proof, copied from her published certificate: it is over other bytes
    status, body = _post(keyd, certificate=_b64(stolen), signature=stolen_sig,
                         proof=_b64(alice_proof))  # fmt: skip
    assert (status, body["error"]) == (403, "bad-proof"), body
    # with a proof by a device key Mallory does hold
    status, body = _post(keyd, certificate=_b64(stolen), signature=stolen_sig,
                         proof=_b64(mallory.device.prove(stolen)))  # fmt: skip
    assert (status, body["error"]) == (403, "bad-proof"), body
    with pytest.raises(KeyServerError, match="403"):
        kc.publish_device(stolen, stolen_sig, bytes(64))

    assert kc.devices(mallory.fingerprint) == []
    (dev,) = kc.devices(alice.fingerprint)
    assert dev["device"] == alice.device.id


def test_a_device_stored_before_proofs_is_dropped_until_published_again(users) -> None:  # type: ignore[no-untyped-def]
    """A store from before proofs (no proof column) opens, its devices are listed with
    `"proof": null` and the client ignores them; the owner's next publish adds the proof."""
    alice, mallory = users.alice, users.mallory
    root = kf.short_tmpdir("kp")
    server = KeydProcess(root / "data").start()
    try:
        kc = KeyClient(server.url, timeout=20)
        for who in (alice, mallory):
            kc.publish_key(who.identity.export_public(who.fingerprint))
        _, alice_bytes, alice_sig = alice.certificate
        kc.publish_device(alice_bytes, alice_sig, alice.device.prove(alice_bytes))
        assert server.stop() == 0

        # turn the store into an old one: no proof column, and Mallory's stolen device in it
        db = sqlite3.connect(root / "data" / "keys.sqlite")
        now = int(time.time())
        stolen = Certificate(mallory.fingerprint, alice.device.public_key, "m", now,
                             now + 3600)  # fmt: skip
        db.execute("ALTER TABLE devices DROP COLUMN proof")
        db.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (mallory.fingerprint, stolen.device, stolen.to_bytes(),
             mallory.identity.sign_detached(stolen.to_bytes(), mallory.fingerprint), "m", now,
             now + 3600, now),
        )  # fmt: skip
        db.commit()
        db.close()

        server.start()
        kc = KeyClient(server.url, timeout=20)
        status, body = server.request("GET", f"/tits/devices/{mallory.fingerprint}")
        (listed,) = json.loads(body)["devices"]
        assert status == 200 and listed["proof"] is None
        assert kc.devices(mallory.fingerprint) == []  # the client wants the proof
        assert kc.devices(alice.fingerprint) == []  # Alice's row lost its proof too
        # Alice publishes again (what `tits key publish` does): her proof is made and stored
        kc.publish_device(alice_bytes, alice_sig, alice.device.prove(alice_bytes))
        assert [d["device"] for d in kc.devices(alice.fingerprint)] == [alice.device.id]
    finally:
        rc = server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert rc == 0


def test_the_client_drops_devices_a_lying_server_lists(users, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alice, bob = users.alice, users.bob
    _, cert_bytes, sig = alice.certificate
    good = {"device": alice.device.id, "certificate": _b64(cert_bytes), "signature": sig,
            "proof": _b64(alice.device.prove(cert_bytes)), "revoked": False}  # fmt: skip
    entries = [
        good,
        {**good, "proof": _b64(DeviceKey.generate().prove(cert_bytes))},  # wrong key
        {**good, "proof": None},
        {**good, "device": bob.device.id},  # names another device than its certificate
        {**good, "certificate": "!!"},
        {**good, "proof": None, "revoked": True},  # kept: the caller learns it is revoked
        "not a dict",
    ]
    kc = KeyClient("http://127.0.0.1:1")
    monkeypatch.setattr(kc, "_json", lambda *a, **k: {"devices": entries})
    assert kc.devices(alice.fingerprint) == [good, entries[5]]
    assert kc.devices(bob.fingerprint) == [entries[5]]  # Alice's certificate is not Bob's
