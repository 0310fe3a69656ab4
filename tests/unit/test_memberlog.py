"""The membership log as pure logic: rights, refusals, order, forks, any arrival order.

These tests sign with a deterministic fake (``"sig:" + sha256(raw + actor)``, checked the same
way) because what they test is ordering and rights, not OpenPGP; the same log with real GnuPG
signatures is tested in tests/integration/test_memberlog_gpg.py.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tits.client.memberlog import (
    MAX_MEMBERS,
    MAX_TARGETS,
    Entry,
    GroupError,
    GroupState,
    MemberLog,
    MergeResult,
    Op,
    SignedEntry,
    decode_entry,
    encode_entry,
    entry_hash,
    export_for_gpg,
    make_entry,
    new_group_id,
    sign_entry,
)
from tits.errors import TitsError, VerificationError

ALICE, BOB, CAROL, DAVE, EVE, MALLORY = (c * 40 for c in "ABCDEF")
USERS = [ALICE, BOB, CAROL, DAVE, EVE, MALLORY, "1" * 40, "2" * 40]
# a fixed id (the random half zeroed) so Hypothesis replays the same hashes
GID = "0" * 16 + new_group_id(ALICE)[16:]


def fake_sign(raw: bytes, fp: str) -> str:
    return "sig:" + hashlib.sha256(raw + fp.encode()).hexdigest()


class FakeVerify:
    """Checks `fake_sign` signatures and counts calls per entry hash (each is a gpg run)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, raw: bytes, signature: str, expected: str) -> None:
        self.calls[entry_hash(raw)] += 1
        if signature != fake_sign(raw, expected):
            raise VerificationError(f"not signed by {expected}")

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def signed(entry: Entry) -> SignedEntry:
    return sign_entry(entry, fake_sign)


def forge(state: GroupState | None, op: Op, actor: str, **fields: object) -> SignedEntry:
    """An entry made without make_entry's checks (what a buggy or hostile client sends)."""
    entry = Entry(
        group=fields.pop("group", GID),  # type: ignore[arg-type]
        prev=fields.pop("prev", None if state is None else state.head),  # type: ignore[arg-type]
        op=op,
        actor=actor,
        ts=fields.pop("ts", 1),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )
    return signed(entry)


class Group:
    """A log and the entries made for it, one `do` at a time."""

    def __init__(self, secure: bool = False, name: str = "Friends") -> None:
        self.log = MemberLog(GID)
        self.verify = FakeVerify()
        self.made: list[SignedEntry] = []
        self.ts = 0
        self.do("create", ALICE, name=name, secure=secure)

    @property
    def state(self) -> GroupState:
        assert self.log.state is not None
        return self.log.state

    def make(self, op: Op, actor: str, **kw: object) -> SignedEntry:
        self.ts += 1
        state = self.log.state
        entry = make_entry(state, op, actor, group=GID, ts=self.ts, **kw)  # type: ignore[arg-type]
        return signed(entry)

    def do(self, op: Op, actor: str, **kw: object) -> MergeResult:
        se = self.make(op, actor, **kw)
        self.made.append(se)
        result = self.log.merge([se], self.verify)
        assert not result.refused, result.refused
        return result

    def refuse(self, se: SignedEntry, code: str) -> MergeResult:
        before = self.log.state
        result = self.log.merge([se], self.verify)
        assert [r.code for r in result.refused] == [code], result.refused
        assert not result.applied and not result.reverted
        # nothing changes but the head, when the entry is held (refused at its place)
        assert self.log.state is not None and before is not None
        assert msgspec.structs.replace(self.log.state, head="", heads=[]) == (
            msgspec.structs.replace(before, head="", heads=[])
        )
        return result


def fps(n: int, start: int = 0) -> list[str]:
    return [f"{i:040X}" for i in range(start + 16, start + 16 + n)]


# -- the operations -------------------------------------------------------------------------


