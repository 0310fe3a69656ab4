"""A group's membership log: signed entries, one deterministic order, the state they make.

Sans-IO: no sockets, files or gpg here. Signing and verifying are handed in as callables
(`Identity.sign_detached` / `Identity.verify_detached` fit as they are).

An entry is a msgspec `Entry`; its canonical bytes are ``msgspec.json.encode(entry)`` and its
hash is the SHA-256 of those bytes. It travels as a `SignedEntry` (the bytes plus a detached,
ASCII-armored OpenPGP signature by the entry's `actor`), so anyone can check one with plain
GnuPG: write `raw` to ``entry.json`` and `signature` to ``entry.json.asc``, then
``gpg --verify entry.json.asc entry.json``.

Order. Each entry names the one before it (`prev`, a hash); only the `create` has none.
height(create) = 0, height(e) = height(prev) + 1, and every client sorts the entries it holds
by (height, hash hex). A fork (two admins acting on the same head) is settled by that order:
both entries have the same height, the lower hash goes first, and the other is checked against
the state the first left. Entries are applied in that order; one that is not allowed at its
place is refused there and changes nothing, but stays in the log (later entries may name it).
The state is recomputed from the sorted entries after every merge that brings a new one, so
any arrival order, in one batch or many, ends in the same state and the same applied list.
`ts` is informational only: it never orders entries or grants rights.

Rights (checked at each entry's place in the order):

- `create`: starts the log; its actor is the creator and the first admin. The group id is
  bound to the creator (`new_group_id`): its last 64 bits come from the creator's fingerprint,
  so nobody else can sign a `create` for an id they have seen. There is one `create` per log.
- `invite`: any member in a normal group; only admins in a secure group. Invitees must not
  be members already; at most `MAX_TARGETS` (100) a entry, `MAX_MEMBERS` (1,000) a group.
- `remove`: admins only; the targets must be members; nobody removes the creator (the
  creator can leave); nobody removes themselves (that is `leave`).
- `leave`: any member, for themselves only (no targets).
- `admin`: admins only; the targets must be members and not admins yet.
- `rename`: any member in a normal group; only admins in a secure group.
- When the last admin leaves, the member who has been in the group longest (the earliest
  applied entry that last added them; ties by fingerprint) becomes admin, so a group with
  members always has an admin. A re-invited member (the creator too) comes back as a plain member.
- When the last member leaves, the log is closed: every later entry is refused.

Names: 1–64 characters, not blank, no control characters (Unicode Cc), no bidi controls, no
other format characters (Cf) except the zero-width joiner (emoji sequences) — variation
selectors are not format characters and are allowed — and no line or paragraph separators.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Literal, Protocol

import msgspec
from msgspec import Meta, Struct

from ..errors import TitsError

__all__ = [
    "Applied",
    "Entry",
    "GroupError",
    "GroupErrorCode",
    "GroupState",
    "MAX_MEMBERS",
    "MAX_NAME",
    "MAX_TARGETS",
    "Member",
    "MemberLog",
    "MergeResult",
    "Op",
    "Refusal",
    "SignFn",
    "SignedEntry",
    "VerifyFn",
    "check_name",
    "check_shape",
    "decode_entry",
    "encode_entry",
    "entry_hash",
    "export_for_gpg",
    "make_entry",
    "new_group_id",
    "sign_entry",
]

MAX_TARGETS = 100  # fingerprints in one entry
MAX_MEMBERS = 1000  # members of one group
MAX_NAME = 64  # characters in a group name
MAX_RAW = 16 << 10  # canonical bytes of one entry (100 targets and a name need ~4.6 KiB)
MAX_SIGNATURE = 8 << 10  # one armored detached signature (ed25519: ~300 bytes)
_BAD_SIG_CACHE = 1024  # (hash, signature) pairs remembered as bad, so a replay costs no gpg

Op = Literal["create", "invite", "remove", "leave", "admin", "rename"]
OPS: tuple[Op, ...] = ("create", "invite", "remove", "leave", "admin", "rename")
MEMBERSHIP_OPS = frozenset({"create", "invite", "remove", "leave"})

GroupErrorCode = Literal[
    "malformed",  # bytes that are not a canonical entry, or fields that do not fit the op
    "bad-group-id",  # not 32 lower-case hex, or (create) not bound to its creator
    "bad-fingerprint",  # an actor or target that is not 40 upper-case hex
    "bad-name",  # empty, too long, or holding control/bidi/format characters
    "too-many-targets",  # more than MAX_TARGETS in one entry
    "too-many-members",  # the group would exceed MAX_MEMBERS
    "duplicate-target",  # a fingerprint twice in one entry
    "already-member",  # inviting a member
    "not-member",  # removing or promoting someone who is not a member
    "already-admin",  # promoting an admin
    "creator",  # removing the creator
    "remove-self",  # removing yourself (leave instead)
    "not-allowed",  # the actor lacks the right (or is not a member) at the entry's place
    "closed",  # the group has no members left
    "no-group",  # an entry other than create with no log to add it to
    "wrong-group",  # an entry of another group
    "second-create",  # a create for a log that has one
    "create-not-first",  # a create naming a predecessor
    "unknown-prev",  # the predecessor is neither in the log nor in the same batch
    "duplicate",  # an entry already in the log (a replay), or twice in one batch
    "bad-signature",  # the signature fails or is not by the actor
]


class GroupError(TitsError):
    """A membership entry that cannot be made or applied; `code` says which rule it broke."""

    code: str = "group"

    def __init__(self, message: str, *, code: GroupErrorCode) -> None:
        super().__init__(message, code=code)


# -- the entry -----------------------------------------------------------------------------

GroupIdHex = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")]
HashHex = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
FingerprintHex = Annotated[str, Meta(pattern=r"^[0-9A-F]{40}\Z")]


class Entry(Struct, kw_only=True, forbid_unknown_fields=True):
    """One membership change. Canonical bytes: `encode_entry` (``msgspec.json.encode``).

    targets — invite: the invitees; remove: whom; admin: who becomes admin; else empty.
    name — create and rename only ("" otherwise). secure — create only (False otherwise).
    ts — milliseconds since the epoch, for display only.
    """

    v: Annotated[int, Meta(ge=1, le=1)] = 1
    group: GroupIdHex
    prev: HashHex | None
    op: Op
    actor: FingerprintHex
    targets: Annotated[list[FingerprintHex], Meta(max_length=MAX_TARGETS)] = []
    name: Annotated[str, Meta(max_length=MAX_NAME)] = ""
    secure: bool = False
    ts: Annotated[int, Meta(ge=0, le=(1 << 63) - 1)]


class SignedEntry(Struct, kw_only=True):
    """What travels: the canonical entry bytes and the actor's armored detached signature."""

    raw: Annotated[bytes, Meta(max_length=MAX_RAW)]
    signature: Annotated[str, Meta(max_length=MAX_SIGNATURE)]


