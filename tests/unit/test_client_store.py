"""The local store (`tits.client.store.LocalStore`): numbered migrations from the first
release's schema, and the rows the client library relies on."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

from tits.client.model import Message
from tits.client.store import MIGRATIONS, LocalStore
from tits.session import SessionKey, direct_conversation_id

ME = "A" * 40
BOB = "B" * 40
CAROL = "C" * 40
GROUP = b"\x05" * 16

# The first release's schema, exactly as cli/store.py made it (commit 7286dc6); it never set
# PRAGMA user_version, so its homes are at 0 with these tables.
FIRST_RELEASE = """
CREATE TABLE IF NOT EXISTS seen (id BLOB PRIMARY KEY, ts INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id BLOB PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    grp BLOB,
    kind TEXT NOT NULL,
    text TEXT,
    verified INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    outgoing INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts);
CREATE TABLE IF NOT EXISTS keys (
    conversation BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    sender TEXT NOT NULL,
    key BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (conversation, epoch, sender)
);
CREATE TABLE IF NOT EXISTS announced (
    conversation BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (conversation, epoch, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS certs (
    identity TEXT NOT NULL,
    device TEXT NOT NULL,
    cert BLOB NOT NULL,
    sig TEXT NOT NULL,
    PRIMARY KEY (identity, device)
) WITHOUT ROWID;
"""


def first_release_home(home: Path) -> tuple[SessionKey, SessionKey]:
    """A store.db as the first release left it: two direct messages, a group text, the two
    session keys of the direct chat (one each way), a seen id, an announcement, a cert."""
    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(home / "store.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(FIRST_RELEASE)
    conv = direct_conversation_id(ME, BOB)
    mine = SessionKey.generate(conv, 11, members=[ME, BOB])
    bobs = SessionKey.generate(conv, 22, members=[ME, BOB])
    rows = [
        (b"\x01" * 16, BOB, ME, None, "text", "舊的訊息", 1, 1000, 0),
        (b"\x02" * 16, ME, BOB, None, "text", "my old reply", 1, 2000, 1),
        (b"\x03" * 16, CAROL, f"{ME},{BOB}", GROUP, "text", "old group text", 0, 3000, 0),
    ]
    db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?)", rows)
    db.execute("INSERT INTO keys VALUES (?,?,?,?,?)", (conv, 11, ME, mine.to_json(), 10.0))
    db.execute("INSERT INTO keys VALUES (?,?,?,?,?)", (conv, 22, BOB, bobs.to_json(), 20.0))
    db.execute("INSERT INTO seen VALUES (?,?)", (b"\x09" * 16, 5))
    db.execute("INSERT INTO announced VALUES (?,?,?)", (conv, 11, BOB))
    db.execute("INSERT INTO certs VALUES (?,?,?,?)", (BOB, "0123456789abcdef", b"cert", "sig"))
    db.close()
    return mine, bobs


def test_a_first_release_store_opens_and_migrates(tmp_path: Path) -> None:
    mine, bobs = first_release_home(tmp_path)
    store = LocalStore(tmp_path)
    assert store.version == len(MIGRATIONS)
    conv = direct_conversation_id(ME, BOB)

    # nothing it held is lost: the messages, under the conversation they belong to
    direct = store.history(conv)
    assert [(m.text, m.outgoing) for m in direct] == [("舊的訊息", False), ("my old reply", True)]
    assert all(m.read for m in direct)  # old messages were shown already
    (old_group,) = store.history(GROUP)
    assert (old_group.sender, old_group.to, old_group.verified) == (CAROL, [ME, BOB], False)
    assert len(store.history()) == 3
    assert store.unread() == []
    # keys: both directions, each still opening what it sealed, with who made it
    for key, creator in ((mine, ME), (bobs, BOB)):
        row = store.epoch(conv, key.epoch)
        assert row is not None and row.creator == creator and row.key.key == key.key
        assert row.superseded is None
    assert [r.key.epoch for r in store.epochs(conv)] == [11, 22]
    # seen ids, announcements and certificates as they were
    assert store.seen(b"\x09" * 16) and store.seen(b"\x01" * 16)
    assert store.announced(conv, 11) == {BOB}
    assert store.cert(BOB, "0123456789abcdef") == (b"cert", "sig")
    # and the tables of the later migrations work
    assert store.outbox() == [] and store.groups() == [] and store.confirmation(BOB) is None
    store.close()

    again = LocalStore(tmp_path)  # a second open runs nothing twice
    assert again.version == len(MIGRATIONS) and len(again.history()) == 3
    again.close()


def test_a_store_at_version_1_with_user_version_set_migrates_too(tmp_path: Path) -> None:
    first_release_home(tmp_path)
    db = sqlite3.connect(tmp_path / "store.db")
    db.execute("PRAGMA user_version=1")
    db.close()
    store = LocalStore(tmp_path)
    assert store.version == len(MIGRATIONS)
    assert len(store.history(direct_conversation_id(ME, BOB))) == 2
    store.close()


def test_a_new_store_is_private_and_at_the_last_version(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "home")
    assert store.version == len(MIGRATIONS)
    mode = stat.S_IMODE(os.stat(tmp_path / "home" / "store.db").st_mode)
    assert mode == 0o600
    store.close()


def test_a_failed_migration_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    first_release_home(tmp_path)
    db = sqlite3.connect(tmp_path / "store.db")
    db.execute("CREATE TABLE epochs (x)")  # migration 2 cannot create its table
    db.close()
    try:
        LocalStore(tmp_path)
    except sqlite3.OperationalError:
        pass
    else:
        raise AssertionError("the migration should have failed")
    db = sqlite3.connect(tmp_path / "store.db")
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        cols = [r[1] for r in db.execute("PRAGMA table_info(messages)")]
        assert "conv" not in cols  # rolled back as a whole
        assert db.execute("SELECT count(*) FROM keys").fetchone()[0] == 2
    finally:
        db.close()


def message(i: int, conv: bytes, read: bool, group: bytes | None = None) -> Message:
    return Message(
        id=bytes([i]) * 16, conv=conv, sender=BOB, to=[ME], group=group, kind="text",
        text=f"t{i}", verified=True, ts=1000 + i, read=read,
    )  # fmt: skip


def test_messages_by_conversation_unread_and_raw_bodies(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    d = direct_conversation_id(ME, BOB)
    store.record(
        [message(1, d, False), message(2, GROUP, False, GROUP), message(3, GROUP, True, GROUP)],
        seen_only=[b"\x0f" * 16],
        raw={bytes([2]) * 16: b"sealed 2", bytes([3]) * 16: b"sealed 3"},
    )
    assert [m.text for m in store.history(d)] == ["t1"]
    assert [m.text for m in store.history(GROUP)] == ["t2", "t3"]
    assert store.unread_counts() == {d: 1, GROUP: 1}
    assert [m.text for m in store.unread(GROUP)] == ["t2"]
    store.mark_read([bytes([2]) * 16])
    assert store.unread_counts() == {d: 1}
    assert [(m.text, raw) for m, raw in store.raw_history(GROUP)] == [
        ("t2", b"sealed 2"),
        ("t3", b"sealed 3"),
    ]
    assert store.raw_history(d) == []
    assert store.seen(b"\x0f" * 16) and not store.seen(b"\x0e" * 16)
    # a redelivery changes nothing
    store.record([message(1, d, True)])
    assert store.unread_counts()[d] == 1
    store.close()


def test_epochs_supersede_and_count(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    a = SessionKey.generate(GROUP, 1, members=[ME, BOB])
    time.sleep(0.01)
    b = SessionKey.generate(GROUP, 2, members=[ME, BOB, CAROL])
    store.put_epoch(a, ME)
    store.put_epoch(b, BOB)
    store.supersede(GROUP, 2, 123.0)
    rows = {r.key.epoch: r for r in store.epochs(GROUP)}
    assert rows[1].superseded == 123.0 and rows[2].superseded is None
    store.count_sent(GROUP, 2)
    store.count_sent(GROUP, 2)
    row = store.epoch(GROUP, 2)
    assert row is not None and row.sent == 2 and row.creator == BOB
    assert store.epoch(GROUP, 3) is None
    store.close()


def test_confirmations_keep_the_subkeys_seen(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.confirm(BOB, ["K2", "K1"])
    assert store.confirmation(BOB) == ["K1", "K2"]
    assert store.confirmation(CAROL) is None
    store.close()
