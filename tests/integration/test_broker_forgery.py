"""Forgeries: none is accepted by the broker or shown by a client."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from zmq.utils import z85

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    RawClient,
    broker_fixture,
    connect,
    people_fixture,
)
from tits import wire
from tits.client.blocking import Message, Messenger
from tits.device import DeviceKey
from tits.home import Home
from tits.login import Claims, login_plaintext
from tits.session import Envelope, seal


def drain(m: Messenger, timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []
    m.receive(got.append, timeout=timeout)
    return got


def challenge(raw: RawClient, home: Home) -> wire.Challenge:
    raw.send_msg(wire.Hello())
    ch = raw.expect(wire.Challenge)
    if not home.identity.has_key(ch.broker):
        home.identity.import_public(ch.key)
    return ch


def login_msg(raw: RawClient, home: Home, ch: wire.Challenge, **claims_over: Any) -> wire.Login:
    """A login as `home` answering `ch` on `raw` (claims can be bent for a test)."""
    _, cert_bytes, sig = home.certificate
    fields: dict[str, Any] = {
        "fingerprint": home.fingerprint,
        "curve_key": z85.decode(raw.curve_public),
        "cert": cert_bytes,
        "cert_sig": sig.encode(),
        "ts_ms": time.time_ns() // 1_000_000,
    }
    fields.update(claims_over)
    broker_fp = str(fields.pop("broker", ch.broker))
    nonce = bytes(fields.pop("nonce", ch.nonce))
    plain = login_plaintext(nonce, broker_fp, Claims(**fields))
    blob = home.identity.encrypt_to(plain, ch.broker, signer=home.fingerprint).encode()
    pubkey = home.identity.export_public(home.fingerprint).encode()
    return wire.Login(blob=blob, fingerprint=home.fingerprint, pubkey=pubkey)


def test_envelope_claiming_another_sender(broker: BrokerProc, people: People) -> None:
    mallory = connect(people.mallory, broker.url)
    forged = wire.Send(
        id=wire.new_msg_id(), sender=people.alice.fingerprint, to=[people.bob.fingerprint]
    )
    mallory.send(forged, b"anything")
    err = mallory.recv(5)
    assert isinstance(err, wire.Error) and err.code == "forged-sender" and err.ref == forged.id
    mallory.close()
    bob = Messenger(people.bob, broker=broker.url)
    assert bob.connection().welcome.pending == 0  # type: ignore[union-attr]
    assert drain(bob, timeout=0.5) == []
    bob.close()


@dataclass
class Impostor:
    """Signs with one key while naming another device."""

    id: str
    key: DeviceKey

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


def test_body_signed_by_another_device(broker: BrokerProc, people: People) -> None:
    a, b, m = people.alice, people.bob, people.mallory
    alice = Messenger(a, broker=broker.url)
    alice.send_text([b.fingerprint], "hello from the real Alice")

    mallory = Messenger(m, broker=broker.url)
    items, _, key, _ = mallory.prepare_text([b.fingerprint], "an honest first text")
    conn = mallory.connection()
    conn.send_and_wait(items)
    forged = []
    # 1. a text naming Alice's device, signed by Mallory's device key
    # 2. a text naming Mallory's own device, signed by a key nobody certified
    for device in (
        Impostor(a.certificate[0].device, m.device),
        Impostor(m.certificate[0].device, DeviceKey.generate()),
    ):
        env = Envelope(wire.new_msg_id(), m.fingerprint, [b.fingerprint], None)
        body = seal(key, device, env, b"I am Alice, send money")  # type: ignore[arg-type]
        forged.append(env.id)
        conn.send_and_wait([(wire.Send(id=env.id, sender=m.fingerprint, to=env.to), body)])

    bob = Messenger(b, broker=broker.url)
    got = drain(bob)
    assert [(x.sender, x.text, x.verified) for x in got] == [
        (a.fingerprint, "hello from the real Alice", True),
        (m.fingerprint, "an honest first text", True),
    ]
    assert sorted(r.id for r in bob.refused) == sorted(forged)
    assert any("belongs to" in r.reason for r in bob.refused)
    assert any("does not verify" in r.reason for r in bob.refused)
    # refused messages are acknowledged (not redelivered forever) and never shown later
    bob.close()
    bob = Messenger(b, broker=broker.url)
    assert drain(bob, timeout=0.5) == []
    for x in (alice, mallory, bob):
        x.close()


def test_replayed_expired_foreign_and_borrowed_logins(broker: BrokerProc, people: People) -> None:
    a, m = people.alice, people.mallory
    with RawClient(broker.url) as alice_raw:
        ch = challenge(alice_raw, a)
        good = login_msg(alice_raw, a, ch)
        alice_raw.send_msg(good)
        assert alice_raw.expect(wire.Welcome).fingerprint == a.fingerprint
        # the same connection replays it: that challenge is used up
        alice_raw.send_msg(good)
        assert alice_raw.expect(wire.Error).code == "no-challenge"

        # another connection replays it after asking for its own challenge
        with RawClient(broker.url) as eve:
            challenge(eve, a)
            eve.send_msg(good)
            err = eve.expect(wire.Error)
            assert err.code == "login-refused" and "challenge" in err.message

        cases: dict[str, dict[str, Any]] = {
            "for another broker": {"broker": "0123456789ABCDEF0123456789ABCDEF01234567"},
            "too old": {"ts_ms": time.time_ns() // 1_000_000 - 3_600_000},
            "for another connection": {"curve_key": b"\x01" * 32},
            "another's device": {"cert": m.certificate[1], "cert_sig": m.certificate[2].encode()},
        }
        for why, over in cases.items():
            with RawClient(broker.url) as raw:
                ch = challenge(raw, a)
                raw.send_msg(login_msg(raw, a, ch, **over))
                err = raw.expect(wire.Error, timeout=10)
                assert err.code == "login-refused", (why, err)

        # Mallory claims to be Alice: signed by Mallory, so refused
        with RawClient(broker.url) as raw:
            ch = challenge(raw, m)
            msg = login_msg(raw, m, ch)
            raw.send_msg(wire.Login(blob=msg.blob, fingerprint=a.fingerprint, pubkey=msg.pubkey))
            assert raw.expect(wire.Error, timeout=10).code == "login-refused"

    # and after all that, Alice still logs in
    conn = connect(a, broker.url)
    assert conn.welcome is not None and conn.welcome.fingerprint == a.fingerprint
    conn.close()


@pytest.mark.parametrize("login_as_mallory", [False, True])
def test_routing_id_equal_to_a_fingerprint(
    broker: BrokerProc, people: People, login_as_mallory: bool
) -> None:
    a, b, m = people.alice, people.bob, people.mallory
    with RawClient(broker.url, routing_id=a.fingerprint.encode()) as raw:
        if login_as_mallory:
            ch = challenge(raw, m)
            raw.send_msg(login_msg(raw, m, ch))
            raw.expect(wire.Welcome)
        forged = wire.Send(id=wire.new_msg_id(), sender=a.fingerprint, to=[b.fingerprint])
        raw.send_msg(forged, b"body")
        err = raw.expect(wire.Error)
        assert err.code == ("forged-sender" if login_as_mallory else "not-logged-in")

        alice = Messenger(a, broker=broker.url)
        alice.connection()
        bob = Messenger(b, broker=broker.url)
        sent = bob.send_text([a.fingerprint], "for Alice only")
        got = drain_live(alice)
        assert [(x.id, x.text) for x in got] == [(sent, "for Alice only")]
        # nothing for Alice ever reaches the impostor's connection
        while (frames := raw.recv(0.3)) is not None:
            msg = wire.SERVER_DECODER.decode(frames[0])
            assert not isinstance(msg, wire.Deliver), msg
        alice.close()
        bob.close()


def drain_live(m: Messenger, timeout: float = 10.0) -> list[Message]:
    conn = m.connection()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [x for x in conn.poll(0.2) if not isinstance(x, wire.Error)]
        if items:
            shown = m.process(items)  # type: ignore[arg-type]
            conn.ack([x.envelope.id for x in items])  # type: ignore[union-attr]
            if shown:
                return shown
    return []


def test_a_body_whose_device_nobody_vouches_for_is_shown_as_not_verified(
    broker: BrokerProc, people: People
) -> None:
    m, b = people.mallory, people.bob
    mallory = Messenger(m, broker=broker.url)
    items, _, _, _ = mallory.prepare_text([b.fingerprint], "who signed this?")
    (key_send, key_body), text = items
    kb = wire.BODY_DECODER.decode(key_body)
    assert isinstance(kb, wire.KeyBody) and kb.cert
    bare = msgspec.structs.replace(kb, cert=b"", cert_sig=b"")  # no certificate rides along
    mallory.connection().send_and_wait([(key_send, wire.encode(bare)), text])
    bob = Messenger(b, broker=broker.url)  # and no key server to ask
    got = drain(bob)
    assert [(x.text, x.verified) for x in got] == [("who signed this?", False)]
    assert bob.refused == []
    bob.close()
    mallory.close()