SignFn = Callable[[bytes, str], str]
"""(data, signer fingerprint) -> armored detached signature: `Identity.sign_detached`."""
VerifyFn = Callable[[bytes, str, str], None]
"""(data, signature, expected fingerprint); raises a `TitsError` (VerificationError) unless
the signature is good and by exactly that key: `Identity.verify_detached`."""

_ENTRY_DECODER = msgspec.json.Decoder(Entry)


def encode_entry(entry: Entry) -> bytes:
    """The canonical bytes of an entry: what is signed, hashed and carried."""
    return msgspec.json.encode(entry)


def entry_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def decode_entry(raw: bytes) -> Entry:
    """Decode and check an entry's bytes; raise `GroupError` unless they are canonical and the
    fields fit the op (rights are not checked here: they depend on the state)."""
    if len(raw) > MAX_RAW:
        raise GroupError(f"an entry is at most {MAX_RAW} bytes, not {len(raw)}", code="malformed")
    try:
        entry = _ENTRY_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise GroupError(f"not a membership entry: {exc}", code="malformed") from exc
    # one entry, one byte string: whitespace or key order variants would hash differently
    if encode_entry(entry) != raw:
        raise GroupError("entry bytes are not in canonical form", code="malformed")
    check_shape(entry)
    return entry


