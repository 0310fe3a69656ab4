"""A history transfer that broke off resumes in the next pairing (real titsd, real GnuPG, the
`tits` command): the joining process is killed (SIGKILL) halfway through the chunks; a second
`device link` / `device join` with a fresh code moves only the chunks that were not already
on the new device whole — a chunk altered on its disk meanwhile is sent again — and the home
it makes holds the whole history."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    people_fixture,
)
from tests.support import kill_agent
from tits import pairing as P
from tits import wire
from tits.client import linking, resume
from tits.client.history import CHUNK_BYTES
from tits.client.model import Message
from tits.client.store import LocalStore
from tits.session import direct_conversation_id

pytestmark = pytest.mark.timeout(300)
MESSAGES = 6000  # ~700 bytes each: some 25 chunks of history
KILL_AFTER = 10  # chunks written when the joining process is killed

# the new device's process, killed by itself the moment its KILL_AFTER-th chunk is on disk
JOIN_AND_DIE = """
import os, signal, sys
from tits.client import history, linking
from pathlib import Path
from tits.home import Home
written = [0]
add = history.Receiver.add
def add_then_die(self, index, data):
    fresh = add(self, index, data)
    written[0] += fresh
    if written[0] >= int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return fresh
history.Receiver.add = add_then_die
linking.join(Home(Path(sys.argv[1])), sys.argv[2], lambda sas: True, "new-phone")
"""


def fill_history(home: Path, me: str, bob: str) -> None:
    rnd = random.Random(12)
    conv = direct_conversation_id(me, bob)
    store = LocalStore(home)
    msgs = [
        Message(
            id=wire.new_msg_id(),
            conv=conv,
            sender=me if i % 2 else bob,
            to=[bob if i % 2 else me],
            group=None,
            kind="text",
            text=f"{i} " + "".join(rnd.choice("聊天紀錄跟著你走abcdef ") for _ in range(230)),
            verified=True,
            ts=1_700_000_000_000 + i,
        )  # fmt: skip
        for i in range(MESSAGES)
    ]
    store.record(msgs)
    store.close()


class Linking:
    """`linking.link` on Alice's device, in a thread; its code, then its result."""

    def __init__(self, home: Any, url: str, answer_s: float = linking.ANSWER_S) -> None:
        self.codes: list[P.Code] = []
        self.result: list[linking.Linked | BaseException] = []
        self._ready = threading.Event()

        def on_code(code: P.Code) -> None:
            self.codes.append(code)
            self._ready.set()

        def run() -> None:
            try:
                linked = linking.link(home, lambda sas: True, on_code, broker=url,
                                      keyserver="", ttl_s=120, answer_s=answer_s)  # fmt: skip
                self.result.append(linked)
            except BaseException as exc:  # noqa: BLE001 - looked at by the test
                self.result.append(exc)
            self._ready.set()

        self._thread = threading.Thread(target=run, daemon=True)  # ends by ttl_s, at worst
        self._thread.start()
        assert self._ready.wait(90) and self.codes, self.result

    def stop(self) -> None:
        """A test that failed: wait out the code (ttl_s), so its rendezvous is closed."""
        self._thread.join(150)

    def done(self, timeout: float = 120) -> linking.Linked | BaseException:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the linking device did not finish"
        return self.result[0]


def sweep_agents(tmp: Path) -> None:
    """The killed process left its rendezvous home (and its agent): ours to stop."""
    for d in tmp.glob("tits-pair-*"):
        kill_agent(d / "gnupg")


def run(cmd: list[str], tmp: Path, check: Callable[[subprocess.CompletedProcess[str]], None]
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = dict(os.environ, TITS_LANG="en", TMPDIR=str(tmp), COLUMNS="200")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    check(r)
    return r


def test_a_broken_history_transfer_resumes_in_a_new_pairing(
    broker: BrokerProc, people: People
) -> None:
    alice = people.alice
    fill_history(alice.path, alice.fingerprint, people.bob.fingerprint)
    new = people.root / "alice-new"
    tmp = people.root / "tmp"
    tmp.mkdir()
    links: list[Linking] = []
    try:
        # 1. the first pairing: the new device's process dies with part of the history
        first = Linking(alice, broker.url, answer_s=5)
        links.append(first)
        run([sys.executable, "-c", JOIN_AND_DIE, str(new), first.codes[0].text(),
             str(KILL_AFTER)], tmp, lambda r: None)  # fmt: skip
        assert isinstance(first.done(), P.PairingError)  # "the new device stopped answering"
        partial = resume.Partial(new)
        sha, spans = partial.offer(alice.fingerprint)
        held = resume.expand(spans, 1 << 20)
        assert len(held) == KILL_AFTER, spans
        assert not (new / "config.toml").exists() and not (new / "store.db").exists()
        manifest = json.loads(partial.manifest.read_text())
        total = len(manifest["chunks"]) // 64
        assert total > 2 * KILL_AFTER
        assert [p.name for p in (alice.path / "history-out").glob("*.tar")] == [f"{sha.hex()}.tar"]

        # a chunk altered on the new device's disk meanwhile is not one it holds
        bad = min(held)
        with partial.archive.open("r+b") as fh:
            fh.seek(bad * CHUNK_BYTES + 100)
            fh.write(b"\xff\x00\xff")

        # 2. a fresh code, the real command: only the rest moves
        second = Linking(alice, broker.url)
        links.append(second)
        r = run([sys.executable, "-m", "tits.cli", "--home", str(new), "device", "join",
                 second.codes[0].text(), "--yes", "--json"], tmp,
                lambda r: None)  # fmt: skip
        linked = second.done()
        assert r.returncode == 0, r.stderr
        assert isinstance(linked, linking.Linked), linked
        joined = json.loads(r.stdout.splitlines()[-1])
        resumed = KILL_AFTER - 1
        assert joined["chunks"] == {"total": total, "resumed": resumed, "fetched": total - resumed}
        assert linked.chunks_total == total
        assert linked.chunks_skipped == resumed and linked.chunks_sent == total - resumed
        print(f"history of {total} chunks: {KILL_AFTER} had arrived when the join was killed, "
              f"one altered; the second pairing sent {linked.chunks_sent}")  # fmt: skip

        # the whole history is there, and nothing of the transfer is left on either side
        assert joined["messages"] == MESSAGES
        store = LocalStore(new)
        try:
            conv = direct_conversation_id(alice.fingerprint, people.bob.fingerprint)
            texts = [m.text or "" for m in store.history(conv, limit=MESSAGES + 10)]
        finally:
            store.close()
        assert (
            len(texts) == MESSAGES
            and texts[0].startswith("0 ")
            and texts[-1].startswith(f"{MESSAGES - 1} ")
        )
        assert not partial.dir.exists()
        assert not list((alice.path / "history-out").glob("*.tar"))
    finally:
        for one in links:
            one.stop()
        sweep_agents(tmp)
        kill_agent(new / "gnupg")
