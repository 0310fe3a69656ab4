"""`titsd backup` while a broker takes a 1,000-message stream, then `titsd restore` into a new
data directory: the restored broker (same id, same key) delivers every message that was
acknowledged before the backup began."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    BrokerProc,
    People,
    broker_fixture,
    people_fixture,
)
from tests.support import short_tmpdir
from tits import wire
from tits.client.blocking import Message, Messenger

TITSD = [sys.executable, "-m", "tits.broker.main"]


def test_a_backup_during_a_stream_restores_every_acknowledged_message(
    broker: BrokerProc, people: People
) -> None:
    n, backup_at = 1000, 400
    bob_fp = people.bob.fingerprint
    alice = Messenger(people.alice, broker=broker.url)
    first = alice.send_text([bob_fp], "start")  # and the session key, before it
    items = []
    for i in range(n):
        prepared, missing, _, _ = alice.prepare_text([bob_fp], f"m{i:04d}")
        assert missing == [] and len(prepared) == 1
        items.append(prepared[0])
    order = [first] + [s.id for s, _ in items]
    conn = alice.connection()
    pending: dict[bytes, tuple[wire.Send, bytes]] = {}
    accepted: set[bytes] = {first}

    def take(timeout: float) -> None:
        msg = conn.recv(timeout)
        while msg is not None:
            if isinstance(msg, wire.Accepted):
                for i in (msg.id, *msg.ids):
                    if pending.pop(i, None) is not None:
                        accepted.add(i)
            msg = conn.recv(0)

    root = short_tmpdir("bk")
    dest, restored = root / "backup", root / "restored"
    job: subprocess.Popen[str] | None = None
    acked_before: set[bytes] = set()
    deadline = time.monotonic() + 120
    i = 0
    try:
        while i < n or pending:
            assert time.monotonic() < deadline, f"{len(pending)} never acknowledged"
            if i < n:
                send, body = items[i]
                pending[send.id] = (send, body)
                conn.send(send, body)
                i += 1
                if i % 25 == 0:
                    take(0)
                    if job is not None:  # paced once the backup runs, so it copies mid-stream
                        time.sleep(0.2)
            else:
                take(0.05)
            if i == backup_at and job is None:
                while len(accepted) < backup_at // 2:  # some of the stream is stored
                    assert time.monotonic() < deadline
                    take(0.05)
                acked_before = set(accepted)  # acknowledged before the backup starts
                job = subprocess.Popen(
                    [*TITSD, "backup", str(dest), "--data", str(broker.data)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
        assert job is not None
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        assert f"backed up {broker.data} to {dest}" in out
        assert backup_at // 2 <= len(acked_before) <= backup_at + 1
        assert accepted == set(order)
        manifest = json.loads((dest / "MANIFEST.json").read_text())
        assert {"mailbox.db", "curve.key", "broker.toml"} <= set(manifest["files"])
        assert not any(f.endswith("ready.json") or "S.gpg-agent" in f for f in manifest["files"])
        alice.close()
        original_id, original_key = broker.id, broker.info["curve_key"]
        broker.cleanup()  # the original is gone (the disk died); only the backup is left

        # restore refuses a non-empty target, and a source that is not a backup
        res = subprocess.run([*TITSD, "restore", str(dest), "--data", str(broker.data)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 2 and "is not empty" in res.stderr
        res = subprocess.run([*TITSD, "restore", str(root), "--data", str(restored)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 2 and "not a titsd backup" in res.stderr
        res = subprocess.run([*TITSD, "restore", str(dest), "--data", str(restored)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 0, res.stderr
        back = BrokerProc(restored).start()
        try:
            assert (back.id, back.info["curve_key"]) == (original_id, original_key)
            bob = Messenger(people.bob, broker=back.url)
            got: list[Message] = []
            bob.receive(got.append, timeout=30)
            ids = [m.id for m in got]
            assert len(ids) == len(set(ids))
            lost = acked_before - set(ids)
            assert not lost, f"{len(lost)} acknowledged before the backup are missing"
            assert set(ids) <= set(order) and all(m.verified for m in got)
            bob.close()
        finally:
            back.cleanup()
    finally:
        if job is not None and job.poll() is None:
            job.kill()
            job.wait()
        shutil.rmtree(root, ignore_errors=True)
