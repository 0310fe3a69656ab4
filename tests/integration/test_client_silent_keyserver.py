"""A key server that never answers does not stall what a client shows (issue 9: "key-server
look-ups never stall the receive path").

Bob's client is given a key server that accepts connections and never says a word. Dave,
whose key Bob does not have, writes first; Alice, whom Bob knows, writes after. Bob is shown
Alice's text while the look-up for Dave's key still hangs (the silent server holds it open),
and Dave's text waits, held, instead of being lost or refused at once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import kill_agent
from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    Received,
    cloud1_fixture,
    crowd_fixture,
)
from tests.proc_cloud import ProcCloud
from tits.client.blocking import Messenger
from tits.home import Home
from tits.keyclient import KeyClient


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts who is waiting."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.waiting: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.waiting.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.waiting:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_silent_key_server_holds_one_sender_and_stalls_no_one_else(
    cloud1: ProcCloud, crowd: Crowd, silent: SilentServer, tmp_path: Path
) -> None:
    ks = cloud1.local.keyserver
    dave_home = Home(tmp_path / "dave")
    dave_home.create("Dave", "dave@tits.invalid", "dave-phone")
    try:
        kc = KeyClient(ks)  # the broker checks Dave's login against the real key server
        kc.publish_key(dave_home.identity.export_public(dave_home.fingerprint))
        _, cert, sig = dave_home.certificate
        kc.publish_device(cert, sig, dave_home.device.prove(cert))
        bob = Received(crowd.messenger("bob", cloud1.url(0), keyserver=silent.url))
        alice = crowd.messenger("alice", cloud1.url(0), ks)
        with Messenger(dave_home, broker=cloud1.url(0), keyserver=ks) as dave:
            first = dave.send_text([bob.m.me], "我是 Dave，還記得我嗎？")
            second = alice.send_text([bob.m.me], "晚點見")
            bob.until(lambda r: second in {m.id for m in r.messages}, 60, "Alice's text")
            # Alice's text is shown while Bob's client still waits on the silent server for
            # Dave's key: the look-up did not hold up the receive path...
            assert silent.waiting, "Bob's client asked the key server"
            assert first not in {m.id for m in bob.messages}
            # ...and Dave's text is held, not refused and not lost
            assert not [e for e in bob.refused if e.id == first]
            assert bob.m.client.inbox.held
    finally:
        kill_agent(dave_home.path / "gnupg")
