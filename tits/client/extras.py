"""What LINE keeps beside the messages of a chat, in the same database as `LocalStore`:
reactions (one per person per message), the 公告 announcement at the top of a chat, and the
display lifetimes that remove a message some time after it was first shown on this device.

Kept apart from `store.py`, which holds the messages themselves; migration 6 there makes
these tables and the message columns read here.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from .model import UNSEND_WINDOW_S, Announced, SettingsChanged


class ChatExtras:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    # -- reactions ---------------------------------------------------------------------------

    def react(self, msg_id: bytes, reactor: str, name: str) -> bool:
        """File `reactor`'s reaction to `msg_id` ("" takes theirs back); False if unchanged."""
        if not name:
            q = "DELETE FROM reactions WHERE id=? AND reactor=?"
            return self.db.execute(q, (msg_id, reactor)).rowcount > 0
        old = self.db.execute(
            "SELECT name FROM reactions WHERE id=? AND reactor=?", (msg_id, reactor)
        ).fetchone()
        if old is not None and old[0] == name:
            return False
        self.db.execute(
            "INSERT OR REPLACE INTO reactions VALUES (?,?,?,?)",
            (msg_id, reactor, name, time.time()),
        )
        return True

    def reactions(self, ids: Iterable[bytes]) -> dict[bytes, dict[str, list[str]]]:
        """Per message: reaction name → who reacted so, in the order they did."""
        out: dict[bytes, dict[str, list[str]]] = {}
        wanted = list(ids)
        for i in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
            part = wanted[i : i + 500]
            q = (
                "SELECT id, name, reactor FROM reactions WHERE id IN "
                f"({','.join('?' * len(part))}) ORDER BY at"
            )
            for msg_id, name, reactor in self.db.execute(q, part):
                out.setdefault(bytes(msg_id), {}).setdefault(str(name), []).append(str(reactor))
        return out

    # -- 公告 ----------------------------------------------------------------------------------

    def announce(self, ann: Announced) -> bool:
        """Put up (or, with empty text, take down) a chat's announcement; an older one than
        what is up now changes nothing (they may arrive out of order). False: unchanged."""
        row = self.db.execute("SELECT ts FROM announcements WHERE conv=?", (ann.conv,)).fetchone()
        if row is not None and int(row[0]) > ann.ts:
            return False
        self.db.execute(
            "INSERT OR REPLACE INTO announcements VALUES (?,?,?,?,?)",
            (ann.conv, ann.id, ann.by, ann.text, ann.ts),
        )
        return True

    def announcement(self, conv: bytes) -> Announced | None:
        row = self.db.execute(
            "SELECT id, by, text, ts FROM announcements WHERE conv=? AND text != ''", (conv,)
        ).fetchone()
        if row is None:
            return None
        return Announced(conv=conv, by=str(row[1]), text=str(row[2]), ts=int(row[3]),
                         id=bytes(row[0]))  # fmt: skip

    # -- a group's rules ------------------------------------------------------------------------

    def set_settings(self, ev: SettingsChanged) -> bool:
        """The newest rules of a chat win (they may arrive out of order). False: unchanged."""
        row = self.db.execute("SELECT ts FROM chat_settings WHERE conv=?", (ev.conv,)).fetchone()
        if row is not None and int(row[0]) > ev.ts:
            return False
        self.db.execute(
            "INSERT OR REPLACE INTO chat_settings VALUES (?,?,?,?)",
            (ev.conv, ev.unsend_s, ev.by, ev.ts),
        )
        return True

    def unsend_window(self, conv: bytes) -> int:
        """How long after sending a message of this chat may be taken back (0: not at all)."""
        row = self.db.execute("SELECT unsend_s FROM chat_settings WHERE conv=?", (conv,)).fetchone()
        return UNSEND_WINDOW_S if row is None else int(row[0])

    # -- display lifetimes ---------------------------------------------------------------------

    def expire(self, now: float | None = None) -> list[bytes]:
        """Remove what was shown longer ago than its lifetime: its words and file gone, a
        placeholder kept (as after an unsend). Returns the ids removed."""
        now = time.time() if now is None else now
        q = (
            "SELECT id FROM messages WHERE lifetime_s > 0 AND expired = 0 "
            "AND shown_at IS NOT NULL AND shown_at + lifetime_s <= ?"
        )
        ids = [bytes(r[0]) for r in self.db.execute(q, (now,))]
        self.db.executemany(
            "UPDATE messages SET text=NULL, file=NULL, raw=NULL, expired=1 WHERE id=?",
            [(i,) for i in ids],
        )
        return ids

    def next_expiry(self) -> float | None:
        """When the next shown message runs out (None: none is counting down)."""
        row = self.db.execute(
            "SELECT min(shown_at + lifetime_s) FROM messages "
            "WHERE lifetime_s > 0 AND expired = 0 AND shown_at IS NOT NULL"
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # -- mentions --------------------------------------------------------------------------------

    def mention_counts(self, me: str) -> dict[bytes, int]:
        """Unread messages per chat that name `me` (or @All): the chat list's "@" count."""
        q = (
            "SELECT conv, count(*) FROM messages WHERE read=0 AND outgoing=0 AND "
            "(mention_all=1 OR ',' || mentions || ',' LIKE ?) GROUP BY conv"
        )
        return {bytes(c): int(n) for c, n in self.db.execute(q, (f"%,{me},%",)) if c is not None}