def export_for_gpg(signed: SignedEntry) -> tuple[bytes, str]:
    """(data, signature) for plain GnuPG: write them to ``entry.json`` and ``entry.json.asc``
    and run ``gpg --verify entry.json.asc entry.json``."""
    return signed.raw, signed.signature


def sign_entry(entry: Entry, sign: SignFn) -> SignedEntry:
    """Sign an entry's canonical bytes as its actor: ``sign_entry(e, identity.sign_detached)``."""
    raw = encode_entry(entry)
    return SignedEntry(raw=raw, signature=sign(raw, entry.actor))


def new_group_id(creator: str) -> str:
    """A fresh 128-bit group id for `creator`: 64 random bits, then 64 bits of the creator's
    fingerprint's hash. A `create` whose id is not bound to its actor is refused, so nobody
    can start a rival log under an id they have seen."""
    _check_fingerprint(creator, "creator")
    return secrets.token_hex(8) + _creator_binding(creator)


def _creator_binding(creator: str) -> str:
    return hashlib.sha256(b"omega-im group id\0" + creator.encode()).hexdigest()[:16]


# -- field checks (no state) ----------------------------------------------------------------

_HEX_UPPER = frozenset("0123456789ABCDEF")
_HEX_LOWER = frozenset("0123456789abcdef")
_BIDI = frozenset(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)],
)
_ZWJ = 0x200D


def _check_fingerprint(value: object, what: str) -> None:
    if not (isinstance(value, str) and len(value) == 40 and _HEX_UPPER.issuperset(value)):
        shown = value[:60] if isinstance(value, str) else type(value).__name__
        raise GroupError(
            f"{what} is not a fingerprint (40 upper-case hex digits): {shown!r}",
            code="bad-fingerprint",
        )


def _check_group_id(value: object) -> None:
    if not (isinstance(value, str) and len(value) == 32 and _HEX_LOWER.issuperset(value)):
        shown = value[:60] if isinstance(value, str) else type(value).__name__
        raise GroupError(
            f"not a group id (32 lower-case hex digits): {shown!r}", code="bad-group-id"
        )


def check_name(name: str) -> None:
    """Raise `GroupError` ("bad-name") unless `name` is a usable group name."""
    if not isinstance(name, str) or not name.strip():
        raise GroupError("a group needs a name (it is empty)", code="bad-name")
    if len(name) > MAX_NAME:
        raise GroupError(
            f"a group name is at most {MAX_NAME} characters; this one has {len(name)}",
            code="bad-name",
        )
    for ch in name:
        cp = ord(ch)
        if cp == _ZWJ:
            continue
        cat = unicodedata.category(ch)
        if cp in _BIDI:
            raise GroupError(
                f"a group name may not hold bidi control characters (U+{cp:04X})",
                code="bad-name",
            )
        if cat == "Cc":
            raise GroupError(
                f"a group name may not hold control characters (U+{cp:04X})", code="bad-name"
            )
        if cat in ("Cf", "Cs", "Zl", "Zp"):
            raise GroupError(
                f"a group name may not hold invisible format characters (U+{cp:04X})",
                code="bad-name",
            )


