"""Helpers for the group tests: many users (real GnuPG keys, every public key in every home,
made once per session and copied per test), their clients, and waiting for what they receive.

    crowd = Crowd(n)                 # homes alice, bob, carol, ... (n ≤ len(NAMES))
    crowd.publish(keyserver)         # keys and device certificates at a keyd
    m = crowd.messenger("bob", broker_url, keyserver)
    got = Inbox(m); got.until(lambda: ...)   # drain deliveries into lists, with a timeout
    crowd.close()                    # clients closed, gpg-agents killed, files removed
"""

from __future__ import annotations

import atexit
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from tests.broker_fixtures import second_device
from tests.proc_cloud import ProcCloud
from tests.support import kill_agent, short_tmpdir
from tits import wire
from tits.client import memberlog as ml
from tits.client.blocking import Messenger
from tits.client.groups import GroupBundle
from tits.client.model import Event, GroupChanged, Message, Refused
from tits.home import Home
from tits.keyclient import KeyClient
from tits.session import Envelope, SessionKey, seal

NAMES = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj",
]  # fmt: skip

_TEMPLATES: dict[int, Path] = {}


def _template(n: int) -> Path:
    """n homes with their keys and each other's public keys, made once per session."""
    if n in _TEMPLATES:
        return _TEMPLATES[n]
    root = short_tmpdir("tg")
    homes = []
    for name in NAMES[:n]:
        h = Home(root / name)
        h.create(name.title(), f"{name}@example.org", f"{name}-phone")
        homes.append(h)
    everyone = "".join(h.identity.export_public(h.fingerprint) for h in homes)
    for h in homes:
        h.identity.import_public(everyone)
        assert all(h.identity.has_key(o.fingerprint) for o in homes)
    for h in homes:
        kill_agent(h.path / "gnupg")
    _TEMPLATES[n] = root
    return root


@atexit.register
def _remove_templates() -> None:
    for root in _TEMPLATES.values():
        shutil.rmtree(root, ignore_errors=True)


class Crowd:
    def __init__(self, n: int) -> None:
        assert n <= len(NAMES)
        tpl = _template(n)
        self.root = short_tmpdir("tq")
        self.homes: dict[str, Home] = {}
        for name in NAMES[:n]:
            shutil.copytree(
                tpl / name, self.root / name,
                ignore=shutil.ignore_patterns("S.*", "*.lock", "store.db*"),
            )  # fmt: skip
            self.homes[name] = Home(self.root / name)
        self.clients: list[Messenger] = []

    @property
    def names(self) -> list[str]:
        return list(self.homes)

    def fp(self, name: str) -> str:
        return self.homes[name].fingerprint

    def second_device(self, name: str) -> Home:
        home = second_device(self.homes[name], self.root / f"{name}2", f"{name}-tablet")
        self.homes[f"{name}2"] = home
        return home

    def publish(self, keyserver: str) -> None:
        kc = KeyClient(keyserver)
        for home in self.homes.values():
            kc.publish_key(home.identity.export_public(home.fingerprint))
            _, cert, sig = home.certificate
            kc.publish_device(cert, sig, home.device.prove(cert))

    def messenger(self, name: str, broker: str, keyserver: str | None = None) -> Messenger:
        m = Messenger(self.homes[name], broker=broker, keyserver=keyserver)
        self.clients.append(m)
        return m

    def confirm_all(self, m: Messenger) -> None:
        """What `tits contact confirm` will do, for every other user (secure groups)."""
        ident = m.client.identity
        for home in self.homes.values():
            fp = home.fingerprint
            if fp != m.me:
                m.store.confirm(fp, ident.subkeys(fp))

    def close(self) -> None:
        for m in self.clients:
            try:
                m.close()
            except Exception:  # noqa: BLE001 - the others must still close
                pass
        for home in self.homes.values():
            kill_agent(home.path / "gnupg")
        shutil.rmtree(self.root, ignore_errors=True)


class Received:
    """What one client has received so far: messages and events, kept as they come."""

    def __init__(self, m: Messenger) -> None:
        self.m = m
        self.messages: list[Message] = []
        self.events: list[Event] = []

    def drain(self, seconds: float = 0.5) -> None:
        self.m.receive(self.messages.append, timeout=seconds, on_event=self.events.append)

    def until(
        self, pred: Callable[[Received], bool], timeout: float = 60.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self):
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.m.home.path.name}: timed out after {timeout}s waiting for "
                    f"{what or 'a condition'}; got {[x.text for x in self.messages]}, "
                    f"events {[self.describe(e) for e in self.events]}"
                )
            self.m.receive(
                self.messages.append, timeout=1.0, on_event=self.events.append,
                until=lambda: pred(self),
            )  # fmt: skip

    @staticmethod
    def describe(e: Event) -> str:
        detail = getattr(e, "event", "") or getattr(e, "reason", "") or getattr(e, "state", "")
        return f"{type(e).__name__}:{detail}"

    @property
    def refused(self) -> list[Refused]:
        return [e for e in self.events if isinstance(e, Refused)]

    @property
    def changes(self) -> list[GroupChanged]:
        return [e for e in self.events if isinstance(e, GroupChanged)]

    def texts(self, group: bytes | None = None) -> list[str]:
        return [str(m.text) for m in self.messages if group is None or m.group == group]

    def knows_group(self, group: bytes) -> bool:
        return self.m.client.groups.state(group) is not None


