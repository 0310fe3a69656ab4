"""The client's local store, HOME/store.db (SQLite, WAL, 0600), with numbered migrations.

    messages  every message shown or sent (one `Message` type), read or unread, and for
              group texts the sealed body as it came, so history can be shared later
    seen      ids of deliveries handled without a message (keys, logs, refusals)
    epochs    session keys by (conversation, epoch): who made them, for whom, when superseded
    announced members of a direct chat our epoch key has reached
    groups    each group's membership log (msgpack of its signed entries)
    outbox    what the user typed, durable before anything else, until a broker stores it
    certs     device certificates already checked with GnuPG

`PRAGMA user_version` says which migrations ran; each is applied once, in order, in one
transaction. Version 1 is the schema of the first release (homes made by it still open).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from tits.session import SessionKey, direct_conversation_id

from .extras import ChatExtras
from .model import Message, Prepared, SendOptions

MIGRATIONS: list[str] = [
    # 1: the first release (cli/store.py)
    """
    CREATE TABLE IF NOT EXISTS seen (id BLOB PRIMARY KEY, ts INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS messages (
        id BLOB PRIMARY KEY, sender TEXT NOT NULL, recipients TEXT NOT NULL, grp BLOB,
        kind TEXT NOT NULL, text TEXT, verified INTEGER NOT NULL, ts INTEGER NOT NULL,
        outgoing INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts);
    CREATE TABLE IF NOT EXISTS keys (
        conversation BLOB NOT NULL, epoch INTEGER NOT NULL, sender TEXT NOT NULL,
        key BLOB NOT NULL, created REAL NOT NULL, PRIMARY KEY (conversation, epoch, sender)
    );
    CREATE TABLE IF NOT EXISTS announced (
        conversation BLOB NOT NULL, epoch INTEGER NOT NULL, member TEXT NOT NULL,
        PRIMARY KEY (conversation, epoch, member)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS certs (
        identity TEXT NOT NULL, device TEXT NOT NULL, cert BLOB NOT NULL, sig TEXT NOT NULL,
        PRIMARY KEY (identity, device)
    ) WITHOUT ROWID;
    """,
    # 2: conversations, read state, raw bodies, epochs by conversation, groups, the outbox
    """
    ALTER TABLE messages ADD COLUMN conv BLOB;
    ALTER TABLE messages ADD COLUMN mime TEXT NOT NULL DEFAULT 'text/plain';
    ALTER TABLE messages ADD COLUMN file TEXT;
    ALTER TABLE messages ADD COLUMN read INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE messages ADD COLUMN raw BLOB;
    CREATE INDEX messages_conv ON messages(conv, ts);
    CREATE INDEX messages_unread ON messages(read) WHERE read = 0;
    CREATE TABLE epochs (
        conv BLOB NOT NULL, epoch INTEGER NOT NULL, key BLOB NOT NULL, creator TEXT NOT NULL,
        created REAL NOT NULL, superseded REAL, sent INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conv, epoch)
    );
    INSERT OR IGNORE INTO epochs (conv, epoch, key, creator, created)
        SELECT conversation, epoch, key, sender, created FROM keys;
    DROP TABLE keys;
    CREATE TABLE groups (
        id BLOB PRIMARY KEY, name TEXT NOT NULL, secure INTEGER NOT NULL, log BLOB NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE outbox (
        id BLOB PRIMARY KEY, target TEXT NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL,
        mime TEXT NOT NULL, created REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
        reason TEXT NOT NULL DEFAULT '', frames BLOB, attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE confirmed (
        fp TEXT PRIMARY KEY, subkeys TEXT NOT NULL, at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: the first release's messages under their conversation (2 left `conv` NULL, so no
    # conversation view showed them); a direct one's pair is its sender and its one recipient
    """
    UPDATE messages SET conv = grp WHERE conv IS NULL AND grp IS NOT NULL;
    UPDATE messages SET conv = tits_direct_conv(sender, recipients) WHERE conv IS NULL;
    """,
    # 4: deliveries waiting for their key, kept here and acknowledged (issue 15: held in
    # memory unacknowledged, 1,000 of them from one sender froze the inbox for two minutes)
    """
    CREATE TABLE held (
        id BLOB PRIMARY KEY, sender TEXT NOT NULL, envelope BLOB NOT NULL, body BLOB NOT NULL,
        since REAL NOT NULL
    );
    CREATE INDEX held_sender ON held(sender);
    """,
    # 5: replies, unsends (with tombstones for what has not arrived yet), read receipts
    """
    ALTER TABLE messages ADD COLUMN reply_to BLOB;
    ALTER TABLE messages ADD COLUMN unsent INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN reply_to BLOB;
    CREATE TABLE receipts (
        id BLOB NOT NULL, reader TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (id, reader)
    ) WITHOUT ROWID;
    CREATE TABLE tombstones (id BLOB PRIMARY KEY, by TEXT NOT NULL, at REAL NOT NULL);
    """,
    # 6: @mentions, display lifetimes, reactions and 公告 announcements (tits/client/extras.py)
    """
    ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN mention_all INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN lifetime_s INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN shown_at REAL;
    CREATE INDEX messages_lifetime ON messages(shown_at) WHERE lifetime_s > 0 AND expired = 0;
    ALTER TABLE outbox ADD COLUMN options BLOB;
    CREATE TABLE reactions (
        id BLOB NOT NULL, reactor TEXT NOT NULL, name TEXT NOT NULL, at REAL NOT NULL,
        PRIMARY KEY (id, reactor)
    ) WITHOUT ROWID;
    CREATE TABLE announcements (
        conv BLOB PRIMARY KEY, id BLOB NOT NULL, by TEXT NOT NULL, text TEXT NOT NULL,
        ts INTEGER NOT NULL
    );
    """,
    # 7: media — a media message keeps its signed manifest (tits/media/), `file` once fetched
    """
    ALTER TABLE messages ADD COLUMN manifest BLOB;
    """,
    # 8: a group's rules set by its admins: the 收回 window (tits/client/extras.py)
    """
    CREATE TABLE chat_settings (
        conv BLOB PRIMARY KEY, unsend_s INTEGER NOT NULL, by TEXT NOT NULL, ts INTEGER NOT NULL
    );
    """,
]


def _direct_conv(sender: str, recipients: str) -> bytes:
    return direct_conversation_id(sender, recipients.split(",")[0])


_MSG_COLS = (
    "id, conv, sender, recipients, grp, kind, text, verified, ts, outgoing, mime, file, read, "
    "reply_to, unsent, "
    "(SELECT count(*) FROM receipts r WHERE r.id = messages.id AND r.reader != messages.sender), "
    "mentions, mention_all, lifetime_s, expired, manifest"
)
_RAW = 21  # the column after _MSG_COLS
_INS_COLS = (
    "id, conv, sender, recipients, grp, kind, text, verified, ts, outgoing, mime, file, read, "
    "reply_to, unsent, mentions, mention_all, lifetime_s, shown_at, manifest"
)
_MSG_MARKS = ",".join("?" * 20)


def _ins_row(m: Message, shown_at: float | None) -> tuple[Any, ...]:
    return (
        m.id, m.conv, m.sender, ",".join(m.to), m.group, m.kind, m.text, int(m.verified), m.ts,
        int(m.outgoing), m.mime, m.file, int(m.read), m.reply_to, int(m.unsent),
        ",".join(m.mentions), int(m.mention_all), m.lifetime_s, shown_at, m.manifest,
    )  # fmt: skip


def _message(r: Sequence[Any]) -> Message:
    return Message(
        id=bytes(r[0]),
        conv=bytes(r[1]) if r[1] is not None else b"",
        sender=str(r[2]),
        to=str(r[3]).split(",") if r[3] else [],
        group=bytes(r[4]) if r[4] is not None else None,
        kind="media" if r[5] == "media" else "text",
        text=r[6] if r[6] is None else str(r[6]),
        verified=bool(r[7]),
        ts=int(r[8]),
        outgoing=bool(r[9]),
        mime=str(r[10]),
        file=r[11] if r[11] is None else str(r[11]),
        read=bool(r[12]),
        reply_to=bytes(r[13]) if r[13] is not None else None,
        unsent=bool(r[14]),
        read_by=int(r[15]),
        mentions=[f for f in str(r[16]).split(",") if f],
        mention_all=bool(r[17]),
        lifetime_s=int(r[18]),
        expired=bool(r[19]),
        manifest=bytes(r[20]) if r[20] is not None else None,
    )


class OutboxItem(msgspec.Struct, kw_only=True):
    id: bytes
    target: str  # a fingerprint, or "#" + group id hex
    kind: str  # "text" | "media"
    payload: bytes
    mime: str
    created: float
    state: str  # "pending" | "failed"
    reason: str
    prepared: Prepared | None
    attempts: int
    reply_to: bytes | None = None
    options: SendOptions | None = None


class EpochRow(msgspec.Struct, kw_only=True):
    key: SessionKey
    creator: str
    created: float
    superseded: float | None
    sent: int


class LocalStore:
    def __init__(self, home: Path) -> None:
        path = home / "store.db"
        new = not path.exists()
        home.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if new:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        # what the user typed must survive a power cut, not only a crash
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.create_function("tits_direct_conv", 2, _direct_conv, deterministic=True)
        self.migrate()
        self.extras = ChatExtras(self.db)

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        version = self.version
        if version == 0 and self._has_table("messages"):
            version = 1  # a home of the first release, made before user_version was kept
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={number}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _has_table(self, name: str) -> bool:
        q = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        return self.db.execute(q, (name,)).fetchone() is not None

    def close(self) -> None:
        self.db.close()

    # -- messages and seen ids ------------------------------------------------------------------

    def seen(self, msg_id: bytes) -> bool:
        db = self.db
        if db.execute("SELECT 1 FROM seen WHERE id=?", (msg_id,)).fetchone() is not None:
            return True
        return db.execute("SELECT 1 FROM messages WHERE id=?", (msg_id,)).fetchone() is not None

    def record(
        self,
        messages: Iterable[Message],
        seen_only: Iterable[bytes] = (),
        raw: dict[bytes, bytes] | None = None,
    ) -> None:
        """Keep messages and mark other ids seen, in one transaction (before the ack)."""
        now = int(time.time())
        raw = raw or {}
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR IGNORE INTO seen VALUES (?,?)", [(i, now) for i in seen_only])
            db.executemany(
                f"INSERT OR IGNORE INTO messages ({_INS_COLS}, raw) VALUES ({_MSG_MARKS},?)",
                # what was read on arrival (our own, from another device) counts as shown
                [(*_ins_row(m, time.time() if m.read else None), raw.get(m.id)) for m in messages],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def message(self, msg_id: bytes) -> Message | None:
        row = self.db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id=?", (msg_id,)).fetchone()
        return self.with_reactions([_message(row)])[0] if row else None

    def with_reactions(self, messages: list[Message]) -> list[Message]:
        found = self.extras.reactions(m.id for m in messages)
        for m in messages:
            m.reactions = found.get(m.id, {})
        return messages

    def history(self, conv: bytes | None = None, limit: int = 50) -> list[Message]:
        if conv is None:
            q = f"SELECT {_MSG_COLS} FROM messages ORDER BY ts DESC LIMIT ?"
            rows = self.db.execute(q, (limit,)).fetchall()
        else:
            q = f"SELECT {_MSG_COLS} FROM messages WHERE conv=? ORDER BY ts DESC LIMIT ?"
            rows = self.db.execute(q, (conv, limit)).fetchall()
        return self.with_reactions([_message(r) for r in reversed(rows)])

    def unread(self, conv: bytes | None = None) -> list[Message]:
        q = f"SELECT {_MSG_COLS} FROM messages WHERE read=0"
        args: tuple[object, ...] = ()
        if conv is not None:
            q += " AND conv=?"
            args = (conv,)
        return self.with_reactions([_message(r) for r in self.db.execute(q + " ORDER BY ts", args)])

    def unread_counts(self) -> dict[bytes, int]:
        q = "SELECT conv, count(*) FROM messages WHERE read=0 GROUP BY conv"
        return {bytes(c): int(n) for c, n in self.db.execute(q) if c is not None}

    def mark_read(self, ids: Iterable[bytes]) -> None:
        """Read, and so shown: a display lifetime counts from the first time."""
        now = time.time()
        self.db.executemany(
            "UPDATE messages SET read=1, shown_at=coalesce(shown_at, ?) WHERE id=?",
            [(now, i) for i in ids],
        )

    def raw_history(self, conv: bytes) -> list[tuple[Message, bytes]]:
        """The group's texts as they came (sealed), oldest first: what `--share-history`
        passes to a newcomer."""
        q = (
            f"SELECT {_MSG_COLS}, raw FROM messages WHERE conv=? AND raw IS NOT NULL "
            "AND unsent=0 ORDER BY ts"
        )
        return [(_message(r), bytes(r[_RAW])) for r in self.db.execute(q, (conv,))]

    # -- receipts and unsends -------------------------------------------------------------------

    def add_receipts(self, reader: str, ids: Iterable[bytes]) -> list[bytes]:
        """File that `reader` read these; returns the ids that were new."""
        new = []
        now = time.time()
        for i in ids:
            cur = self.db.execute("INSERT OR IGNORE INTO receipts VALUES (?,?,?)", (i, reader, now))
            if cur.rowcount:
                new.append(i)
        return new

    def unsend(self, msg_id: bytes) -> None:
        # (a message recorded later in the same transaction is recorded as unsent by the inbox)
        self.db.execute(
            "UPDATE messages SET text=NULL, file=NULL, raw=NULL, unsent=1, read=1 WHERE id=?",
            (msg_id,),
        )

    def media_messages(self, limit: int = 10_000) -> list[Message]:
        """Media messages with a manifest, newest first (what `tits media get` looks in)."""
        q = f"SELECT {_MSG_COLS} FROM messages WHERE manifest IS NOT NULL ORDER BY ts DESC LIMIT ?"
        return [_message(r) for r in self.db.execute(q, (limit,))]

    def set_file(self, msg_id: bytes, path: str, mime: str | None = None) -> None:
        """A media message's file, once fetched (HOME/media/<sha256>), and the MIME type its
        content shows (a sender's manifest may lie)."""
        if mime is None:
            self.db.execute("UPDATE messages SET file=? WHERE id=?", (path, msg_id))
        else:
            self.db.execute("UPDATE messages SET file=?, mime=? WHERE id=?", (path, mime, msg_id))

    def tombstone(self, msg_id: bytes, by: str) -> None:
        """An unsend that came before its message: drop the message when it comes (from `by`)."""
        self.db.execute(
            "INSERT OR IGNORE INTO tombstones VALUES (?,?,?)", (msg_id, by, time.time())
        )

    def tombstoned(self, msg_id: bytes, sender: str) -> bool:
        q = "SELECT 1 FROM tombstones WHERE id=? AND by=?"
        return self.db.execute(q, (msg_id, sender)).fetchone() is not None

    # -- deliveries held for their key ------------------------------------------------------------

    def hold(self, msg_id: bytes, sender: str, envelope: bytes, body: bytes) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO held VALUES (?,?,?,?,?)",
            (msg_id, sender, envelope, body, time.time()),
        )

    def held(self) -> list[tuple[bytes, bytes]]:
        """(envelope, body) of every held delivery, oldest first."""
        q = "SELECT envelope, body FROM held ORDER BY since"
        return [(bytes(e), bytes(b)) for e, b in self.db.execute(q)]

    def held_by(self, sender: str) -> tuple[int, int]:
        """How many deliveries, and how many bytes, one sender has waiting here."""
        q = "SELECT count(*), coalesce(sum(length(body)), 0) FROM held WHERE sender=?"
        n, size = self.db.execute(q, (sender,)).fetchone()
        return int(n), int(size)

    def unhold(self, ids: Iterable[bytes]) -> None:
        self.db.executemany("DELETE FROM held WHERE id=?", [(i,) for i in ids])

    # -- session keys -----------------------------------------------------------------------------

    def put_epoch(self, key: SessionKey, creator: str) -> None:
        self.db.execute(
            "INSERT INTO epochs (conv, epoch, key, creator, created) VALUES (?,?,?,?,?)",
            (key.conversation, key.epoch, key.to_json(), creator, key.created),
        )

    def epoch(self, conv: bytes, epoch: int) -> EpochRow | None:
        row = self.db.execute(
            "SELECT key, creator, created, superseded, sent FROM epochs WHERE conv=? AND epoch=?",
            (conv, epoch),
        ).fetchone()
        return self._epoch_row(row) if row else None

    def epochs(self, conv: bytes) -> list[EpochRow]:
        q = (
            "SELECT key, creator, created, superseded, sent FROM epochs WHERE conv=? "
            "ORDER BY created"
        )
        return [self._epoch_row(r) for r in self.db.execute(q, (conv,))]

    @staticmethod
    def _epoch_row(r: Sequence[Any]) -> EpochRow:
        return EpochRow(
            key=SessionKey.from_json(bytes(r[0])),
            creator=str(r[1]),
            created=float(r[2]),
            superseded=None if r[3] is None else float(r[3]),
            sent=int(r[4]),
        )

    def supersede(self, conv: bytes, except_epoch: int, when: float) -> None:
        self.db.execute(
            "UPDATE epochs SET superseded=? WHERE conv=? AND epoch!=? AND superseded IS NULL",
            (when, conv, except_epoch),
        )

    def count_sent(self, conv: bytes, epoch: int) -> None:
        self.db.execute("UPDATE epochs SET sent=sent+1 WHERE conv=? AND epoch=?", (conv, epoch))

    def announced(self, conv: bytes, epoch: int) -> set[str]:
        q = "SELECT member FROM announced WHERE conversation=? AND epoch=?"
        return {r[0] for r in self.db.execute(q, (conv, epoch))}

    def mark_announced(self, conv: bytes, epoch: int, members: Iterable[str]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO announced VALUES (?,?,?)", [(conv, epoch, m) for m in members]
        )

    # -- groups -----------------------------------------------------------------------------------

    def put_group(self, group: bytes, name: str, secure: bool, log: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO groups VALUES (?,?,?,?,?)",
            (group, name, int(secure), log, time.time()),
        )

    def group_log(self, group: bytes) -> bytes | None:
        row = self.db.execute("SELECT log FROM groups WHERE id=?", (group,)).fetchone()
        return bytes(row[0]) if row else None

    def groups(self) -> list[tuple[bytes, str, bool]]:
        q = "SELECT id, name, secure FROM groups ORDER BY name, id"
        return [(bytes(i), str(n), bool(s)) for i, n, s in self.db.execute(q)]

    # -- outbox -----------------------------------------------------------------------------------

    _OUT_COLS = (
        "id, target, kind, payload, mime, created, state, reason, frames, attempts, reply_to, "
        "options"
    )

    def outbox_add(
        self,
        item_id: bytes,
        target: str,
        kind: str,
        payload: bytes,
        mime: str,
        reply_to: bytes | None = None,
        options: SendOptions | None = None,
    ) -> None:
        opts = msgspec.msgpack.encode(options) if options is not None else None
        self.db.execute(
            "INSERT INTO outbox (id, target, kind, payload, mime, created, reply_to, options) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (item_id, target, kind, payload, mime, time.time(), reply_to, opts),
        )

    def outbox(self, state: str | None = None) -> list[OutboxItem]:
        q = f"SELECT {self._OUT_COLS} FROM outbox"
        args: tuple[object, ...] = ()
        if state is not None:
            q += " WHERE state=?"
            args = (state,)
        return [self._out_row(r) for r in self.db.execute(q + " ORDER BY created", args)]

    def outbox_item(self, item_id: bytes) -> OutboxItem | None:
        q = f"SELECT {self._OUT_COLS} FROM outbox WHERE id=?"
        row = self.db.execute(q, (item_id,)).fetchone()
        return self._out_row(row) if row else None

    @staticmethod
    def _out_row(r: Sequence[Any]) -> OutboxItem:
        prepared = None
        if r[8] is not None:
            prepared = msgspec.msgpack.decode(bytes(r[8]), type=Prepared)
        return OutboxItem(
            id=bytes(r[0]),
            target=str(r[1]),
            kind=str(r[2]),
            payload=bytes(r[3]),
            mime=str(r[4]),
            created=float(r[5]),
            state=str(r[6]),
            reason=str(r[7]),
            prepared=prepared,
            attempts=int(r[9]),
            reply_to=bytes(r[10]) if r[10] is not None else None,
            options=msgspec.msgpack.decode(bytes(r[11]), type=SendOptions) if r[11] else None,
        )

    def outbox_prepared(self, item_id: bytes, prepared: Prepared) -> None:
        self.db.execute(
            "UPDATE outbox SET frames=?, attempts=attempts+1 WHERE id=?",
            (msgspec.msgpack.encode(prepared), item_id),
        )

    def outbox_note(self, item_id: bytes, state: str, reason: str) -> None:
        self.db.execute("UPDATE outbox SET state=?, reason=? WHERE id=?", (state, reason, item_id))

    def outbox_done(
        self, item_id: bytes, message: Message | None, raw: bytes | None = None
    ) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.execute("DELETE FROM outbox WHERE id=?", (item_id,))
            if message is not None:
                mine = msgspec.structs.replace(message, read=True, unsent=False)
                db.execute(
                    f"INSERT OR IGNORE INTO messages ({_INS_COLS}, raw) VALUES ({_MSG_MARKS},?)",
                    (*_ins_row(mine, time.time()), raw),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- confirmed contacts -----------------------------------------------------------------------

    def confirm(self, fp: str, subkeys: list[str]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO confirmed VALUES (?,?,?)",
            (fp, ",".join(sorted(subkeys)), time.time()),
        )

    def confirmation(self, fp: str) -> list[str] | None:
        """The subkeys the user saw when confirming `fp`, or None if never confirmed."""
        row = self.db.execute("SELECT subkeys FROM confirmed WHERE fp=?", (fp,)).fetchone()
        return None if row is None else [s for s in str(row[0]).split(",") if s]

    # -- device certificates ----------------------------------------------------------------------

    def put_cert(self, identity: str, device: str, cert: bytes, sig: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO certs VALUES (?,?,?,?)", (identity, device, cert, sig)
        )

    def cert(self, identity: str, device: str) -> tuple[bytes, str] | None:
        row = self.db.execute(
            "SELECT cert, sig FROM certs WHERE identity=? AND device=?", (identity, device)
        ).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    def device_owner(self, device: str) -> str | None:
        row = self.db.execute("SELECT identity FROM certs WHERE device=?", (device,)).fetchone()
        return row[0] if row else None
