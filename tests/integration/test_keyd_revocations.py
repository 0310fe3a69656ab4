"""keyd lists revocations by date (`GET /tits/revocations?since=T`), for brokers that end the
sessions of revoked devices: the ones dated T or later, each with its signature; a bad `since`
is a 400."""

from __future__ import annotations

import base64
import time

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess
from tits.device import revoke
from tits.keyclient import KeyClient

keyd = kf.keyd


def test_revocations_since(keyd: KeydProcess, users) -> None:  # type: ignore[no-untyped-def]
    kc = KeyClient(keyd.url, timeout=20)
    alice = users.alice
    kc.publish_key(alice.identity.export_public(alice.fingerprint))
    assert kc.revocations(0) == ([], False)
    rev, sig = revoke(alice.identity, alice.fingerprint, "0123456789abcdef")
    kc.revoke_device(rev.to_bytes(), sig)
    items, more = kc.revocations(int(time.time()) - 60)
    assert not more and [(d["identity"], d["device"]) for d in items] == [
        (alice.fingerprint, "0123456789abcdef")
    ]
    assert base64.b64decode(items[0]["revocation"]) == rev.to_bytes()
    assert items[0]["signature"] == sig and items[0]["revoked_at"] == rev.revoked
    assert kc.revocations(rev.revoked + 1) == ([], False)
    status, body = keyd.request("GET", "/tits/revocations?since=soon")
    assert status == 400 and b"since" in body


def test_two_devices_revoking_each_other_at_once(keyd: KeydProcess, users) -> None:  # type: ignore[no-untyped-def]
    """Each names itself as the maker; keyd takes exactly one, refuses the other (409), and the
    winner stays a live device."""
    import threading

    from tits.device import REVOKE_BY_CONTEXT, DeviceKey
    from tits.errors import KeyServerError

    kc = KeyClient(keyd.url, timeout=20)
    bob = users.bob
    kc.publish_key(bob.identity.export_public(bob.fingerprint))
    devs = []
    for name in ("phone", "laptop"):
        dev = DeviceKey.generate()
        cert, sig = dev.certify(bob.identity, bob.fingerprint, name)
        kc.publish_device(cert.to_bytes(), sig, dev.prove(cert.to_bytes()))
        devs.append(dev)
    a, b = devs
    plans = []
    for me, other in ((a, b), (b, a)):
        rev, sig = revoke(bob.identity, bob.fingerprint, other.id)
        data = rev.to_bytes()
        plans.append((data, sig, me.id, me.sign(REVOKE_BY_CONTEXT + data)))
    # a wrong proof of the maker is refused outright
    data, sig, by, _ = plans[0]
    try:
        kc.revoke_device(data, sig, by, b"\0" * 64)
        raise AssertionError("a forged maker was accepted")
    except KeyServerError as exc:
        assert "403" in exc.message
    results: list[object] = [None, None]
    go = threading.Barrier(2)

    def run(i: int) -> None:
        go.wait()
        try:
            results[i] = kc.revoke_device(*plans[i])
        except KeyServerError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    errors = [r for r in results if isinstance(r, KeyServerError)]
    assert len(errors) == 1 and "409" in errors[0].message and "itself revoked" in errors[0].message
    revoked = {d["device"] for d in kc.devices(bob.fingerprint) if d["revoked"]}
    assert len(revoked) == 1 and revoked <= {a.id, b.id}
