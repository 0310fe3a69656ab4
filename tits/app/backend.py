"""The client (online) or the store alone (offline), behind one `work()`.

Online, the asyncio `Client` runs on the app's loop and its worker thread does every gpg call
and store read. Offline (tests, snapshots, `tits app --offline`), the store is opened on a
worker thread of our own: the app opens and shows history without any broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from tits.client.client import Client
from tits.client.store import LocalStore
from tits.config import read_toml
from tits.contacts import Contacts
from tits.errors import TitsError
from tits.home import Home
from tits.identity import Identity

P = ParamSpec("P")
T = TypeVar("T")


class Backend:
    def __init__(self, home: Path, *, offline: bool, broker: str | None = None) -> None:
        self.home = home
        self.offline = offline
        self.broker = broker
        self.client: Client | None = None
        self._store: LocalStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.me = str(read_toml(home / "config.toml").get("fingerprint", ""))
        self._names: dict[str, str] = {}
        self._identity: Identity | None = None  # offline: the home's keyring, if it has one

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.offline:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tits-app-store")
            self._store = await loop.run_in_executor(self._pool, LocalStore, self.home)
        else:
            # Client() starts gpg (--version) and opens the store: off the loop
            h = Home(self.home)
            self.client = await asyncio.to_thread(Client, h, broker=self.broker)
            self.me = self.client.me

    @property
    def store(self) -> LocalStore:
        if self.client is not None:
            return self.client.store
        assert self._store is not None, "Backend.start() first"
        return self._store

    async def work(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self.client is not None:
            return await self.client.work(fn, *args, **kwargs)
        assert self._pool is not None, "Backend.start() first"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self._pool is not None and self._store is not None:
            store, self._store = self._store, None
            await asyncio.get_running_loop().run_in_executor(self._pool, store.close)
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- names (on the worker: a key's own name needs gpg) ---------------------------------------

    def contacts(self) -> list[tuple[str, str]]:
        try:
            return Contacts(self.home).list()
        except TitsError:
            return []

    def name_of(self, fp: str) -> str:
        """Worker thread only. The petname; else the key's name marked ~, else the fingerprint."""
        if fp in self._names:
            return self._names[fp]
        if self.client is not None:
            name = self.client.name_of(fp)
        else:
            names = [n for n, f in self.contacts() if f == fp]
            if not names and fp == self.me:
                names = [str(read_toml(self.home / "config.toml").get("name", ""))]
            name = names[0] if names and names[0] else fp[:16]
        self._names[fp] = name
        return name

    def names(self, fps: list[str]) -> dict[str, str]:
        return {fp: self.name_of(fp) for fp in fps}

    def key_changed(self, fp: str) -> bool:
        """Worker thread only. A contact confirmed once whose key is not the one confirmed
        (its subkeys replaced under the same fingerprint): the app warns in their chat."""
        seen = self.store.confirmation(fp)
        if seen is None:
            return False
        identity = self.client.identity if self.client is not None else self._offline_identity()
        return identity is not None and identity.subkeys(fp) != seen

    def _offline_identity(self) -> Identity | None:
        if self._identity is None and (self.home / "gnupg").is_dir():
            self._identity = Identity(self.home / "gnupg")
        return self._identity
