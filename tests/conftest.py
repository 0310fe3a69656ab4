"""Shared fixtures: GnuPG homes in temp dirs (agents killed afterwards) and ready-made users."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import kill_agent
from tits.home import Home


@pytest.fixture(scope="session", autouse=True)
def _require_gpg() -> None:
    if shutil.which("gpg") is None:
        pytest.exit("GnuPG is required: apt-get install gnupg", returncode=2)


@pytest.fixture(autouse=True)
def _agents_in_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever GnuPG home a test made under its tmp_path — its own, a broker's, one a
    verifier made — has its agent stopped afterwards, even one a kill -9 left behind (a full
    run once left ten agents)."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    root: Path = request.getfixturevalue("tmp_path")  # now, so it is torn down after this
    yield
    for sock in root.rglob("S.gpg-agent"):
        kill_agent(sock.parent)


@pytest.fixture
def make_home(tmp_path: Path) -> Iterator[Callable[..., Home]]:
    """Make an initialised client home: make_home("alice") -> Home with key and device."""
    made: list[Home] = []

    def factory(name: str, email: str | None = None, device: str | None = None) -> Home:
        home = Home(tmp_path / name)
        home.create(name.title(), email or f"{name}@example.org", device or f"{name}-dev")
        made.append(home)
        return home

    yield factory
    for home in made:
        kill_agent(home.path / "gnupg")


class Users:
    """Alice, Bob and Mallory with each other's public keys: made once per test session."""

    def __init__(self, root: Path) -> None:
        self.alice = Home(root / "alice")
        self.bob = Home(root / "bob")
        self.mallory = Home(root / "mallory")
        self.all = (self.alice, self.bob, self.mallory)
        for h in self.all:
            h.create(h.path.name.title(), f"{h.path.name}@example.org", f"{h.path.name}-dev")
        for a in self.all:
            for b in self.all:
                if a is not b:
                    a.identity.import_public(b.identity.export_public(b.fingerprint))


@pytest.fixture(scope="session")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    u = Users(tmp_path_factory.mktemp("users"))
    yield u
    for h in u.all:
        kill_agent(h.path / "gnupg")
