"""A full data disk (a small tmpfs, where this machine lets us mount one): logins still work,
sends are refused with `storage` (never acknowledged), and once space comes back the broker
stores again and the WAL it had to leave behind shrinks (issue 14 hole 3)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc, People, connect, people_fixture  # noqa: F401
from tests.support import short_tmpdir, wait_for
from tits import wire

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    mnt = short_tmpdir("tdf")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
    mnt.rmdir()


def fill(path: Path) -> Path:
    """Fill the filesystem of `path` to the last byte."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_logins_need_no_free_disk_and_storage_comes_back(small_disk: Path, people: People) -> None:
    broker = BrokerProc(small_disk / "broker").start()
    try:
        bob = connect(people.bob, broker.url)
        filler = fill(small_disk)
        # a user this broker has never seen logs in on the full disk (on main: "no usable
        # public key", the import into the data disk's GnuPG home failed)
        alice = connect(people.alice, broker.url)
        assert alice.welcome is not None
        send = wire.Send(id=wire.new_msg_id(), sender=people.alice.fingerprint,
                         to=[people.bob.fingerprint])  # fmt: skip
        alice.send(send, b"x" * 50_000)
        refused = None
        deadline = time.monotonic() + 20
        while refused is None and time.monotonic() < deadline:
            got = alice.recv(1.0)
            if isinstance(got, wire.Error | wire.Accepted):
                refused = got
        # a page of room may be left in the database file: then it is stored; either way,
        # nothing is acknowledged that is not stored
        assert isinstance(refused, wire.Error | wire.Accepted), refused
        if isinstance(refused, wire.Error):
            assert refused.code == "storage" and refused.ref == send.id
        # more logins on the full disk: the broker's trouble is never the clients' garbage
        for _ in range(3):
            again = connect(people.mallory, broker.url)
            assert again.welcome is not None
            again.close()
        wal = small_disk / "broker" / "mailbox.db-wal"
        filler.unlink()  # space comes back
        ids = alice.send_and_wait([(send, b"x" * 50_000)], timeout=30)
        assert ids == [send.id]
        got_ids: list[bytes] = []
        deadline = time.monotonic() + 15
        while send.id not in got_ids and time.monotonic() < deadline:
            items = bob.poll(0.5)
            got_ids += [x.envelope.id for x in items if hasattr(x, "envelope")]
        assert send.id in got_ids
        wait_for(lambda: not wal.exists() or wal.stat().st_size < (1 << 20), 20,
                 "the WAL to be checkpointed and truncated")  # fmt: skip
        alice.close()
        bob.close()
    finally:
        broker.cleanup()