def check_shape(entry: Entry) -> None:
    """The checks that need no state: formats, counts, duplicates, fields fitting the op.

    msgspec checks formats when it decodes bytes, not when code builds a Struct, so the
    formats are checked again here for entries made locally."""
    if entry.v != 1:
        raise GroupError(f"unknown entry version {entry.v}", code="malformed")
    if entry.op not in OPS:
        raise GroupError(f"unknown membership operation {entry.op!r}", code="malformed")
    _check_group_id(entry.group)
    _check_fingerprint(entry.actor, "the actor")
    if entry.prev is not None and not (
        isinstance(entry.prev, str) and len(entry.prev) == 64 and _HEX_LOWER.issuperset(entry.prev)
    ):
        raise GroupError("prev is not a SHA-256 hash (64 lower-case hex)", code="malformed")
    n = len(entry.targets)
    if n > MAX_TARGETS:
        raise GroupError(
            f"one entry names at most {MAX_TARGETS} people and this one names {n}: "
            f"invite (or remove) them in several steps of up to {MAX_TARGETS}",
            code="too-many-targets",
        )
    for fp in entry.targets:
        _check_fingerprint(fp, "a target")
    if len(set(entry.targets)) != n:
        dup = next(fp for fp in entry.targets if entry.targets.count(fp) > 1)
        raise GroupError(f"{dup} is named twice in one entry", code="duplicate-target")
    op = entry.op
    if op == "create":
        if entry.prev is not None:
            raise GroupError(
                "a create must be the first entry (it names a predecessor)", code="create-not-first"
            )
        if entry.group[16:] != _creator_binding(entry.actor):
            raise GroupError(
                "this group id was not made for its creator (use new_group_id(creator))",
                code="bad-group-id",
            )
    elif entry.prev is None:
        raise GroupError(f"a {op} entry must name the entry before it", code="malformed")
    if op in ("create", "rename"):
        check_name(entry.name)
    elif entry.name:
        raise GroupError(f"a {op} entry carries no name", code="malformed")
    if entry.secure and op != "create":
        raise GroupError("only a create says whether a group is secure", code="malformed")
    if op in ("invite", "remove", "admin"):
        if n == 0:
            raise GroupError(f"a {op} entry must name at least one person", code="malformed")
    elif n:
        raise GroupError(f"a {op} entry names nobody (it has targets)", code="malformed")
    if op == "remove" and entry.actor in entry.targets:
        raise GroupError("to remove yourself, leave the group", code="remove-self")


# -- state ---------------------------------------------------------------------------------

Role = Literal["admin", "member"]


class Member(Struct, frozen=True, kw_only=True):
    fingerprint: str
    role: Role
    since: int  # index (in the applied list) of the entry that last added them
    added_by: str  # who made that entry (the creator adds themselves)


class GroupState(Struct, frozen=True, kw_only=True):
    """The group after the applied entries.

    `head` is what a new entry names as `prev`: the last entry held, in the order, whether it
    applied or not, so a new entry sorts after everything its maker knew. (Naming the last
    *applied* one would make the new entry a sibling of any refused entry on the same head,
    and a grant sorting before it would revive that refused entry.) `heads` are the entries
    held at the head's height: more than one is a fork nobody has built on yet (the next
    entry, naming `head`, settles it). `epoch_basis` is the hash of the last applied
    create/invite/remove/leave: session-key epochs key to it."""

    group: str
    name: str
    secure: bool
    creator: str
    members: dict[str, Member]
    admins: list[str]  # sorted
    head: str
    heads: list[str]  # in the order; `head` is the last
    epoch_basis: str
    closed: bool  # nobody is left: no entry will ever apply again
    size: int  # number of applied entries

    def is_member(self, fp: str) -> bool:
        return fp in self.members

    def is_admin(self, fp: str) -> bool:
        m = self.members.get(fp)
        return m is not None and m.role == "admin"

    def can(self, fp: str, op: Op) -> bool:
        """Whether `fp` may make an `op` entry now (ignoring whom it would name)."""
        return _right(self, fp, op) is None