def test_create_invite_admin_rename_remove_leave() -> None:
    g = Group()
    s = g.state
    assert (s.name, s.secure, s.creator, s.admins) == ("Friends", False, ALICE, [ALICE])
    assert s.members[ALICE].role == "admin" and s.members[ALICE].since == 0
    assert s.head == s.epoch_basis == entry_hash(g.made[0].raw)
    assert g.log.is_member(ALICE) and not g.log.is_member(BOB)

    r = g.do("invite", ALICE, targets=[BOB, CAROL])
    assert r.applied[0].added == [BOB, CAROL] and r.applied[0].index == 1
    assert g.state.members[BOB].role == "member" and g.state.members[BOB].added_by == ALICE
    assert g.state.epoch_basis == r.applied[0].hash

    r = g.do("invite", BOB, targets=[DAVE])  # any member invites in a normal group
    assert g.state.members[DAVE].since == 2

    basis = g.state.epoch_basis
    r = g.do("admin", ALICE, targets=[BOB])
    assert r.applied[0].new_admins == [BOB] and g.state.admins == [ALICE, BOB]
    assert g.state.epoch_basis == basis  # not a membership change

    r = g.do("rename", CAROL, name="Family 👨‍👩‍👧")
    assert r.applied[0].name == "Family 👨‍👩‍👧" and g.state.name == "Family 👨‍👩‍👧"
    assert g.state.epoch_basis == basis

    r = g.do("remove", BOB, targets=[DAVE])  # an admin the creator named may remove
    assert r.applied[0].removed == [DAVE] and not g.log.is_member(DAVE)
    assert g.state.epoch_basis == r.applied[0].hash

    r = g.do("leave", CAROL)
    assert r.applied[0].removed == [CAROL]
    assert sorted(g.state.members) == [ALICE, BOB]
    assert [a.entry.op for a in g.log.applied()] == [
        "create", "invite", "invite", "admin", "rename", "remove", "leave",
    ]  # fmt: skip
    assert g.state.head == entry_hash(g.made[-1].raw) and g.state.heads == [g.state.head]
    assert g.log.entries() == g.made
    assert g.verify.total == len(g.made)


def test_rights_in_a_secure_group() -> None:
    g = Group(secure=True)
    g.do("invite", ALICE, targets=[BOB])
    assert g.log.can(ALICE, "invite") and not g.log.can(BOB, "invite")
    assert not g.log.can(BOB, "rename") and g.log.can(BOB, "leave")
    assert not g.log.can(MALLORY, "leave") and not g.log.can(ALICE, "create")
    for op, kw in (("invite", {"targets": [CAROL]}), ("rename", {"name": "x"})):
        with pytest.raises(GroupError, match="only admins") as ei:
            g.make(op, BOB, **kw)  # type: ignore[arg-type]
        assert ei.value.code == "not-allowed"
    g.do("admin", ALICE, targets=[BOB])
    g.do("invite", BOB, targets=[CAROL])
    g.do("rename", BOB, name="Ops")
    assert g.state.name == "Ops" and g.state.secure


@pytest.mark.parametrize(
    ("op", "actor", "kw", "code", "match"),
    [
        ("invite", CAROL, {"targets": [DAVE]}, "not-allowed", "not a member"),
        ("invite", ALICE, {"targets": [BOB]}, "already-member", "already a member"),
        ("invite", ALICE, {"targets": [DAVE, DAVE]}, "duplicate-target", "twice"),
        ("invite", ALICE, {"targets": ["d" * 40]}, "bad-fingerprint", "40 upper-case"),
        ("invite", ALICE, {"targets": ["D" * 39]}, "bad-fingerprint", "not a fingerprint"),
        ("invite", "a" * 40, {"targets": [DAVE]}, "bad-fingerprint", "actor"),
        ("invite", ALICE, {}, "malformed", "at least one"),
        ("invite", ALICE, {"targets": [DAVE], "name": "x"}, "malformed", "no name"),
        ("invite", ALICE, {"targets": [DAVE], "secure": True}, "malformed", "only a create"),
        ("remove", ALICE, {"targets": [DAVE]}, "not-member", "not a member"),
        ("remove", BOB, {"targets": [ALICE]}, "not-allowed", "only admins"),
        ("remove", ALICE, {"targets": [ALICE]}, "remove-self", "leave"),
        ("leave", ALICE, {"targets": [BOB]}, "malformed", "names nobody"),
        ("leave", DAVE, {}, "not-allowed", "not a member"),
        ("admin", BOB, {"targets": [BOB]}, "not-allowed", "only admins"),
        ("admin", ALICE, {"targets": [DAVE]}, "not-member", "not a member"),
        ("admin", ALICE, {"targets": [ALICE]}, "already-admin", "already"),
        ("rename", ALICE, {"name": ""}, "bad-name", "needs a name"),
        ("create", ALICE, {"name": "again"}, "second-create", "exists"),
    ],
)
def test_make_entry_refuses_before_signing(
    op: Op, actor: str, kw: dict[str, object], code: str, match: str
) -> None:
    g = Group()
    g.do("invite", ALICE, targets=[BOB])
    with pytest.raises(GroupError, match=match) as ei:
        g.make(op, actor, **kw)
    assert ei.value.code == code and isinstance(ei.value, TitsError)


