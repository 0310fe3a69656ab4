"""The presence directory: lists arrive in shards, out of order and repeated; `where` always
agrees with a recomputation from the newest shard of every broker."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tits import wire
from tits.broker.directory import SHARD_BYTES, SHARDS, Directory, shard_of, split

BROKERS = ["A" * 40, "B" * 40, "C" * 40]
USERS = [f"{d}{k}".ljust(40, "0") for d in "0123456789ABCDEF" for k in range(3)]
NO_UPDATE = wire.PresenceUpdate()


def presence(
    broker: str, seq: int, users: list[str], shard: int, device: str = "0" * 16
) -> wire.Presence:
    entries = [wire.PresenceEntry(u, [device]) for u in users]
    return wire.Presence(broker=broker, seq=seq, users=entries, shard=shard)


def test_a_login_changes_one_shard_and_reports_only_its_users() -> None:
    d = Directory("Z" * 40)
    u1, u2 = "1" + "0" * 39, "1" + "1" * 39
    assert d.apply(presence(BROKERS[0], 5, [u1], 1), NO_UPDATE) == {u1}
    assert d.apply(presence(BROKERS[0], 6, [u1, u2], 1), NO_UPDATE) == {u2}
    assert d.apply(presence(BROKERS[0], 6, [], 1), NO_UPDATE) is None  # not newer
    assert d.apply(presence(BROKERS[0], 7, [], 2), NO_UPDATE) == set()  # another shard
    assert set(d.where(u1)) == {BROKERS[0]}
    assert d.drop_broker(BROKERS[0]) == {u1, u2} and d.where(u1) == {}


def test_entries_in_the_wrong_shard_are_misfiled() -> None:
    assert Directory.misfiled(presence(BROKERS[0], 1, ["2" + "0" * 39], 1))
    assert not Directory.misfiled(presence(BROKERS[0], 1, ["1" + "0" * 39], 1))


def test_split_puts_every_user_in_its_shard() -> None:
    entries = [wire.PresenceEntry(u, ["0" * 16]) for u in USERS]
    parts = split(entries)
    assert len(parts) == SHARDS
    assert all(shard_of(e.fingerprint) == k for k, part in enumerate(parts) for e in part)
    assert sum(len(p) for p in parts) == len(USERS)


step = st.one_of(
    st.tuples(
        st.just("update"),
        st.sampled_from(BROKERS),
        st.integers(1, 20),  # seq: repeats and old ones included
        st.integers(0, SHARDS - 1),
        st.sets(st.sampled_from(USERS), max_size=6),
    ),
    st.tuples(st.just("drop"), st.sampled_from(BROKERS)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
def test_where_matches_a_recomputation_after_any_sequence(steps: list[tuple]) -> None:
    d = Directory("Z" * 40)
    newest: dict[tuple[str, int], tuple[int, list[str]]] = {}
    for s in steps:
        if s[0] == "drop":
            d.drop_broker(s[1])
            newest = {k: v for k, v in newest.items() if k[0] != s[1]}
            continue
        _, broker, seq, shard, users = s
        mine = sorted(u for u in users if shard_of(u) == shard)
        before = {u: dict(d.where(u)) for u in USERS}
        device = f"{seq % 3:016x}"  # a user's devices change too
        changed = d.apply(presence(broker, seq, mine, shard, device), NO_UPDATE)
        held = newest.get((broker, shard))
        if held is not None and seq <= held[0]:
            assert changed is None
            continue
        newest[(broker, shard)] = (seq, mine)
        assert changed == {u for u in USERS if d.where(u) != before[u]}
    for u in USERS:
        expect = {b for (b, _), (_, users) in newest.items() if u in users}
        assert set(d.where(u)) == expect, u


def test_a_crowded_shard_is_cut_to_what_a_frame_carries() -> None:
    """Fingerprints made to share a first digit, with long names and many devices: the
    shard keeps what fits in SHARD_BYTES, and its encoding stays under that."""
    name = "名" * 200
    crowd = [
        wire.PresenceEntry(f"7{k:039X}", [f"{d:016x}" for d in range(8)], name)
        for k in range(30_000)
    ]
    part = split(crowd)[7]
    assert 0 < len(part) < len(crowd)
    encoded = wire.encode(wire.Presence(broker=BROKERS[0], seq=1, users=part, shard=7))
    assert len(encoded) <= SHARD_BYTES