# -- what a hostile or stale client puts on the wire ------------------------------------------


def state_of(m: Messenger, group: bytes) -> ml.GroupState:
    state = m.client.groups.state(group)
    assert state is not None, "this client does not know the group"
    return state


def log_entries(m: Messenger, group: bytes) -> ml.MemberLog:
    log = m.client.groups.log(group)
    assert log is not None, "this client does not know the group"
    return log


def group_members(m: Messenger, group: bytes) -> list[str]:
    state = m.client.groups.state(group)
    assert state is not None
    return sorted(state.members)


def send_raw(m: Messenger, frames: list[tuple[wire.Send, bytes]]) -> None:
    """Put frames on the wire from `m`'s device, past its client's checks."""
    m.connection().send_and_wait(frames)


def group_bundle_frame(
    m: Messenger,
    group: bytes,
    entries: list[ml.SignedEntry] | None = None,
    keys: list[SessionKey] | None = None,
    *,
    log: list[ml.SignedEntry] | None = None,
    to: list[str] | None = None,
) -> tuple[wire.Send, bytes]:
    """A group message as `m` would send it (signed by m, wrapped for `to`: the members),
    holding `log` (the log `m` has) plus `entries`, and `keys`."""
    if log is None:
        held = m.client.groups.log(group)
        log = held.entries() if held is not None else []
    bundle = GroupBundle(
        group=group.hex(), log=[*log, *(entries or [])], keys=[k.to_file() for k in keys or []]
    )
    if to is None:
        to = [fp for fp in group_members(m, group) if fp != m.me]
    sealed = m.client.keyring.wrap(msgspec.json.encode(bundle), to)
    _, cert, sig = m.home.certificate
    body = wire.GroupBody(
        group=group, bundle=sealed, cert=cert, cert_sig=sig.encode(),
        cert_proof=m.home.device.prove(cert),
    )  # fmt: skip
    return wire.Send(id=wire.new_msg_id(), sender=m.me, to=to, group=group), wire.encode(body)


def sealed_text_frame(
    m: Messenger, group: bytes, key: SessionKey, text: str, to: list[str] | None = None
) -> tuple[wire.Send, bytes]:
    """A group text from `m`'s device sealed under `key`, whatever its client would use."""
    to = to or [fp for fp in group_members(m, group) if fp != m.me]
    send = wire.Send(id=wire.new_msg_id(), sender=m.me, to=to, group=group)
    env = Envelope(send.id, m.me, to, group)
    return send, seal(key, m.home.device, env, text.encode(), serial=time.time_ns())


def entry_by(
    signer: Messenger, group: bytes, op: ml.Op, actor: str, targets: list[str]
) -> ml.SignedEntry:
    """The next entry of `signer`'s log naming `actor`, signed with `signer`'s key."""
    state = signer.client.groups.state(group)
    assert state is not None
    entry = ml.Entry(
        group=group.hex(), prev=state.head, op=op, actor=actor, targets=targets,
        ts=time.time_ns() // 1_000_000,
    )  # fmt: skip
    raw = ml.encode_entry(entry)
    return ml.SignedEntry(raw=raw, signature=signer.client.identity.sign_detached(raw, signer.me))


def join(cloud: ProcCloud, crowd: Crowd, *names: str) -> dict[str, Received]:
    """Clients for `names` at the cloud's first broker, each with what it receives."""
    return {n: Received(crowd.messenger(n, cloud.url(0), cloud.local.keyserver)) for n in names}


def group_of(crowd: Crowd, rs: dict[str, Received], members: list[str], name: str) -> bytes:
    """A group Alice makes and invites `members` to, once each of them knows all of it."""
    alice = rs["alice"].m
    gid = alice.group_create(name)
    alice.group_change(gid, "invite", [crowd.fp(n) for n in members])
    want = {crowd.fp("alice")} | {crowd.fp(n) for n in members}
    for n in members:
        rs[n].until(lambda r: r.knows_group(gid) and set(state_of(r.m, gid).members) == want,
                    60, "the group")  # fmt: skip
    return gid


# -- fixtures for the one-broker group tests --------------------------------------------


@pytest.fixture(name="cloud1")
def cloud1_fixture() -> Iterator[ProcCloud]:
    """A broker (and keyd) per test: the users are the same in every test, so a shared
    broker would hand one test's mail to the next."""
    cloud = ProcCloud(1)
    yield cloud
    cloud.close()


@pytest.fixture(name="crowd")
def crowd_fixture(cloud1: ProcCloud) -> Iterator[Crowd]:
    c = Crowd(len(NAMES))
    c.publish(cloud1.local.keyserver)
    yield c
    c.close()