def test_nobody_removes_the_creator_who_may_leave_and_come_back_as_a_member() -> None:
    g = Group()
    g.do("invite", ALICE, targets=[BOB])
    g.do("admin", ALICE, targets=[BOB])
    with pytest.raises(GroupError, match="creator") as ei:
        g.make("remove", BOB, targets=[ALICE])
    assert ei.value.code == "creator"
    g.do("leave", ALICE)
    assert g.state.creator == ALICE and g.state.admins == [BOB]
    g.do("invite", BOB, targets=[ALICE])
    assert g.state.members[ALICE].role == "member"
    with pytest.raises(GroupError) as ei:
        g.make("remove", BOB, targets=[ALICE])
    assert ei.value.code == "creator"


def test_group_id_and_state_checks() -> None:
    for bad in ("xyz", "A" * 32, "0" * 31):
        with pytest.raises(GroupError) as ei:
            make_entry(None, "create", ALICE, group=bad, name="n", ts=0)
        assert ei.value.code == "bad-group-id"
        with pytest.raises(GroupError):
            MemberLog(bad)
    with pytest.raises(GroupError, match="not made for its creator") as ei:
        make_entry(None, "create", BOB, group=GID, name="n", ts=0)  # Alice's id
    assert ei.value.code == "bad-group-id"
    assert new_group_id(BOB) != new_group_id(BOB)
    with pytest.raises(GroupError) as ei:
        make_entry(None, "invite", ALICE, group=GID, targets=[BOB], ts=0)
    assert ei.value.code == "no-group"
    g = Group()
    with pytest.raises(GroupError) as ei:
        make_entry(g.state, "leave", ALICE, group=new_group_id(ALICE), ts=0)
    assert ei.value.code == "wrong-group"


# -- names and sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "needs a name"),
        ("   ", "needs a name"),
        ("x" * 65, "at most 64 characters; this one has 65"),
        ("x" * 10_000, "at most 64 characters; this one has 10000"),
        ("a\nb", "control characters"),
        ("bell\x07", "control characters"),
        ("nul\x00", "control characters"),
        ("del\x7f", "control characters"),
        ("c1\x85", "control characters"),
        ("evil\u202egpj.exe", "bidi"),
        ("\u2066iso\u2069", "bidi"),
        ("arabic\u061cmark", "bidi"),
        ("lrm\u200e", "bidi"),
        ("zero\u200bwidth", "format"),
        ("soft\u00adhyphen", "format"),
        ("bom\ufeff", "format"),
        ("line\u2028sep", "format"),
    ],
)
def test_bad_names_are_clear_errors(name: str, match: str) -> None:
    with pytest.raises(GroupError, match=match) as ei:
        make_entry(None, "create", ALICE, group=GID, name=name, ts=0)
    assert ei.value.code == "bad-name"
    g = Group()
    with pytest.raises(GroupError, match=match):
        g.make("rename", ALICE, name=name)


@pytest.mark.parametrize("name", ["x" * 64, "家人", "👨‍👩‍👧 family", "❤️ love", "Ωmega IM"])
def test_good_names(name: str) -> None:
    g = Group(name=name)
    assert g.state.name == name


