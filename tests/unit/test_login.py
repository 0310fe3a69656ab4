"""The login blob and the broker's checks of it (real GnuPG, no sockets)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.broker_fixtures import People, kill_agent, people_fixture  # noqa: F401
from tits import wire
from tits.broker.keys import ServerKeys
from tits.broker.login import LoginVerifier
from tits.errors import VerificationError
from tits.home import Home
from tits.login import MAGIC, Claims, build_blob, login_plaintext, parse_plaintext

CURVE = b"\x07" * 32


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerKeys]:
    keys = ServerKeys.load_or_create(tmp_path / "b", "test")
    yield keys
    kill_agent(keys.identity.home)


def claims(home: Home, **over: object) -> Claims:
    _, cert_bytes, sig = home.certificate
    fields: dict[str, object] = {
        "fingerprint": home.fingerprint,
        "curve_key": CURVE,
        "cert": cert_bytes,
        "cert_sig": sig.encode(),
        "ts_ms": time.time_ns() // 1_000_000,
    }
    fields.update(over)
    return Claims(**fields)  # type: ignore[arg-type]


def login(home: Home, server: ServerKeys, nonce: bytes, plain: bytes | None = None) -> wire.Login:
    home.identity.import_public(server.armored)
    if plain is None:
        _, cert_bytes, sig = home.certificate
        blob = build_blob(
            home.identity, home.fingerprint, nonce, server.fingerprint, CURVE, cert_bytes, sig
        )
    else:
        blob = home.identity.encrypt_to(plain, server.fingerprint, signer=home.fingerprint).encode()
    pub = home.identity.export_public(home.fingerprint).encode()
    return wire.Login(blob=blob, fingerprint=home.fingerprint, pubkey=pub)


def test_plaintext_layout_and_parsing(people: People) -> None:
    nonce = os.urandom(32)
    plain = login_plaintext(nonce, "AB" * 20, claims(people.alice))
    assert (
        plain[:20] == MAGIC and plain[20:52] == nonce and plain[52:72] == bytes.fromhex("AB" * 20)
    )
    got_nonce, broker, c = parse_plaintext(plain)
    assert (got_nonce, broker, c.fingerprint) == (nonce, "AB" * 20, people.alice.fingerprint)
    with pytest.raises(VerificationError, match="magic"):
        parse_plaintext(b"\0" * 20 + plain[20:])
    with pytest.raises(VerificationError):
        parse_plaintext(plain[:60])
    with pytest.raises(VerificationError, match="decode"):
        parse_plaintext(plain[:72] + msgspec.msgpack.encode(["nope"]))
    stale = login_plaintext(nonce, "AB" * 20, claims(people.alice, ts_ms=0))
    with pytest.raises(VerificationError, match="old"):
        parse_plaintext(stale)


def test_verifier_accepts_a_good_login_and_binds_the_device(
    people: People, server: ServerKeys
) -> None:
    nonce = os.urandom(32)
    ok = LoginVerifier(server).verify(login(people.alice, server, nonce), nonce, CURVE)
    assert ok.fingerprint == people.alice.fingerprint
    assert ok.device == people.alice.certificate[0].device and ok.name == "Alice 陳"


@pytest.mark.parametrize(
    "case",
    ["wrong nonce", "other broker", "other connection", "other fingerprint", "other device"],
)
def test_verifier_refuses(people: People, server: ServerKeys, case: str) -> None:
    a = people.alice
    nonce = os.urandom(32)
    v = LoginVerifier(server)
    if case == "wrong nonce":
        msg, expect_nonce, curve = login(a, server, nonce), os.urandom(32), CURVE
    elif case == "other broker":
        plain = login_plaintext(nonce, "CD" * 20, claims(a))
        msg, expect_nonce, curve = login(a, server, nonce, plain), nonce, CURVE
    elif case == "other connection":
        msg, expect_nonce, curve = login(a, server, nonce), nonce, b"\x08" * 32
    elif case == "other fingerprint":
        plain = login_plaintext(nonce, server.fingerprint, claims(a, fingerprint="EF" * 20))
        msg, expect_nonce, curve = login(a, server, nonce, plain), nonce, CURVE
    else:
        m = people.mallory
        plain = login_plaintext(
            nonce,
            server.fingerprint,
            claims(a, cert=m.certificate[1], cert_sig=m.certificate[2].encode()),
        )
        msg, expect_nonce, curve = login(a, server, nonce, plain), nonce, CURVE
    with pytest.raises(VerificationError):
        v.verify(msg, expect_nonce, curve)


def test_a_key_sent_along_must_be_exactly_the_claimed_one(
    people: People, server: ServerKeys
) -> None:
    a, m = people.alice, people.mallory
    nonce = os.urandom(32)
    msg = login(m, server, nonce)
    # Mallory claims Alice's fingerprint and sends her own key: refused before any import
    forged = wire.Login(blob=msg.blob, fingerprint=a.fingerprint, pubkey=msg.pubkey)
    with pytest.raises(VerificationError, match="not"):
        LoginVerifier(server).verify(forged, nonce, CURVE)
    assert not server.identity.has_key(a.fingerprint)
    # and with no key at all there is nothing to check the signature with
    bare = wire.Login(blob=msg.blob, fingerprint=a.fingerprint)
    with pytest.raises(VerificationError, match="no public key"):
        LoginVerifier(server).verify(bare, nonce, CURVE)


def test_logins_run_in_a_ram_home_that_holds_the_brokers_key(
    people: People, server: ServerKeys, tmp_path: Path
) -> None:
    """Issue 14 hole 3: key imports went to the data disk's GnuPG home, so a full disk
    refused every new user. The login home is in RAM (where there is a tmpfs)."""
    from tits.broker.login import close_login_home, login_home, login_home_path

    home = login_home(server, tmp_path / "b")
    try:
        assert home.home == login_home_path(tmp_path / "b")
        if Path("/dev/shm").is_dir():
            assert str(home.home).startswith("/dev/shm/")
        nonce = os.urandom(32)
        ok = LoginVerifier(server, home=home).verify(login(people.bob, server, nonce), nonce, CURVE)
        assert ok.fingerprint == people.bob.fingerprint
        assert home.key_info(people.bob.fingerprint) is not None  # imported there, in RAM
        assert server.identity.key_info(people.bob.fingerprint) is None  # not on the data disk
    finally:
        close_login_home(home.home)
    assert not home.home.exists()


def test_only_the_clients_mistakes_count_as_garbage(people: People, server: ServerKeys) -> None:
    from tits.broker.login import BrokerFault, describe

    assert describe(VerificationError("login answers another challenge"))[2] is True
    assert describe(BrokerFault("cannot decrypt right now"))[:1] == ("login-unavailable",)
    assert describe(BrokerFault("x"))[2] is False
    assert describe(OSError(28, "No space left on device"))[2] is False  # a full disk
    # a broker whose GnuPG cannot decrypt (its key gone): the client is not blamed
    verifier = LoginVerifier(server)
    nonce = os.urandom(32)
    msg = login(people.alice, server, nonce)
    server.identity.gpg.delete_keys(server.fingerprint, secret=True, expect_passphrase=False)
    with pytest.raises(BrokerFault):
        verifier.verify(msg, nonce, CURVE)


def test_the_login_homes_of_dead_brokers_are_swept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tits.broker.login import sweep_login_homes

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    gone, alive, fresh = (tmp_path / f"titsd-login-{n}" for n in ("gone", "alive", "fresh"))
    for home in (gone, alive, fresh):
        home.mkdir()
    (gone / "broker.pid").write_text(dead.stdout.strip())
    (alive / "broker.pid").write_text(str(os.getpid()))
    assert sweep_login_homes(tmp_path) == [gone]
    assert not gone.exists() and alive.exists() and fresh.exists()