class Applied(Struct, frozen=True, kw_only=True):
    """One applied entry and what it changed."""

    hash: str
    entry: Entry
    index: int  # place in the applied list
    height: int  # distance from the create along `prev`
    added: list[str] = []  # create: the creator; invite: the invitees
    removed: list[str] = []  # remove: the targets; leave: the actor
    new_admins: list[str] = []  # create, admin, and a successor made when the last admin left
    name: str | None = None  # create and rename: the new name

    @property
    def changes_membership(self) -> bool:
        return self.entry.op in MEMBERSHIP_OPS


class Refusal(Struct, frozen=True, kw_only=True):
    hash: str | None  # None: the bytes were too big to be worth hashing
    reason: str  # English, for `recv` and `group log`
    code: str  # one of GroupErrorCode
    entry: Entry | None = None


class MergeResult(Struct, kw_only=True):
    """What one `merge` did. `applied`: entries that apply now and did not before, in applied
    order. `reverted`: entries that applied before this merge and no longer do (a late entry
    placed before them took a right away; each with the reason). `refused`: entries of this
    batch that were not taken into the log, or were taken but are not allowed at their place."""

    applied: list[Applied] = []
    reverted: list[Refusal] = []
    refused: list[Refusal] = []

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.reverted)

    @property
    def problems(self) -> list[Refusal]:
        """The refusals worth showing: all but replays of entries already held (every
        membership message carries the whole log, so most of it is known)."""
        return [r for r in self.refused if r.code != "duplicate"]


class _StateView(Protocol):
    @property
    def group(self) -> str: ...
    @property
    def secure(self) -> bool: ...
    @property
    def creator(self) -> str: ...
    @property
    def members(self) -> Mapping[str, Member]: ...
    @property
    def closed(self) -> bool: ...


def _right(state: _StateView, actor: str, op: Op) -> str | None:
    """Why `actor` may not make `op` in `state`, or None if they may."""
    if state.closed:
        return "the group is closed: nobody is left in it"
    if op == "create":
        return "the group exists already"
    m = state.members.get(actor)
    if m is None:
        return f"{actor} is not a member of the group"
    admin = m.role == "admin"
    if op == "remove" and not admin:
        return "only admins may remove members"
    if op == "admin" and not admin:
        return "only admins may name admins"
    if op in ("invite", "rename") and state.secure and not admin:
        return f"only admins may {op} in a secure group"
    return None


def _check_at(state: _StateView, entry: Entry) -> None:
    """Raise `GroupError` unless `entry` (shape already checked) may apply to `state`."""
    if entry.group != state.group:
        raise GroupError(f"entry is for group {entry.group}, not {state.group}", code="wrong-group")
    why = _right(state, entry.actor, entry.op)
    if why is not None:
        code: GroupErrorCode = "closed" if state.closed else "not-allowed"
        if entry.op == "create":
            code = "second-create"
        raise GroupError(why, code=code)
    members = state.members
    if entry.op == "invite":
        for fp in entry.targets:
            if fp in members:
                raise GroupError(f"{fp} is already a member", code="already-member")
        total = len(members) + len(entry.targets)
        if total > MAX_MEMBERS:
            raise GroupError(
                f"a group holds at most {MAX_MEMBERS} members; it has {len(members)} and "
                f"this would add {len(entry.targets)}",
                code="too-many-members",
            )
    elif entry.op in ("remove", "admin"):
        for fp in entry.targets:
            if fp not in members:
                raise GroupError(f"{fp} is not a member", code="not-member")
            if entry.op == "remove" and fp == state.creator:
                raise GroupError(
                    "nobody can remove the group's creator (they can leave)", code="creator"
                )
            if entry.op == "admin" and members[fp].role == "admin":
                raise GroupError(f"{fp} is an admin already", code="already-admin")


