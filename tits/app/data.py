"""What the screens show, read from the local store. Every function here runs on the client's
worker thread (`Backend.work`), never on the event loop: the store is single-threaded there.

Reads are paginated: the chat list reads one row per conversation (the newest message, through
the (conv, ts) index), a conversation reads its last `PAGE` messages and more on request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from tits.client import memberlog as ml
from tits.client.model import Message
from tits.client.store import _MSG_COLS, LocalStore, _message

PAGE = 100

_LOG = msgspec.msgpack.Decoder(list[ml.SignedEntry])


@dataclass
class Chat:
    conv: bytes
    group: bytes | None  # a group chat's id; None for a 1:1 chat
    peer: str  # a 1:1 chat: the other side's fingerprint ("" for a group)
    name: str  # a group's name ("" for a 1:1 chat: the app names the peer)
    last: Message | None
    unread: int = 0
    members: int = 0
    last_sender: str = ""  # a group's: the name of who wrote the last message
    mentions: int = 0  # unread messages naming me (or @All): LINE's "@" in the list

    @property
    def ts(self) -> int:
        return self.last.ts if self.last else 0


@dataclass
class Notice:
    """A group membership change, shown centred in the conversation."""

    ts: int
    op: str
    actor: str
    targets: list[str] = field(default_factory=list)
    name: str = ""


def peer_of(m: Message, me: str) -> str:
    if m.outgoing or m.sender == me:
        return m.to[0] if m.to else me
    return m.sender


def chats(store: LocalStore, me: str) -> list[Chat]:
    """One row per conversation (1:1 and groups), newest first; groups without messages too."""
    # the newest row of each conversation, each found through the (conv, ts) index
    q = (
        f"SELECT {_MSG_COLS} FROM messages WHERE rowid IN ("
        " SELECT (SELECT rowid FROM messages m2 WHERE m2.conv = c.conv"
        "         ORDER BY m2.ts DESC LIMIT 1)"
        " FROM (SELECT DISTINCT conv FROM messages WHERE conv IS NOT NULL) c)"
    )
    last: dict[bytes, Message] = {}
    for row in store.db.execute(q):
        m = _message(row)
        last[m.conv] = m
    unread = store.unread_counts()
    groups = {gid: name for gid, name, _ in store.groups()}
    out: list[Chat] = []
    for conv, m in last.items():
        if m.group is not None or conv in groups:
            gid = m.group or conv
            out.append(Chat(conv, gid, "", groups.get(gid, gid.hex()[:8]), m, unread.get(conv, 0)))
        else:
            out.append(Chat(conv, None, peer_of(m, me), "", m, unread.get(conv, 0)))
    for gid, name in groups.items():
        if gid not in last:
            out.append(Chat(gid, gid, "", name, None, 0))
    mentions = store.extras.mention_counts(me)
    for c in out:
        c.mentions = mentions.get(c.conv, 0)
        if c.group is not None:
            state = group_state(store, c.group)
            c.members = len(state.members) if state else 0
    out.sort(key=lambda c: c.ts, reverse=True)
    return out


def page(
    store: LocalStore, conv: bytes, limit: int = PAGE, before: int | None = None
) -> list[Message]:
    """The last `limit` messages of a conversation (older than `before`, ms), oldest first."""
    if before is None:
        return store.history(conv, limit=limit)
    q = f"SELECT {_MSG_COLS} FROM messages WHERE conv=? AND ts<? ORDER BY ts DESC LIMIT ?"
    rows = reversed(store.db.execute(q, (conv, before, limit)).fetchall())
    return store.with_reactions([_message(r) for r in rows])


def open_chat(store: LocalStore, conv: bytes, limit: int = PAGE) -> list[Message]:
    """Open a conversation: its last page, and everything in it marked read."""
    msgs = page(store, conv, limit)
    # shown now: a display lifetime counts from here
    store.db.execute(
        "UPDATE messages SET read=1, shown_at=coalesce(shown_at, ?) WHERE conv=? AND read=0",
        (time.time(), conv),
    )
    return msgs


def mark_read(store: LocalStore, ids: list[bytes]) -> None:
    store.mark_read(ids)


def group_state(store: LocalStore, gid: bytes) -> ml.GroupState | None:
    log = _group_log(store, gid)
    return log.state if log is not None else None


def _group_log(store: LocalStore, gid: bytes) -> ml.MemberLog | None:
    raw = store.group_log(gid)
    if raw is None:
        return None
    log = ml.MemberLog(gid.hex())
    # the stored log was verified when it came in (Groups.receive): it is not checked again
    log.merge(_LOG.decode(raw), lambda _d, _s, _f: None)
    return log


def notices(store: LocalStore, gid: bytes, since: int = 0) -> list[Notice]:
    """The group's applied membership changes from `since` (ms) on, oldest first."""
    log = _group_log(store, gid)
    if log is None:
        return []
    out = []
    for a in log.applied():
        e = a.entry
        if e.ts >= since and e.op != "rekey":
            out.append(Notice(e.ts, e.op, e.actor, list(e.targets), a.name or ""))
    return out


@dataclass
class Friend:
    name: str
    fp: str
    verified: bool
    key_changed: bool = False  # confirmed once, but its key is not the one confirmed


def friends(
    store: LocalStore, contacts: list[tuple[str, str]], changed: Callable[[str], bool]
) -> list[Friend]:
    out = []
    for n, fp in contacts:
        moved = changed(fp)
        out.append(Friend(n, fp, store.confirmation(fp) is not None and not moved, moved))
    return out


def search(store: LocalStore, conv: bytes, needle: str, limit: int = 50) -> list[Message]:
    """Messages of a conversation whose text holds `needle` (case-insensitive), newest first."""
    q = (
        f"SELECT {_MSG_COLS} FROM messages WHERE conv=? AND instr(lower(text), lower(?)) > 0 "
        "ORDER BY ts DESC LIMIT ?"
    )
    return [_message(r) for r in store.db.execute(q, (conv, needle, limit))]
