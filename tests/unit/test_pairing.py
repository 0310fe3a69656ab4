"""The pairing protocol with the broker played by the test: an honest relay pairs; a relay
that tries to put its own device (or its own keys) in between never gets an identity."""

from __future__ import annotations

import os
import time

import pytest

from tits import pairing as P

USER = "A" * 40
LINK_RV = "B" * 40  # the linking device's rendezvous fingerprint
JOIN_RV = "C" * 40
EVIL_RV = "E" * 40


def _code(**kw: object) -> P.Code:
    code = P.new_code(USER, LINK_RV, "tcp://127.0.0.1:1#" + "0" * 64, "http://127.0.0.1:2")
    for k, v in kw.items():
        setattr(code, k, v)
    return code


def _bundle(cert: bytes = b"cert") -> P.Bundle:
    return P.Bundle(fingerprint=USER, secret_key="SECRET", cert=cert, cert_sig="sig")


def _run_to_keyed(link: P.LinkSide, join: P.JoinSide) -> None:
    offer = link.on_message(JOIN_RV, P.encode(join.start()))
    reveal = join.on_message(LINK_RV, P.encode(offer[0]))
    assert link.on_message(JOIN_RV, P.encode(reveal[0])) == []


def test_an_honest_relay_pairs_and_both_ends_show_the_same_short_code() -> None:
    code = P.Code.parse(_code().text())
    link = P.LinkSide(code)
    join = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone 手機")
    _run_to_keyed(link, join)
    assert link.sas == join.sas and link.sas is not None and len(link.sas) == 7
    link.on_message(JOIN_RV, P.encode(join.confirm()))
    assert link.state == "keyed"  # the person at the linking device has not confirmed yet
    with pytest.raises(P.PairingError):
        link.bundle(_bundle())
    link.confirm()
    sealed = link.bundle(_bundle())
    join.on_message(LINK_RV, P.encode(sealed))
    assert join.bundle is not None and join.bundle.secret_key == "SECRET"
    assert link.device_name == "phone 手機" and link.device_key == join.device_key
    link.on_message(JOIN_RV, P.encode(join.done()))
    assert link.state == "done"


def test_a_broker_without_the_code_cannot_pair_its_own_device() -> None:
    code = _code()
    link = P.LinkSide(code)
    # the broker saw the rendezvous fingerprint and the code id go by; not the secret
    guess = P.Code.parse(code.text())
    guess.secret = os.urandom(16)
    evil = P.JoinSide(guess, EVIL_RV, os.urandom(32), "evil")
    assert link.on_message(EVIL_RV, P.encode(evil.start())) == []  # silence
    assert link.state == "waiting" and link.peer is None
    # it replays the real device's join as its own: the mac names the real sender
    real = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
    assert link.on_message(EVIL_RV, P.encode(real.start())) == []
    # the real device still pairs
    _run_to_keyed(link, real)
    assert link.peer == JOIN_RV and link.sas == real.sas


def test_a_broker_that_swaps_the_keys_is_caught_by_both_ends() -> None:
    code = _code()
    # it answers the new device with its own key (no secret: the mac cannot check)
    join = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
    join.start()
    fake = P.Offer(id=code.id, key=os.urandom(32), mac=os.urandom(32))
    with pytest.raises(P.PairingError, match="someone is in between"):
        join.on_message(LINK_RV, P.encode(fake))
    assert join.bundle is None
    # it swaps the new device's revealed keys for its own: not what the join committed to
    link = P.LinkSide(code)
    join = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
    offer = link.on_message(JOIN_RV, P.encode(join.start()))
    reveal = join.on_message(LINK_RV, P.encode(offer[0]))[0]
    assert isinstance(reveal, P.Reveal)
    swapped = P.Reveal(id=reveal.id, key=reveal.key, device_key=os.urandom(32),
                       device_name="phone", mac=reveal.mac)  # fmt: skip
    with pytest.raises(P.PairingError):
        link.on_message(JOIN_RV, P.encode(swapped))
    assert link.channel is None and link.device_key is None