def make_entry(
    state: GroupState | None,
    op: Op,
    actor: str,
    *,
    group: str,
    targets: Sequence[str] = (),
    name: str = "",
    secure: bool = False,
    ts: int,
) -> Entry:
    """Make the next entry of `state` (None: only a `create`), checked before anything signs
    it; raise `GroupError` with a clear message and a `code` if it would be refused.

    Fingerprints must already be normalised (40 upper-case hex: `normalise_fingerprint`);
    `prev` is `state.head`. Sign it with `sign_entry` and take it in with `MemberLog.add_own`.
    """
    _check_group_id(group)
    if state is not None and state.group != group:
        raise GroupError(f"this log is group {state.group}, not {group}", code="wrong-group")
    if state is None and op != "create":
        raise GroupError("no such group: a log starts with a create", code="no-group")
    if state is not None and op == "create":
        raise GroupError("the group exists already", code="second-create")
    entry = Entry(
        group=group,
        prev=None if state is None else state.head,
        op=op,
        actor=actor,
        targets=list(targets),
        name=name,
        secure=secure,
        ts=ts,
    )
    check_shape(entry)
    if state is not None:
        _check_at(state, entry)
    return entry


class _Tally:
    """The state while entries are applied in order (mutable; `GroupState` is its snapshot)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.name = ""
        self.secure = False
        self.creator = ""
        self.members: dict[str, Member] = {}
        self.closed = False
        self.epoch_basis = ""

    def apply(self, h: str, entry: Entry, index: int, height: int) -> Applied:
        op, actor = entry.op, entry.actor
        added: list[str] = []
        removed: list[str] = []
        new_admins: list[str] = []
        name: str | None = None
        if op == "create":
            self.name, self.secure, self.creator = entry.name, entry.secure, actor
            self.members[actor] = Member(
                fingerprint=actor, role="admin", since=index, added_by=actor
            )
            added, new_admins, name = [actor], [actor], entry.name
        elif op == "invite":
            for fp in entry.targets:
                self.members[fp] = Member(
                    fingerprint=fp, role="member", since=index, added_by=actor
                )
            added = list(entry.targets)
        elif op in ("remove", "leave"):
            removed = list(entry.targets) if op == "remove" else [actor]
            for fp in removed:
                del self.members[fp]
            if not self.members:
                self.closed = True
            elif not any(m.role == "admin" for m in self.members.values()):
                heir = min(self.members.values(), key=lambda m: (m.since, m.fingerprint))
                self.members[heir.fingerprint] = msgspec.structs.replace(heir, role="admin")
                new_admins = [heir.fingerprint]
        elif op == "admin":
            for fp in entry.targets:
                self.members[fp] = msgspec.structs.replace(self.members[fp], role="admin")
            new_admins = list(entry.targets)
        elif op == "rename":
            self.name = name = entry.name
        if op in MEMBERSHIP_OPS:
            self.epoch_basis = h
        return Applied(
            hash=h,
            entry=entry,
            index=index,
            height=height,
            added=added,
            removed=removed,
            new_admins=new_admins,
            name=name,
        )


# -- the log -------------------------------------------------------------------------------


def _trust_own(raw: bytes, signature: str, expected: str) -> None:
    """The verify step for entries this client signed itself (`MemberLog.add_own`)."""


class _Known(Struct, frozen=True):
    signed: SignedEntry
    entry: Entry
    height: int


class MemberLog:
    """The verified entries of one group, and the state they make in the one order.

    log = MemberLog(group_id)
    result = log.merge(signed_entries, identity.verify_detached)
    log.state            # GroupState, or None until the create is known
    log.entries()        # every entry held, in order: what a membership message carries
    """

    def __init__(self, group: str) -> None:
        _check_group_id(group)
        self.group = group
        self._known: dict[str, _Known] = {}
        self._root: str | None = None
        self._order: list[str] = []  # every held hash, sorted by (height, hash)
        self._applied: list[Applied] = []
        self._rejected: dict[str, Refusal] = {}  # held but not allowed at their place
        self._state: GroupState | None = None
        self._bad_sigs: OrderedDict[tuple[str, str], str] = OrderedDict()

    # -- reading -------------------------------------------------------------------------

    @property
    def state(self) -> GroupState | None:
        return self._state

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, entry_hash_hex: object) -> bool:
        return entry_hash_hex in self._known

    def entries(self) -> list[SignedEntry]:
        """Every entry held, in the order (predecessors first), applied or not: refused ones
        go too, because later entries may name them and a receiver must be able to place
        those exactly as we did."""
        return [self._known[h].signed for h in self._order]

    def applied(self) -> list[Applied]:
        return list(self._applied)

    def rejected(self) -> list[Refusal]:
        """Entries held but refused at their place, in order (for `group log`)."""
        return [self._rejected[h] for h in self._order if h in self._rejected]

    def is_member(self, fp: str) -> bool:
        return self._state is not None and self._state.is_member(fp)

    def can(self, fp: str, op: Op) -> bool:
        return self._state is not None and self._state.can(fp, op)

    # -- merging -------------------------------------------------------------------------

    def merge(self, entries: Iterable[SignedEntry], verify: VerifyFn) -> MergeResult:
        """Take in what is new of `entries`, verify each new one once (predecessors first),
        and recompute the state. Nothing refused is applied; nothing held is disturbed."""
        refused: list[Refusal] = []
        batch: dict[str, tuple[SignedEntry, Entry]] = {}
        for signed in entries:
            refusal = self._admit(signed, batch)
            if refusal is not None:
                refused.append(refusal)

        placed, unplaced = self._place(batch)
        for h in unplaced:
            refused.append(
                Refusal(
                    hash=h,
                    reason="its predecessor is unknown (neither in the log nor in this batch)",
                    code="unknown-prev",
                    entry=batch[h][1],
                )
            )
        taken: list[str] = []
        for h in sorted(placed, key=lambda x: (placed[x], x)):
            signed, entry = batch[h]
            if entry.prev is not None and entry.prev not in self._known:
                refused.append(
                    Refusal(
                        hash=h,
                        reason="its predecessor was refused",
                        code="unknown-prev",
                        entry=entry,
                    )
                )
                continue
            if entry.op == "create" and self._root is not None:
                refused.append(
                    Refusal(
                        hash=h,
                        reason="the log has a create already",
                        code="second-create",
                        entry=entry,
                    )
                )
                continue
            problem = self._verify(h, signed, entry, verify)
            if problem is not None:
                refused.append(problem)
                continue
            self._known[h] = _Known(signed, entry, placed[h])
            if entry.op == "create":
                self._root = h
            taken.append(h)

        if not taken:
            return MergeResult(refused=refused)
        before = {a.hash: a for a in self._applied}
        self._recompute()
        after = {a.hash for a in self._applied}
        for h in taken:
            if h in self._rejected:
                refused.append(self._rejected[h])
        return MergeResult(
            applied=[a for a in self._applied if a.hash not in before],
            reverted=[self._rejected[h] for h in self._order if h in before and h not in after],
            refused=refused,
        )

    def add_own(self, signed: SignedEntry) -> MergeResult:
        """Take an entry this client just made and signed (`make_entry`, `sign_entry`) without
        sending it to gpg again: the signature is our own. Never for entries from elsewhere."""
        return self.merge([signed], _trust_own)

    def _admit(
        self, signed: SignedEntry, batch: dict[str, tuple[SignedEntry, Entry]]
    ) -> Refusal | None:
        """Decode one arrival; put it in `batch` or say why not (no gpg here)."""
        raw = signed.raw
        if not isinstance(raw, bytes) or len(raw) > MAX_RAW:
            size = len(raw) if isinstance(raw, bytes) else 0
            return Refusal(hash=None, reason=f"entry too big ({size} bytes)", code="malformed")
        h = entry_hash(raw)
        if h in self._known:
            return Refusal(
                hash=h,
                reason="this entry is in the log already (a replay)",
                code="duplicate",
                entry=self._known[h].entry,
            )
        if h in batch:  # the first copy is the one checked
            return Refusal(
                hash=h, reason="this entry came twice in one batch", code="duplicate",
                entry=batch[h][1],
            )  # fmt: skip
        if not isinstance(signed.signature, str) or len(signed.signature) > MAX_SIGNATURE:
            return Refusal(
                hash=h, reason="the signature is missing or too big", code="bad-signature"
            )
        try:
            entry = decode_entry(raw)
        except GroupError as exc:
            return Refusal(hash=h, reason=exc.message, code=exc.code)
        if entry.group != self.group:
            return Refusal(
                hash=h,
                reason=f"entry is for group {entry.group}, not {self.group}",
                code="wrong-group",
                entry=entry,
            )
        batch[h] = (signed, entry)
        return None

    def _place(
        self, batch: Mapping[str, tuple[SignedEntry, Entry]]
    ) -> tuple[dict[str, int], list[str]]:
        """Heights of the batch entries whose predecessors are held or in the batch; the
        hashes of the others (in arrival order)."""
        heights: dict[str, int] = {}
        unplaced: set[str] = set()
        for start in batch:
            chain: list[str] = []
            h: str | None = start
            base: int | None = None
            while h is not None:
                if h in heights:
                    base = heights[h]
                    break
                if h in self._known:
                    base = self._known[h].height
                    break
                if h in unplaced or h not in batch or h in chain:
                    break  # unknown, or (impossibly, for SHA-256) a cycle
                chain.append(h)
                prev = batch[h][1].prev
                if prev is None:
                    base = -1
                    break
                h = prev
            if base is None:
                unplaced.update(chain)
                continue
            for depth, c in enumerate(reversed(chain), start=1):
                heights[c] = base + depth
        return heights, [h for h in batch if h in unplaced]

    def _verify(
        self, h: str, signed: SignedEntry, entry: Entry, verify: VerifyFn
    ) -> Refusal | None:
        key = (h, hashlib.sha256(signed.signature.encode()).hexdigest())
        reason = self._bad_sigs.get(key)
        if reason is None:
            try:
                verify(signed.raw, signed.signature, entry.actor)
                return None
            except TitsError as exc:
                reason = f"signature refused: {exc.message}"
                self._bad_sigs[key] = reason
                if len(self._bad_sigs) > _BAD_SIG_CACHE:
                    self._bad_sigs.popitem(last=False)
        return Refusal(hash=h, reason=reason, code="bad-signature", entry=entry)

    def _recompute(self) -> None:
        """Apply every held entry in (height, hash) order to a fresh state."""
        self._order = sorted(self._known, key=lambda h: (self._known[h].height, h))
        tally = _Tally(self.group)
        applied: list[Applied] = []
        rejected: dict[str, Refusal] = {}
        for h in self._order:
            entry = self._known[h].entry
            try:
                if entry.op != "create":
                    _check_at(tally, entry)
                elif applied:  # cannot happen: one create is held, at height 0
                    raise GroupError("the log has a create already", code="second-create")
            except GroupError as exc:
                rejected[h] = Refusal(hash=h, reason=exc.message, code=exc.code, entry=entry)
                continue
            applied.append(tally.apply(h, entry, len(applied), self._known[h].height))
        self._applied, self._rejected = applied, rejected
        if not applied:
            self._state = None
            return
        top = self._known[self._order[-1]].height
        self._state = GroupState(
            group=self.group,
            name=tally.name,
            secure=tally.secure,
            creator=tally.creator,
            members=dict(sorted(tally.members.items())),
            admins=sorted(fp for fp, m in tally.members.items() if m.role == "admin"),
            head=self._order[-1],
            heads=[h for h in self._order if self._known[h].height == top],
            epoch_basis=tally.epoch_basis,
            closed=tally.closed,
            size=len(applied),
        )
