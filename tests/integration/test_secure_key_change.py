"""A secure group sends only to members the user confirmed; when a confirmed member's key
changes (a new subkey under the same fingerprint — the owner's, or someone pretending), the
contact is flagged and the group stops sending to them until they are confirmed again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    people_fixture,
)
from tits.client.blocking import Message, Messenger
from tits.client.model import Skipped
from tits.contacts import Contacts
from tits.errors import ConfigError


def _confirm(m: Messenger, fp: str) -> None:
    m.store.confirm(fp, m.client.identity.subkeys(fp))


def test_a_changed_key_stops_a_secure_group_until_confirmed_again(
    broker: BrokerProc, people: People
) -> None:
    a, b = people.alice, people.bob
    alice = Messenger(a, broker=broker.url)
    gid = alice.group_create("機密", secure=True)
    try:
        alice.group_change(gid, "invite", [b.fingerprint])
        raise AssertionError("an unconfirmed invitee was accepted")
    except ConfigError as exc:
        assert "not confirmed" in exc.message
    _confirm(alice, b.fingerprint)
    alice.group_change(gid, "invite", [b.fingerprint])
    alice.send_text([], "第一則", group=gid)
    assert not [e for e in alice.take_events() if isinstance(e, Skipped)]

    # Bob's key gets a new encryption subkey; Alice's ring learns it
    gh = str(b.path / "gnupg")
    subprocess.run(
        ["gpg", "--homedir", gh, "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
         "--quick-add-key", b.fingerprint, "cv25519", "encr", "1y"],
        check=True, capture_output=True,
    )  # fmt: skip
    alice.client.identity.import_public(b.identity.export_public(b.fingerprint))
    Contacts(a.path).add("bob", b.fingerprint)
    env = dict(os.environ, TITS_LANG="en")
    r = subprocess.run(
        [sys.executable, "-m", "tits.cli", "--home", str(a.path), "contact", "list", "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    row = json.loads(r.stdout)["contacts"][0]
    assert row["key_changed"] is True and row["confirmed"] is False

    try:  # Bob is the only other member: nothing can go
        alice.send_text([], "不該送出", group=gid)
        raise AssertionError("sent to a member whose key changed")
    except Exception as exc:  # noqa: BLE001 - the outbox marks it failed with the reason
        assert "confirm" in str(exc)
    _confirm(alice, b.fingerprint)
    alice.send_text([], "再確認之後", group=gid)
    alice.close()

    bob = Messenger(b, broker=broker.url)
    got: list[Message] = []
    bob.receive(got.append, timeout=30, until=lambda: len(got) >= 2)
    assert [m.text for m in got] == ["第一則", "再確認之後"]
    bob.close()
