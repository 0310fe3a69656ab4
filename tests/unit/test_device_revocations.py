"""A client's device checker (real GnuPG, no sockets): a key message makes it ask for the
sender's devices again and hold that sender's texts meanwhile; a revocation is checked,
kept in the home, and refuses that device's signatures from then on, after a restart too;
a forged one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tits.client.devices import DeviceChecker, Sightings
from tits.client.opener import NotYet
from tits.client.store import LocalStore
from tits.device import DeviceKey, revoke
from tits.errors import VerificationError


def test_recheck_hold_and_revocation_kept(tmp_path: Path, users) -> None:  # type: ignore[no-untyped-def]
    alice, bob, mallory = users.alice, users.bob, users.mallory
    store = LocalStore(tmp_path / "bob")
    path = tmp_path / "bob" / "revoked-devices.json"
    checker = DeviceChecker(store, bob.identity, bob.fingerprint, revocations=path, recheck=True)
    tablet = DeviceKey.generate()
    cert, sig = tablet.certify(alice.identity, alice.fingerprint, "tablet")
    data = cert.to_bytes()
    checker.learn(alice.fingerprint, data, sig, tablet.prove(data))  # from a key message
    assert checker.take_rechecks() == [alice.fingerprint]
    assert checker.take_rechecks() == []  # asked once
    text = b"hello"
    with pytest.raises(NotYet) as held:
        checker(alice.fingerprint, tablet.id, text, tablet.sign(text))
    assert held.value.need == "devices"
    checker.recheck_done(alice.fingerprint)
    assert checker(alice.fingerprint, tablet.id, text, tablet.sign(text))

    # Mallory's revocation of Alice's tablet does not check; Alice's does, and is kept
    forged, forged_sig = revoke(mallory.identity, mallory.fingerprint, tablet.id)
    fake = forged.to_bytes().replace(mallory.fingerprint.encode(), alice.fingerprint.encode())
    with pytest.raises(VerificationError):
        checker.revoked(fake, forged_sig)
    assert checker(alice.fingerprint, tablet.id, text, tablet.sign(text))
    rev, rev_sig = revoke(alice.identity, alice.fingerprint, tablet.id)
    assert checker.revoked(rev.to_bytes(), rev_sig) is not None
    assert checker.revoked(rev.to_bytes(), rev_sig) is None  # already kept: no gpg call
    with pytest.raises(VerificationError, match="revoked"):
        checker(alice.fingerprint, tablet.id, text, tablet.sign(text))

    again = DeviceChecker(store, bob.identity, bob.fingerprint, revocations=path)
    assert again.is_revoked(alice.fingerprint, tablet.id)
    with pytest.raises(VerificationError, match="revoked"):
        again(alice.fingerprint, tablet.id, text, tablet.sign(text))
    store.close()


def test_without_a_key_server_nothing_waits(tmp_path: Path, users) -> None:  # type: ignore[no-untyped-def]
    alice, bob = users.alice, users.bob
    store = LocalStore(tmp_path / "bob")
    checker = DeviceChecker(store, bob.identity, bob.fingerprint)
    _, data, sig = alice.certificate
    checker.learn(alice.fingerprint, data, sig, alice.device.prove(data))
    assert checker.take_rechecks() == []
    assert checker(alice.fingerprint, alice.device.id, b"x", alice.device.sign(b"x"))
    store.close()


def test_sightings_keep_the_latest(tmp_path: Path) -> None:
    s = Sightings(tmp_path / "seen.json")
    s.note({"a" * 16: 5, "b" * 16: 7})
    s.note({"a" * 16: 3})
    assert Sightings(tmp_path / "seen.json").all() == {"a" * 16: 5, "b" * 16: 7}