def test_a_500_member_invite_list_is_a_clear_error_and_100_at_once_is_fine() -> None:
    g = Group()
    with pytest.raises(GroupError) as ei:
        g.make("invite", ALICE, targets=fps(500))
    assert ei.value.code == "too-many-targets"
    assert "at most 100" in ei.value.message and "names 500" in ei.value.message
    assert "several steps" in ei.value.message
    g.do("invite", ALICE, targets=fps(MAX_TARGETS))
    assert len(g.state.members) == 1 + MAX_TARGETS
    # a hand-made entry with 101 targets never gets past decoding
    big = forge(g.state, "invite", ALICE, targets=fps(101, start=200))
    g.refuse(big, "malformed")


def test_a_group_holds_at_most_1000_members() -> None:
    g = Group()
    people = fps(MAX_MEMBERS)
    for i in range(0, MAX_MEMBERS - 1, MAX_TARGETS):  # 999 invitees + Alice
        g.do("invite", ALICE, targets=people[i : min(i + MAX_TARGETS, MAX_MEMBERS - 1)])
    assert len(g.state.members) == MAX_MEMBERS
    with pytest.raises(GroupError, match="at most 1000 members; it has 1000") as ei:
        g.make("invite", ALICE, targets=[people[-1]])
    assert ei.value.code == "too-many-members"
    g.refuse(forge(g.state, "invite", ALICE, targets=[people[-1]]), "too-many-members")
    g.do("remove", ALICE, targets=[people[0]])
    g.do("invite", ALICE, targets=[people[-1]])
    assert len(g.state.members) == MAX_MEMBERS


# -- succession and closing ----------------------------------------------------------------


def test_when_the_last_admin_leaves_the_longest_member_becomes_admin() -> None:
    g = Group()
    g.do("invite", ALICE, targets=[CAROL, BOB])  # same entry: the lower fingerprint wins
    g.do("invite", ALICE, targets=[DAVE])
    r = g.do("leave", ALICE)
    assert r.applied[0].new_admins == [BOB] and g.state.admins == [BOB]
    r = g.do("leave", BOB)
    assert r.applied[0].new_admins == [CAROL] and g.state.admins == [CAROL]
    g.do("admin", CAROL, targets=[DAVE])
    r = g.do("leave", CAROL)
    assert r.applied[0].new_admins == [] and g.state.admins == [DAVE]


def test_the_longest_member_is_by_applied_order_not_fingerprint() -> None:
    g = Group()
    g.do("invite", ALICE, targets=[EVE])
    g.do("invite", ALICE, targets=[BOB])
    g.do("leave", ALICE)
    assert g.state.admins == [EVE]


def test_an_empty_group_is_closed_and_refuses_everything() -> None:
    g = Group()
    g.do("invite", ALICE, targets=[BOB])
    g.do("leave", ALICE)
    g.do("leave", BOB)
    s = g.state
    assert s.closed and s.members == {} and s.admins == []
    assert not g.log.can(BOB, "invite")
    with pytest.raises(GroupError, match="closed") as ei:
        g.make("invite", BOB, targets=[CAROL])
    assert ei.value.code == "closed"
    g.refuse(forge(s, "invite", BOB, targets=[CAROL]), "closed")


# -- merge refusals ------------------------------------------------------------------------


