"""`tits key publish|fetch` and `tits contact add|list` as a user runs them: real processes,
real GnuPG homes, a real tits-keyd on a random port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import keyd_fixtures as kf
from tests.conftest import kill_agent
from tests.keyd_fixtures import KeydProcess, short_tmpdir
from tits.contacts import Contacts
from tits.keyclient import KeyClient

keyd = kf.keyd
TITS = [sys.executable, "-m", "tits.cli"]
ENV = {**os.environ, "TITS_LANG": "en"}


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TITS, "--home", str(home), *args], capture_output=True, text=True, timeout=60, env=ENV
    )


class People:
    def __init__(self, server: KeydProcess) -> None:
        self.root = short_tmpdir("cli")
        self.homes: dict[str, Path] = {}
        self.fps: dict[str, str] = {}
        self.url = server.url

    def make(self, name: str, email: str, keyserver: bool = True) -> Path:
        home = self.root / name
        args = ["init", "--name", name.title(), "--email", email, "--json"]
        r = run(home, *args, *(["--keyserver", self.url] if keyserver else []))
        assert r.returncode == 0, r.stderr
        self.homes[name], self.fps[name] = home, json.loads(r.stdout)["fingerprint"]
        return home

    def close(self) -> None:
        for home in self.homes.values():
            kill_agent(home / "gnupg")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def people(keyd: KeydProcess) -> Iterator[People]:
    p = People(keyd)
    try:
        p.make("alice", "alice@example.org")
        p.make("bob", "bob@example.org", keyserver=False)
        p.make("annie", "ann@example.org")
        p.make("anne", "ann@example.net")
        for name in ("alice", "annie", "anne"):
            r = run(p.homes[name], "key", "publish")
            assert r.returncode == 0, r.stderr
            assert "key published" in r.stdout and p.fps[name] in r.stdout
        yield p
    finally:
        p.close()


def test_publish_puts_key_and_device_on_the_server(keyd: KeydProcess, people: People) -> None:
    kc = KeyClient(keyd.url)
    fp = people.fps["alice"]
    assert "Alice <alice@example.org>" in kc.search(fp)[0]["uids"]
    (dev,) = kc.devices(fp)
    assert dev["revoked"] is False
    r = run(people.homes["alice"], "key", "publish", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["fingerprint"] == fp and out["key"] == "unchanged" and out["device"] == dev["device"]


def test_fetch_by_email_imports_and_adds_contact(keyd: KeydProcess, people: People) -> None:
    bob = people.homes["bob"]
    r = run(bob, "key", "fetch", "alice@example.org", "--keyserver", keyd.url, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["fingerprint"] == people.fps["alice"] and out["contact"] == "alice"
    assert out["email"] == "alice@example.org"
    assert Contacts(bob).resolve("@alice") == people.fps["alice"]
    # imported into Bob's own GnuPG ring
    listing = subprocess.run(
        ["gpg", "--homedir", str(bob / "gnupg"), "--with-colons", "--list-keys",
         people.fps["alice"]],
        capture_output=True, text=True,
    )  # fmt: skip
    assert listing.returncode == 0 and people.fps["alice"] in listing.stdout

    r = run(bob, "contact", "list", "--json")
    assert r.returncode == 0, r.stderr
    (contact,) = json.loads(r.stdout)["contacts"]
    assert contact == {
        "name": "alice",
        "fingerprint": people.fps["alice"],
        "uid_name": "Alice",
        "email": "alice@example.org",
        "have_key": True,
        "confirmed": False,
        "key_changed": False,
    }
    r = run(bob, "contact", "list")
    assert "@alice" in r.stdout and people.fps["alice"] in r.stdout


def test_fetch_by_fingerprint_with_petname(keyd: KeydProcess, people: People) -> None:
    bob = people.homes["bob"]
    fp = people.fps["annie"]
    r = run(bob, "key", "fetch", fp.lower(), "--as", "陳安妮", "--keyserver", keyd.url)
    assert r.returncode == 0, r.stderr
    assert "imported" in r.stdout and "@陳安妮" in r.stdout
    assert Contacts(bob).resolve("陳安妮") == fp


def test_ambiguous_name_is_refused_with_candidates(keyd: KeydProcess, people: People) -> None:
    bob = people.homes["bob"]
    r = run(bob, "key", "fetch", "Ann", "--keyserver", keyd.url)
    assert r.returncode == 1
    assert "ambiguous" in r.stderr
    assert people.fps["annie"] in r.stderr and people.fps["anne"] in r.stderr
    assert "Traceback" not in r.stderr
    r = run(bob, "key", "fetch", "Ann", "--keyserver", keyd.url, "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout.splitlines()[0])
    assert out["error"] == "ambiguous"
    assert {c["fingerprint"] for c in out["candidates"]} == {
        people.fps["annie"],
        people.fps["anne"],
    }
    # a unique part of a name is fine
    r = run(bob, "key", "fetch", "Anne", "--keyserver", keyd.url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fingerprint"] == people.fps["anne"]


def test_fetch_failures_are_one_line(keyd: KeydProcess, people: People) -> None:
    bob = people.homes["bob"]
    for args, needle in (
        (("key", "fetch", "nobody@example.org", "--keyserver", keyd.url), "no key"),
        (("key", "fetch", "AB" * 20, "--keyserver", keyd.url), "not on key server"),
        (("key", "fetch", "alice@example.org"), "no key server configured"),
        (("key", "fetch", "alice@example.org", "--keyserver", "http://127.0.0.1:9"),
         "cannot reach"),
        (("key", "fetch", "x", "--keyserver", "ftp://nowhere"), "not a key server URL"),
        (("contact", "add", "carol", "1234"), "fingerprint"),
        (("contact", "add", "bad name", "AB" * 20), "unusable contact name"),
        (("contact", "add", "alice", "CD" * 20), "already names"),
    ):  # fmt: skip
        r = run(bob, *args)
        assert r.returncode == 1, (args, r.stdout)
        assert needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0


def test_contact_add_and_remove(people: People) -> None:
    bob = people.homes["bob"]
    r = run(bob, "contact", "add", "@carol", "CD" * 20)
    assert r.returncode == 0, r.stderr
    assert "@carol" in r.stdout and "not in your keyring" in r.stdout
    assert Contacts(bob).resolve("Carol") == "CD" * 20
    r = run(bob, "contact", "remove", "carol")
    assert r.returncode == 0, r.stderr
    assert "carol" not in [n for n, _ in Contacts(bob).list()]


def test_publish_needs_an_identity(keyd: KeydProcess) -> None:
    empty = short_tmpdir("ce")
    try:
        r = run(empty, "key", "publish", "--keyserver", keyd.url)
        assert r.returncode == 1 and "init" in r.stderr
    finally:
        shutil.rmtree(empty, ignore_errors=True)
