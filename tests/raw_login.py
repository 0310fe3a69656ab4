"""Logging a `RawClient` in by hand (Hello, the blob, Login), for tests that need a client
with a socket of their own choosing (a chosen routing id)."""

from __future__ import annotations

from zmq.utils import z85

from tests.broker_fixtures import RawClient
from tits import wire
from tits.home import Home
from tits.login import build_blob


def raw_login(raw: RawClient, home: Home, batch: bool = False) -> wire.Welcome | wire.Error:
    raw.send_msg(wire.Hello())
    ch = raw.recv_msg(10)
    if not isinstance(ch, wire.Challenge):
        return ch
    home.identity.import_public(ch.key)
    _, cert, sig = home.certificate
    blob = build_blob(
        home.identity, home.fingerprint, ch.nonce, ch.broker, z85.decode(raw.curve_public),
        cert, sig,
    )  # fmt: skip
    pubkey = home.identity.export_public(home.fingerprint).encode()
    raw.send_msg(wire.Login(blob=blob, fingerprint=home.fingerprint, pubkey=pubkey, batch=batch))
    while True:
        msg = raw.recv_msg(15)
        if msg is None:
            raise TimeoutError("no answer to the login within 15 s")
        if isinstance(msg, wire.Welcome | wire.Error):
            return msg