def test_refusals_in_merge_each_with_its_code() -> None:
    g = Group()
    g.do("invite", ALICE, targets=[BOB])
    s = g.state
    # predecessor unknown
    g.refuse(forge(s, "invite", BOB, targets=[CAROL], prev="f" * 64), "unknown-prev")
    # another group (bound to Alice, so only the group differs)
    g.refuse(forge(s, "leave", BOB, group=new_group_id(ALICE)), "wrong-group")
    # a second create, and a create that is not first
    g.refuse(forge(None, "create", ALICE, name="again"), "second-create")
    g.refuse(forge(s, "create", ALICE, name="late"), "create-not-first")
    # a replay: not applied twice
    g.refuse(g.made[-1], "duplicate")
    assert [a.entry.op for a in g.log.applied()] == ["create", "invite"]
    # a bad signature, and a good one by someone other than the actor
    entry = make_entry(s, "invite", BOB, group=GID, targets=[CAROL], ts=9)
    raw = encode_entry(entry)
    g.refuse(SignedEntry(raw=raw, signature="-----BEGIN PGP SIGNATURE-----"), "bad-signature")
    g.refuse(SignedEntry(raw=raw, signature=fake_sign(raw, MALLORY)), "bad-signature")
    # no right at its place: held (a later entry may name it) but not applied
    r = g.refuse(forge(s, "remove", BOB, targets=[ALICE]), "not-allowed")
    assert r.refused[0].reason == "only admins may remove members"
    assert len(g.log.rejected()) == 1 and len(g.log.entries()) == 3
    # bytes that are not a canonical entry
    g.refuse(SignedEntry(raw=b"not json", signature="x"), "malformed")
    spaced = raw.replace(b",", b", ")
    g.refuse(SignedEntry(raw=spaced, signature=fake_sign(spaced, BOB)), "malformed")
    extra = raw[:-1] + b',"evil":1}'
    g.refuse(SignedEntry(raw=extra, signature=fake_sign(extra, BOB)), "malformed")
    # the honest copy still goes in
    g.log.merge([SignedEntry(raw=raw, signature=fake_sign(raw, BOB))], g.verify)
    assert g.log.is_member(CAROL)


def test_entries_after_a_refused_signature_are_refused_without_gpg() -> None:
    g = Group()
    bad = SignedEntry(raw=g.make("invite", ALICE, targets=[BOB]).raw, signature="forged")
    child = signed(
        Entry(group=GID, prev=entry_hash(bad.raw), op="invite", actor=ALICE, targets=[CAROL], ts=3)
    )
    calls = g.verify.total
    r = g.log.merge([child, bad], g.verify)
    assert [(x.hash, x.code) for x in r.refused] == [
        (entry_hash(bad.raw), "bad-signature"),
        (entry_hash(child.raw), "unknown-prev"),
    ]
    assert g.verify.total == calls + 1  # the child was never sent to gpg
    g.log.merge([bad], g.verify)  # the same bad copy again: remembered, no gpg
    assert g.verify.total == calls + 1
    good = g.made[0]  # an unrelated known entry
    assert g.log.merge([good], g.verify).refused[0].code == "duplicate"
    assert g.verify.total == calls + 1


def test_merging_a_known_log_costs_no_verification() -> None:
    g = Group()
    g.do("invite", ALICE, targets=[BOB, CAROL])
    g.do("leave", CAROL)
    assert g.verify.total == 3 and set(g.verify.calls.values()) == {1}
    r = g.log.merge(g.log.entries(), g.verify)
    assert g.verify.total == 3
    assert not r.changed and r.problems == [] and {x.code for x in r.refused} == {"duplicate"}
    fresh = MemberLog(GID)
    v = FakeVerify()
    fresh.merge(reversed(g.log.entries()), v)  # children first: still one call each
    assert v.total == 3 and fresh.state == g.state


def test_signed_entries_round_trip_through_msgpack_and_json() -> None:
    g = Group()
    se = g.made[0]
    assert se.raw == msgspec.json.encode(decode_entry(se.raw))
    for enc, dec in ((msgspec.msgpack.encode, msgspec.msgpack.decode),
                     (msgspec.json.encode, msgspec.json.decode)):  # fmt: skip
        assert dec(enc(se), type=SignedEntry) == se
        assert dec(enc(g.log.entries()), type=list[SignedEntry]) == g.log.entries()
    assert export_for_gpg(se) == (se.raw, se.signature)


# -- order and forks -----------------------------------------------------------------------


def _fork() -> tuple[Group, SignedEntry, SignedEntry]:
    """Alice, Bob and Carol are admins; on the same head Bob removes Carol and Carol Bob."""
    g = Group()
    g.do("invite", ALICE, targets=[BOB, CAROL, DAVE])
    g.do("admin", ALICE, targets=[BOB, CAROL])
    x = g.make("remove", BOB, targets=[CAROL])
    y = g.make("remove", CAROL, targets=[BOB])
    return g, x, y


