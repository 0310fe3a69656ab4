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
