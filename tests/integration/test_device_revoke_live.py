"""A device revoked while it is logged in (real broker, keyd, GnuPG): the broker ends its
session, the group's new key never reaches it, and it cannot log in again; the user's other
device goes on."""

from __future__ import annotations

import time

import pytest

from tests.broker_fixtures import connect
from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    Received,
    cloud1_fixture,
    crowd_fixture,
)
from tests.proc_cloud import ProcCloud
from tests.support import wait_for
from tits import wire
from tits.client import device_admin
from tits.client.connection import Incoming
from tits.errors import BrokerError
from tits.keyclient import KeyClient

pytestmark = pytest.mark.timeout(300)


def test_a_session_held_when_revoked_ends(cloud1: ProcCloud, crowd: Crowd) -> None:  # noqa: F811
    url, keyserver = cloud1.url(0), cloud1.local.keyserver
    alice_home = crowd.homes["alice"]
    alice_home.save_config(keyserver=keyserver)
    tablet = crowd.second_device("alice")
    _, cert, sig = tablet.certificate
    KeyClient(keyserver).publish_device(cert, sig, tablet.device.prove(cert))
    alice = crowd.messenger("alice", url, keyserver)
    bob = Received(crowd.messenger("bob", url, keyserver))
    gid = alice.group_create("撤銷")
    alice.group_change(gid, "invite", [crowd.fp("bob")])
    bob.until(lambda r: r.m.client.groups.state(gid) is not None, 60, "the group")

    live = connect(tablet, url)  # the tablet is logged in, and stays so
    try:
        row = device_admin.revoke_device(alice_home, "alice-tablet", keyserver)
        assert row.device == tablet.device.id
        ended: list[wire.Error] = []
        got: list[Incoming] = []

        def kicked() -> bool:
            for item in live.poll(0.5):
                if isinstance(item, wire.Error):
                    ended.append(item)
                else:
                    got.append(item)
                    live.ack([item.envelope.id])
            return any(e.code == "login-refused" for e in ended)

        wait_for(kicked, 60, "the broker to end the revoked session")
        assert "revoked" in ended[-1].message
        # the group moves on: nothing of it reaches the ended session
        alice.rekey_groups()
        text = bob.m.send_text([], "之後", group=gid)
        Received(alice).until(lambda r: any(x.id == text for x in r.messages), 60, "the text")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for item in live.poll(0.5):
                assert isinstance(item, wire.Error), "a delivery reached a revoked session"
    finally:
        live.close()
    # and it cannot log in again
    again = connect(tablet, url, login=False)
    try:
        with pytest.raises(BrokerError, match="revoked"):
            again.login()
    finally:
        again.close()