def test_a_fork_of_two_admins_is_settled_by_hash() -> None:
    g, x, y = _fork()
    first, second = sorted([x, y], key=lambda s: entry_hash(s.raw))
    r = g.log.merge([x, y], g.verify)
    assert [a.hash for a in r.applied] == [entry_hash(first.raw)]
    assert [(f.hash, f.code) for f in r.refused] == [(entry_hash(second.raw), "not-allowed")]
    loser = BOB if first is y else CAROL
    assert not g.log.is_member(loser) and g.state.admins == sorted({ALICE, BOB, CAROL} - {loser})


def test_a_fork_where_both_apply_shows_two_heads_until_someone_builds_on_it() -> None:
    g = Group()
    g.do("invite", ALICE, targets=[BOB])
    x = g.make("invite", ALICE, targets=[CAROL])
    y = g.make("invite", BOB, targets=[DAVE])
    g.log.merge([y, x], g.verify)
    assert sorted(g.state.heads) == sorted(entry_hash(s.raw) for s in (x, y))
    assert g.state.head == max(g.state.heads)  # the later of the two in the order
    g.do("leave", DAVE)
    assert g.state.heads == [g.state.head] and sorted(g.state.members) == [ALICE, BOB, CAROL]


def test_every_arrival_order_of_a_small_fork_gives_the_same_log() -> None:
    g, x, y = _fork()
    z = g.make("invite", DAVE, targets=[EVE])  # on the same head too
    base = list(g.made)
    results = set()
    for perm in itertools.permutations([*base, x, y, z]):
        log = MemberLog(GID)
        for se in perm:  # one at a time, and what could not be placed comes again with the rest
            log.merge([se], FakeVerify())
        log.merge(perm, FakeVerify())
        assert log.state is not None
        results.add(msgspec.json.encode([log.state, log.applied()]))
    assert len(results) == 1


def test_a_refused_entry_stays_refused_when_its_actor_gets_the_right_later() -> None:
    """Bob, a plain member, removes Carol: refused, but held. Alice then makes Bob admin; her
    entry names the refused one as its predecessor (`head` is the last entry held), so it
    sorts after it and cannot revive it, whatever the hashes."""
    for ts in range(20):
        g = Group()
        g.do("invite", ALICE, targets=[BOB, CAROL])
        g.ts = ts * 10
        g.refuse(forge(g.state, "remove", BOB, targets=[CAROL], ts=g.ts), "not-allowed")
        assert g.state.head == g.log.rejected()[0].hash
        g.do("admin", ALICE, targets=[BOB])
        assert g.log.is_member(CAROL) and g.state.admins == [ALICE, BOB]
        assert [r.code for r in g.log.rejected()] == ["not-allowed"]


def test_a_late_entry_placed_earlier_reverts_what_it_took_the_right_for() -> None:
    """Bob invites Eve while Alice, on the same head, removes Bob. A client that saw Bob's
    invite first applied it; when Alice's removal arrives and sorts before it, Bob was no
    longer a member at his entry's place, so his invite is reverted."""
    for ts in range(100):
        g = Group()
        g.do("invite", ALICE, targets=[BOB])
        g.ts = ts * 10
        bob = g.make("invite", BOB, targets=[EVE])
        alice = g.make("remove", ALICE, targets=[BOB])
        if entry_hash(alice.raw) < entry_hash(bob.raw):
            break
    r1 = g.log.merge([bob], g.verify)
    assert g.log.is_member(EVE) and r1.applied[0].added == [EVE]
    r2 = g.log.merge([alice], g.verify)
    assert [a.hash for a in r2.applied] == [entry_hash(alice.raw)]
    assert [(x.hash, x.code) for x in r2.reverted] == [(entry_hash(bob.raw), "not-allowed")]
    assert r2.changed and not g.log.is_member(EVE) and not g.log.is_member(BOB)
    assert g.verify.calls[entry_hash(bob.raw)] == 1  # recomputed, not re-verified


# -- any arrival order, proved over random histories -------------------------------------