def test_a_broker_cannot_change_or_replay_the_sealed_bundle() -> None:
    code = _code()
    link = P.LinkSide(code)
    join = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
    _run_to_keyed(link, join)
    confirm = join.confirm()
    link.on_message(JOIN_RV, P.encode(confirm))
    with pytest.raises(P.PairingError, match="twice"):
        link.on_message(JOIN_RV, P.encode(confirm))
    link.confirm()
    sealed = link.bundle(_bundle())
    bad = P.Sealed(id=sealed.id, n=sealed.n, box=sealed.box[:-1] + bytes([sealed.box[-1] ^ 1]))
    with pytest.raises(P.PairingError, match="does not open"):
        join.on_message(LINK_RV, P.encode(bad))
    assert join.bundle is None
    # a message sealed by the new device is not accepted as the linking device's
    with pytest.raises(P.PairingError):
        join.on_message(LINK_RV, P.encode(join.channel.seal(code.id, _bundle())))  # type: ignore[union-attr]
    assert join.bundle is None
    join.on_message(LINK_RV, P.encode(sealed))
    assert join.bundle is not None


def test_a_broker_that_learnt_the_code_shows_different_short_codes() -> None:
    """Someone photographed the QR and relays: they answer each end with their own keys,
    chosen before they could know the other end's, so the two short codes differ."""
    differ = 0
    for _ in range(20):
        code = _code()
        link = P.LinkSide(code)
        join = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
        # the man in the middle: a joiner towards the link side, a linker towards the joiner
        to_link = P.JoinSide(code, JOIN_RV, os.urandom(32), "evil")
        to_join = P.LinkSide(code)
        offer_a = link.on_message(JOIN_RV, P.encode(to_link.start()))
        reveal_m = to_link.on_message(LINK_RV, P.encode(offer_a[0]))
        link.on_message(JOIN_RV, P.encode(reveal_m[0]))
        offer_m = to_join.on_message(JOIN_RV, P.encode(join.start()))
        reveal_n = join.on_message(LINK_RV, P.encode(offer_m[0]))
        to_join.on_message(JOIN_RV, P.encode(reveal_n[0]))
        assert link.sas is not None and join.sas is not None
        differ += link.sas != join.sas
    assert differ >= 19  # one in a million could match by chance; twenty runs: all differ


def test_a_code_works_once_and_not_after_it_expires() -> None:
    code = _code()
    link = P.LinkSide(code)
    first = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
    link.on_message(JOIN_RV, P.encode(first.start()))
    second = P.JoinSide(code, "D" * 40, os.urandom(32), "tablet")
    answer = link.on_message("D" * 40, P.encode(second.start()))
    assert [type(a) for a in answer] == [P.Refuse]
    with pytest.raises(P.PairingError, match="already used"):
        second.on_message(LINK_RV, P.encode(answer[0]))

    old = _code(expires=int(time.time()) - 1)
    with pytest.raises(P.PairingError, match="expired"):
        P.Code.parse(old.text())
    late = P.LinkSide(old)
    joiner = P.JoinSide(old, JOIN_RV, os.urandom(32), "phone")
    assert [type(a) for a in late.on_message(JOIN_RV, P.encode(joiner.start()))] == [P.Refuse]


@pytest.mark.parametrize("text", ["", "tits-link:", "tits-link:!!!!", "hello", "tits-link:AAAA"])
def test_a_wrong_code_is_a_clear_error(text: str) -> None:
    with pytest.raises(P.PairingError, match="not a pairing code"):
        P.Code.parse(text)


def test_garbage_at_the_rendezvous_is_dropped() -> None:
    link = P.LinkSide(_code())
    for junk in (b"", b"\xff" * 10, P.encode(P.Refuse(id=os.urandom(16), reason="x"))):
        assert link.on_message(JOIN_RV, junk) == []
    assert link.state == "waiting"


def test_only_the_rendezvous_named_in_the_code_speaks_to_the_new_device() -> None:
    code = _code()
    join = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
    join.start()
    honest_elsewhere = P.LinkSide(code)
    offer = honest_elsewhere.on_message(JOIN_RV, P.encode(join.start()))
    assert join.on_message(EVIL_RV, P.encode(offer[0])) == []
    assert join.state == "waiting"


def test_a_bundle_for_another_account_is_refused() -> None:
    code = _code()
    link = P.LinkSide(code)
    join = P.JoinSide(code, JOIN_RV, os.urandom(32), "phone")
    _run_to_keyed(link, join)
    link.on_message(JOIN_RV, P.encode(join.confirm()))
    link.confirm()
    other = P.Bundle(fingerprint="F" * 40, secret_key="S", cert=b"c", cert_sig="s")
    with pytest.raises(P.PairingError, match="another account"):
        join.on_message(LINK_RV, P.encode(link.bundle(other)))
    assert join.bundle is None
