"""收回 in the cloud: a sender's unsend also drops the copies of the message still waiting in
this broker for devices that were offline, in its mailboxes and in what it relays.

A `Send` whose `purge` names a message id is an unsend (its sealed body tells the clients; a
broker cannot read it). What a broker can check is who asks: at the origin the login session
(a Send's sender is the logged-in user, clientport.py), across the cloud the forward's
`sender`, which only admitted peers (the cloud's join secret) can write, and which delivery
already trusts. So a purge drops only rows whose stored sender is the purge's sender and that
the broker accepted within `PURGE_WINDOW_S`: an unsend naming another sender's message drops
nothing.

What a purge drops:

- the message's rows in every mailbox (its recipients', the sender's other devices', and the
  relays' "@" pseudo users': forwards kept here to send on), and the body they share is
  blanked, in the transaction that stores the unsend (`purge_rows`, on the writer);
- what is in flight to devices and relay devices (`Delivery.drop`), so no retry sends it
  again: a cursor may then pass those rows, which no longer exist;
- copies of it that come later (a forward by a slower route, a resend): the (id, sender) is
  remembered (`purges` table, and `Purged` in memory) and their rows are never stored.

The unsend itself is stored and delivered like any message, so online devices drop what
they showed and offline ones keep a tombstone.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

import msgspec

from tits import wire

PURGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS purges (
    id BLOB NOT NULL,
    sender TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (id, sender)
) WITHOUT ROWID
"""
MAX_REMEMBERED = 100_000  # purges kept in memory (newest); the table keeps them all

Purge = tuple[bytes, str]  # (message id, its sender)


class _Sender(msgspec.Struct, forbid_unknown_fields=False):
    """The sender of a stored envelope, a `Deliver` or a `Forward` alike."""

    sender: str = ""


_sender = msgspec.msgpack.Decoder(_Sender)


def sent_by(env: bytes, sender: str) -> bool:
    try:
        return _sender.decode(env).sender == sender
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


T = TypeVar("T")
U = TypeVar("U")


def valid(msg_id: bytes | None, sender: str, own_id: bytes, now_s: float) -> bool:
    """Whether a purge is worth applying: a 16-byte id, not the unsend's own, from a
    fingerprint, of a message its id dates within the window (the id's time is the sender's
    word, but a sender can only purge their own messages)."""
    if msg_id is None or len(msg_id) != 16 or msg_id == own_id:
        return False
    if not wire.is_fingerprint(sender):
        return False
    return wire.msg_id_time_ms(msg_id) >= (now_s - wire.PURGE_WINDOW_S - 3600) * 1000


def ensure_table(db: sqlite3.Connection) -> None:
    """A mailbox of schema 3 made before purges gets their table (a read when it has it:
    a full disk must not stop a start)."""
    row = db.execute("SELECT 1 FROM sqlite_master WHERE name='purges'").fetchone()
    if row is None:
        db.execute(PURGES_SCHEMA)


def purge_rows(db: sqlite3.Connection, purges: Sequence[Purge], now_s: int) -> int:
    """In the writer's open transaction: delete the rows of each purged message whose sender
    is the purge's, blank their body, remember the purge. Returns the rows deleted."""
    deleted = 0
    since = now_s - wire.PURGE_WINDOW_S
    for msg_id, sender in purges:
        db.execute("INSERT OR IGNORE INTO purges VALUES (?,?,?)", (msg_id, sender, now_s))
        row = db.execute("SELECT uid FROM users WHERE name=?", (sender,)).fetchone()
        if row is None:
            continue  # nothing of theirs was ever stored here
        refs = db.execute(
            "SELECT DISTINCT b.ref FROM entries e INDEXED BY mail_id_user JOIN bodies b"
            " ON b.ref = e.ref WHERE e.id=? AND b.sender=? AND b.ts>=?",
            (msg_id, row[0], since),
        ).fetchall()
        for (ref,) in refs:
            deleted += db.execute(
                "DELETE FROM entries WHERE id=? AND ref=?", (msg_id, ref)
            ).rowcount
            db.execute("UPDATE bodies SET body=x'' WHERE ref=?", (ref,))
    return deleted


PRUNE_PURGES_SQL = "DELETE FROM purges WHERE ts < ?"  # past the broker's max_age_s


class Purged:
    """The purges this broker knows, newest `MAX_REMEMBERED` in memory: rows of a purged
    message that arrive later are dropped before they are stored."""

    def __init__(self, db: sqlite3.Connection | None = None) -> None:
        self._seen: OrderedDict[Purge, None] = OrderedDict()
        if db is not None:
            since = int(time.time()) - wire.PURGE_WINDOW_S - 3600
            for msg_id, sender in db.execute(
                "SELECT id, sender FROM purges WHERE ts>=? ORDER BY ts DESC LIMIT ?",
                (since, MAX_REMEMBERED),
            ):
                self._seen[(bytes(msg_id), sender)] = None

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, msg_id: bytes, sender: str) -> None:
        self._seen[(msg_id, sender)] = None
        self._seen.move_to_end((msg_id, sender))
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)

    def hit(self, msg_id: bytes, sender: str) -> bool:
        return bool(self._seen) and (msg_id, sender) in self._seen

    def keep(
        self, rows: list[T], fanout: list[U], key: Sequence[tuple[bytes, str]]
    ) -> tuple[list[T], list[U], int]:
        """`rows` and `fanout` (parallel lists) without the rows of purged messages; `key`
        gives each row's (id, sender). Returns them and how many were dropped."""
        if not self._seen:
            return rows, fanout, 0
        keep = [k for k, pair in enumerate(key) if pair not in self._seen]
        if len(keep) == len(rows):
            return rows, fanout, 0
        return [rows[k] for k in keep], [fanout[k] for k in keep], len(rows) - len(keep)
