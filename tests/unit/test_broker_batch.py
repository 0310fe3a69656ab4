"""Peer batches: however the outbox is filled, each batch decodes at the other end, takes the
front of the outbox in order, and leaves the rest for the next frame."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tits import wire
from tits.broker.peers import batch_of

FPS = [f"{k:040X}" for k in range(wire.MAX_RECIPIENTS)]


def fwd(n: int, recipients: int) -> wire.Forward:
    to = FPS[:recipients]
    return wire.Forward(id=n.to_bytes(16, "big"), origin=FPS[0], sender=FPS[1], to=to,
                        target=FPS[2], deliver_to=to, ts=0, token=b"t" * 128)  # fmt: skip


def drain(outbox: list) -> list[wire.PeerBatch]:
    batches = []
    while outbox:
        batch, taken = batch_of(outbox)
        assert taken > 0
        frame = wire.encode(batch)
        assert wire.PEER_DECODER.decode(frame) == batch  # the receiver takes it
        batches.append(batch)
        del outbox[:taken]
    return batches


def test_a_backlog_of_big_group_forwards_goes_in_frames_the_peer_accepts() -> None:
    outbox = [(fwd(n, wire.MAX_RECIPIENTS), b"x" * 1000) for n in range(1024)]
    batches = drain(list(outbox))
    assert [f.id for b in batches for f in b.fwds] == [m.id for m, _ in outbox]  # in order
    assert len(batches) > 1


def test_a_body_of_the_biggest_size_goes_alone_and_still_decodes() -> None:
    big = b"x" * wire.MAX_BODY
    outbox = [
        (fwd(1, wire.MAX_RECIPIENTS), big),
        (fwd(2, 1), big),
        (wire.ForwardAck(id=b"a" * 16, token=b""), b""),
    ]
    batches = drain(outbox)
    assert [(len(b.fwds), len(b.acks)) for b in batches] == [(1, 0), (1, 0), (0, 1)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.integers(1, wire.MAX_RECIPIENTS), st.integers(0, wire.MAX_BODY)),
            st.just(("ack", 0)),
        ),
        max_size=60,
    )
)
def test_any_outbox_drains_in_order_in_decodable_frames(items: list) -> None:
    outbox: list = []
    for n, (recipients, size) in enumerate(items):
        if recipients == "ack":
            outbox.append((wire.ForwardAck(id=n.to_bytes(16, "big"), token=b"t"), b""))
        else:
            outbox.append((fwd(n, recipients), bytes(size)))
    batches = drain(list(outbox))
    sent = [f.id for b in batches for f in b.fwds] + [a.id for b in batches for a in b.acks]
    assert sorted(sent) == sorted(m.id for m, _ in outbox)
    assert [f.id for b in batches for f in b.fwds] == [
        m.id for m, _ in outbox if isinstance(m, wire.Forward)
    ]