def _view(entries: Sequence[SignedEntry]) -> GroupState | None:
    log = MemberLog(GID)
    log.merge(entries, FakeVerify())
    return log.state


@st.composite
def histories(draw: st.DrawFn) -> list[SignedEntry]:
    """A create, then entries each made on a random earlier view of the log (so many act on
    stale heads: forks), sometimes two on the same view, sometimes without the right."""
    made = [signed(make_entry(None, "create", ALICE, group=GID, name="g",
                              secure=draw(st.booleans()), ts=0))]  # fmt: skip
    for step in range(draw(st.integers(1, 18))):
        k = draw(st.integers(max(1, len(made) - 4), len(made)))
        state = _view(made[:k])
        assert state is not None
        if state.closed:
            continue
        for twin in range(draw(st.integers(1, 2))):
            members = sorted(state.members)
            actor = draw(st.sampled_from(state.admins * 3 + members * 2 + USERS))
            op: Op = draw(st.sampled_from(["invite", "invite", "invite", "remove", "remove",
                                           "admin", "admin", "leave", "rename"]))  # fmt: skip
            if op == "invite":
                pool = USERS
            else:  # mostly whom the rules allow, sometimes anyone
                allowed = [fp for fp in members if fp not in (actor, state.creator)]
                pool = draw(st.sampled_from([allowed, allowed, USERS])) or USERS
            targets = [] if op in ("leave", "rename") else draw(
                st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))  # fmt: skip
            name = draw(st.sampled_from(["a", "b"])) if op == "rename" else ""
            ts = step * 10 + twin
            try:
                entry = make_entry(state, op, actor, group=GID, targets=targets, name=name, ts=ts)
            except GroupError as exc:
                if exc.code != "not-allowed" or not draw(st.booleans()):
                    continue
                # sent anyway by a client that thinks otherwise: refused at its place
                entry = Entry(group=GID, prev=state.head, op=op, actor=actor,
                              targets=targets, name=name, ts=ts)  # fmt: skip
            made.append(signed(entry))
    return made


HONEST_NEVER = {"bad-signature", "malformed", "duplicate", "wrong-group", "second-create"}


def _log_from(entries: Sequence[SignedEntry]) -> MemberLog:
    log = MemberLog(GID)
    log.merge(entries, FakeVerify())
    return log


def _summary(log: MemberLog) -> bytes:
    return msgspec.json.encode(
        [log.state, log.applied(), log.rejected(), [s.raw for s in log.entries()]]
    )


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), history=histories())
def test_any_arrival_order_in_any_batches_gives_the_same_log(
    data: st.DataObject, history: list[SignedEntry]
) -> None:
    reference = MemberLog(GID)
    reference.merge(history, FakeVerify())
    want = _summary(reference)
    state = reference.state
    assert state is not None
    if not state.closed:
        assert state.admins, "a group with members always has an admin"

    # the same entries in another order, in one batch
    one = MemberLog(GID)
    one.merge(data.draw(st.permutations(history)), FakeVerify())
    assert _summary(one) == want

    # in another order, split over several merges; what could not be placed yet comes again
    # with the next batch (every membership message carries the whole log)
    order = data.draw(st.permutations(history))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=6)))
    chunks = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    log, verify, pending = MemberLog(GID), FakeVerify(), list[SignedEntry]()
    for chunk in [*chunks, *([[]] * len(history))]:
        batch = pending + list(chunk)
        result = log.merge(batch, verify)
        unplaced = {r.hash for r in result.refused if r.code == "unknown-prev"}
        pending = [s for s in batch if entry_hash(s.raw) in unplaced]
        assert not {r.code for r in result.refused} & HONEST_NEVER, result.refused
        # what the log holds is enough for anyone to reach the same state
        assert _summary(_log_from(log.entries())) == _summary(log)
    assert not pending
    assert _summary(log) == want
    assert sorted(verify.calls.values()) == [1] * len(history), "each entry verified once"

    # and the whole log again changes nothing and runs no verification
    again = log.merge(reference.entries(), verify)
    assert not again.changed and again.problems == []
    assert verify.total == len(history)
