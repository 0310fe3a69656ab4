"""Stock GnuPG against a real tits-keyd: send-keys, recv-keys, search-keys, owner updates."""

from __future__ import annotations

import json

from tests import keyd_fixtures as kf
from tests.keyd_fixtures import KeydProcess, StockGpg
from tits.keyd.openpgp import mr_unescape, parse_armored_keys

keyd, stock_gpg = kf.keyd, kf.stock_gpg

PASS = ("--passphrase", "", "--pinentry-mode", "loopback")


def ks(server: KeydProcess) -> tuple[str, str]:
    return ("--keyserver", f"hkp://127.0.0.1:{server.port}")


def test_send_recv_and_search_with_stock_gpg(keyd: KeydProcess, stock_gpg: type[StockGpg]) -> None:
    ann, bea, cid = stock_gpg(), stock_gpg(), stock_gpg()
    fp = ann.gen("Ann Example <ann@example.org>")
    ann.run(*ks(keyd), "--send-keys", fp)

    bea.run(*ks(keyd), "--recv-keys", fp)
    assert bea.fingerprints() == [fp]
    cid.run(*ks(keyd), "--recv-keys", "0x" + fp[-16:])  # by long key id
    assert cid.fingerprints() == [fp]

    # machine-readable search, as gpg passes it through
    out = bea.run("--with-colons", *ks(keyd), "--search-keys", "ann@example.org").stdout.decode()
    rows = [line.split(":") for line in out.splitlines()]
    assert ["info", "1", "1"] in rows
    pub = next(r for r in rows if r[0] == "pub")
    assert pub[1] == fp and pub[2] == "22"
    uid = next(r for r in rows if r[0] == "uid")
    assert mr_unescape(uid[1]) == "Ann Example <ann@example.org>"

    # the human listing by part of the name (batch mode cannot prompt for a choice: rc 2)
    r = bea.run(*ks(keyd), "--search-keys", "Ann Exam", check=False)
    assert "Ann Example <ann@example.org>" in r.stdout.decode()
    assert fp[-16:] in r.stdout.decode()

    # a key the server does not hold
    r = bea.run(*ks(keyd), "--recv-keys", "0x" + "AB" * 20, check=False)
    assert r.returncode != 0
    r = bea.run(*ks(keyd), "--search-keys", "nobody@example.org", check=False)
    assert r.returncode != 0 and b"not found" in r.stderr.lower()


def test_owner_updates_merge_and_revocation_is_served(
    keyd: KeydProcess, stock_gpg: type[StockGpg]
) -> None:
    owner, reader = stock_gpg(), stock_gpg()
    fp = owner.gen("Upd Ater <upd@example.org>", usage="cert,sign")
    owner.run(*ks(keyd), "--send-keys", fp)
    first = keyd.lookup(op="get", search="0x" + fp)[1]
    assert parse_armored_keys(first.decode())[0].subkeys == []

    owner.run(*PASS, "--quick-add-uid", fp, "Upd Second <upd2@example.org>")
    owner.run(*PASS, "--quick-add-key", fp, "cv25519", "encr", "never")
    owner.run(*ks(keyd), "--send-keys", fp)

    status, body = keyd.lookup(op="index", options="mr", search="upd2@example.org")
    assert status == 200 and f"pub:{fp}:".encode() in body
    merged = parse_armored_keys(keyd.lookup(op="get", search="0x" + fp)[1].decode())[0]
    assert len(merged.subkeys) == 1 and len(merged.user_ids) == 2
    # the encryption subkey's id finds the key too
    assert keyd.lookup(op="get", search="0x" + merged.subkeys[0][-16:])[0] == 200

    # the owner revokes the key (gpg made a revocation certificate at key creation)
    rev = (owner.home / "openpgp-revocs.d" / f"{fp}.rev").read_text()
    owner.run("--import", input=rev.replace(":-----BEGIN", "-----BEGIN").encode())
    owner.run(*ks(keyd), "--send-keys", fp)
    _, body = keyd.lookup(op="index", options="mr", search="0x" + fp)
    pub = next(line for line in body.decode().splitlines() if line.startswith("pub:"))
    assert pub.split(":")[6] == "r"
    reader.run(*ks(keyd), "--recv-keys", fp)
    assert next(r for r in reader.colons("--list-keys", fp) if r[0] == "pub")[1] == "r"


def test_third_party_certification_is_dropped(keyd: KeydProcess, stock_gpg: type[StockGpg]) -> None:
    owner, other = stock_gpg(), stock_gpg()
    fp = owner.gen("Cert Target <target@example.org>")
    owner.run(*ks(keyd), "--send-keys", fp)
    before = keyd.lookup(op="get", search="0x" + fp)[1]

    other.gen("Well Meaning <friend@example.org>")
    other.run("--import", input=owner.export(fp))
    other.run("--yes", "--quick-sign-key", fp)
    assert sum(r[0] == "sig" for r in other.colons("--list-sigs", fp)) == 2
    status, body = keyd.add(other.export(fp), headers={"Accept": "application/json"})
    assert status == 200
    assert json.loads(body) == {"fingerprint": fp, "status": "unchanged", "stripped": 1}
    assert keyd.lookup(op="get", search="0x" + fp)[1] == before
