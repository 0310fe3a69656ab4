"""Every wire kind round-trips; any bytes at all into any decoder raise only WireError."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tits import wire
from tits.errors import WireError

FP_A, FP_B = "A" * 40, "0123456789ABCDEF0123456789ABCDEF01234567"
MID = wire.new_msg_id()
GID = wire.new_group_id()
SIG = b"\x01" * 64
SIGNED = wire.Signed(header_payload=b"hp", device="0123456789abcdef", signature=SIG)
ADVERT = wire.SignedAdvert(advert=b"a", signature=b"s")

SAMPLES: dict[Any, list[Any]] = {
    wire.CLIENT_DECODER: [
        wire.Hello(),
        wire.Login(blob=b"x" * 100, fingerprint=FP_A),
        wire.Send(id=MID, sender=FP_A, to=[FP_B], group=GID, ttl=3),
        wire.Received(ids=[MID, MID]),
        wire.Ping(t=5),
        wire.Bye(),
    ],
    wire.SERVER_DECODER: [
        wire.Challenge(nonce=b"n" * 32, broker=FP_A, expires=10, key=b"k"),
        wire.Welcome(
            fingerprint=FP_A,
            device="0123456789abcdef",
            broker=FP_B,
            pending=0,
            brokers=["tcp://127.0.0.1:1#" + "00" * 32],
        ),
        wire.Accepted(id=MID),
        wire.Deliver(id=MID, sender=FP_A, to=[FP_B], group=None, ts=7),
        wire.Deliveries(items=[wire.Deliver(id=MID, sender=FP_A, to=[FP_B], ts=7, device=None)]),
        wire.Error(code="bad-frame", message="無法解碼", ref=MID),
        wire.Pong(t=1),
    ],
    wire.PEER_DECODER: [
        wire.PeerHello(broker=FP_A, address="tcp://127.0.0.1:1"),
        wire.Heartbeat(t=1),
        wire.HeartbeatAck(t=1),
        wire.Forward(
            id=MID,
            origin=FP_A,
            sender=FP_B,
            to=[FP_B],
            target=FP_A,
            hops=2,
            deliver_to=[FP_B],
            ts=1,
        ),
        wire.ForwardAck(id=MID, token=b""),
        wire.PeerBatch(
            fwds=[
                wire.Forward(
                    id=MID, origin=FP_A, sender=FP_B, to=[FP_B], target=FP_A, deliver_to=[], ts=0
                )
            ],
            bodies=[b"body"],
            acks=[wire.ForwardAck(id=MID, token=b"t")],
        ),
        wire.SnapshotRequest(),
        wire.PeerBye(),
        wire.Snapshot(adverts=[ADVERT], seq=9),
        wire.Error(code="not-admitted"),
    ],
    wire.GOSSIP_DECODER: [
        ADVERT,
        wire.PresenceUpdate(presence=b"p", signature=SIG, device="0123456789abcdef"),
    ],
    wire.ADVERT_DECODER: [
        wire.Advert(broker=FP_A, address="tcp://h:1", seq=3, links=[wire.Link(FP_B, 250)])
    ],
    wire.PRESENCE_DECODER: [
        wire.Presence(
            broker=FP_A, seq=1, users=[wire.PresenceEntry(FP_B, ["0123456789abcdef"], "陳")]
        )
    ],
    wire.BODY_DECODER: [
        wire.SealedBody(epoch=1, alg="aes256gcm", nonce=b"n" * 12, ciphertext=b"c"),
        wire.MediaBody(signed=SIGNED, sha256=b"h" * 32),
        wire.KeyBody(group=GID, epoch=2, wrapped=b"-----BEGIN PGP MESSAGE-----", secure=True),
    ],
    wire.SIGNED_DECODER: [SIGNED],
}
ALL_DECODERS = [*SAMPLES, wire.HEADER_PAYLOAD_DECODER]


@pytest.mark.parametrize(
    ("decoder", "msg"), [(d, m) for d, ms in SAMPLES.items() for m in ms], ids=repr
)
def test_round_trip(decoder: wire._Decoder, msg: object) -> None:
    assert decoder.decode(wire.encode(msg)) == msg


def test_the_longest_acknowledgements_the_types_allow_fit_their_envelope() -> None:
    """A client acking a burst of deliveries, or a broker acking a group commit, must not
    send a frame the other side refuses as oversized (1,024 ids did: 18 kB > 16 kB)."""
    ids = [wire.new_msg_id() for _ in range(wire.RECEIVED_MAX + 1)]
    received = wire.Received(ids=ids[:-1])
    assert wire.CLIENT_DECODER.decode(wire.encode(received)) == received
    accepted = wire.Accepted(id=ids[0], ids=ids[1:])
    assert wire.SERVER_DECODER.decode(wire.encode(accepted)) == accepted
    with pytest.raises(WireError):
        wire.CLIENT_DECODER.decode(wire.encode(wire.Received(ids=ids)))


def test_a_trailing_newline_does_not_pass_for_a_fingerprint() -> None:
    """`$` matches before a final newline: "FP\\n" would be a second spelling of FP."""
    for sender, to in ((FP_A + "\n", [FP_B]), (FP_A, [FP_B + "\n"]), (FP_A[1:] + "\n", [FP_B])):
        raw = msgspec.msgpack.encode({"k": "send", "id": MID, "sender": sender, "to": to})
        with pytest.raises(WireError):
            wire.CLIENT_DECODER.decode(raw)


def test_header_payload_round_trip() -> None:
    h = wire.Header(ts_ms=1, serial=2, checksum=wire.sha256(b"p"), mime="image/png", epoch=4)
    assert wire.HEADER_PAYLOAD_DECODER.decode(wire.encode((h, b"p"))) == (h, b"p")


def test_channels_do_not_cross() -> None:
    """A server message is not a client message: a client cannot send a Deliver to a broker."""
    with pytest.raises(WireError):
        wire.CLIENT_DECODER.decode(wire.encode(wire.Deliver(id=MID, sender=FP_A, to=[], ts=0)))


@pytest.mark.parametrize(
    "bad",
    [
        {"k": "send", "id": MID, "sender": "a" * 40, "to": []},  # lower-case fingerprint
        {"k": "send", "id": MID, "sender": FP_A, "to": [FP_B, "G" * 40]},  # not hex
        {"k": "send", "id": MID, "sender": FP_A, "to": [FP_B[:39] + "\n"]},
        {"k": "send", "id": MID, "sender": FP_A + "0", "to": [FP_B]},  # one digit too many
        wire.Send(id=b"short", sender=FP_A, to=[FP_B]),
        wire.Send(id=MID, sender=FP_A, to=[FP_B] * (wire.MAX_RECIPIENTS + 1)),
        wire.Send(id=MID, sender=FP_A, to=[FP_B], ttl=65),
        wire.Challenge(nonce=b"short", broker=FP_A, expires=0, key=b""),
    ],
    ids=[
        "lowercase-fp",
        "not-hex",
        "newline",
        "long-fp",
        "short-id",
        "too-many-recipients",
        "ttl",
        "short-nonce",
    ],  # fmt: skip
)
def test_limits_in_the_types(bad: msgspec.Struct | dict) -> None:
    decoder = wire.SERVER_DECODER if isinstance(bad, wire.Challenge) else wire.CLIENT_DECODER
    with pytest.raises(WireError):
        decoder.decode(msgspec.msgpack.encode(bad))


def test_a_send_with_a_bad_fingerprint_cannot_be_made_either() -> None:
    with pytest.raises(ValueError, match="hexadecimal"):
        wire.Send(id=MID, sender=FP_A, to=["b" * 40])


def test_oversized_input_refused_before_parsing() -> None:
    with pytest.raises(WireError, match="limit"):
        wire.CLIENT_DECODER.decode(b"\x00" * (wire.MAX_ENVELOPE + 1))


def test_unknown_fields_from_newer_peers_are_tolerated() -> None:
    raw = msgspec.msgpack.encode({"k": "accepted", "id": MID, "future": [1, 2, 3]})
    assert wire.SERVER_DECODER.decode(raw) == wire.Accepted(id=MID)


def test_msg_ids_are_time_ordered_and_unique() -> None:
    ids = [wire.new_msg_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert [wire.msg_id_time_ms(i) for i in ids] == sorted(wire.msg_id_time_ms(i) for i in ids)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512), which=st.sampled_from(range(len(ALL_DECODERS))))
def test_random_bytes_raise_only_wire_error(data: bytes, which: int) -> None:
    try:
        ALL_DECODERS[which].decode(data)
    except WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    obj=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.binary()
        | st.text(),
        lambda kids: (
            st.lists(kids, max_size=4)
            | st.dictionaries(st.sampled_from(["k", "v", "id", "to", "x"]), kids, max_size=4)
        ),
        max_leaves=12,
    ),
    which=st.sampled_from(range(len(ALL_DECODERS))),
)
def test_random_msgpack_raises_only_wire_error(obj: object, which: int) -> None:
    """Well-formed msgpack of the wrong shape is the likelier attack than random bytes."""
    try:
        ALL_DECODERS[which].decode(msgspec.msgpack.encode(obj))
    except WireError:
        pass


def test_a_send_without_an_id_is_refused_not_read_as_id_zero() -> None:
    raw = msgspec.msgpack.encode({"k": "send", "sender": FP_A, "to": [FP_B]})
    with pytest.raises(WireError, match="id"):
        wire.CLIENT_DECODER.decode(raw)
    with pytest.raises(TypeError):
        wire.Send(sender=FP_A, to=[FP_B])  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("decoder", "fields"),
    [
        (wire.CLIENT_DECODER, {"k": "send", "id": MID, "to": [FP_B]}),  # no sender
        (wire.SERVER_DECODER, {"k": "deliver", "id": MID, "sender": FP_A, "to": []}),  # no ts
        (wire.SERVER_DECODER, {"k": "deliver", "sender": FP_A, "to": [], "ts": 1}),  # no id
        (wire.SERVER_DECODER, {"k": "accepted"}),
        (wire.SERVER_DECODER, {"k": "welcome", "fingerprint": FP_A, "broker": FP_B}),
        (wire.SERVER_DECODER, {"k": "challenge", "broker": FP_A, "expires": 1, "key": b""}),
        (wire.SERVER_DECODER, {"k": "error", "message": "no code"}),
        (wire.PEER_DECODER, {"k": "forward-ack", "token": b""}),
        (wire.PEER_DECODER, {"k": "forward", "id": MID, "sender": FP_A, "to": []}),
    ],
    ids=[
        "send",
        "deliver-ts",
        "deliver-id",
        "accepted",
        "welcome",
        "challenge",
        "error",
        "forward-ack",
        "forward",
    ],  # fmt: skip
)
def test_core_fields_are_required(decoder: wire._Decoder, fields: dict) -> None:
    with pytest.raises(WireError):
        decoder.decode(msgspec.msgpack.encode(fields))


@pytest.mark.parametrize(
    "fields",
    [
        {"k": "send", "v": 2, "id": MID, "sender": FP_A, "to": [FP_B]},  # well-formed
        {"k": "send", "v": 7, "id": "a newer shape", "to": 3},  # not even today's Send
        {"k": "ping", "v": 0, "t": 1},
    ],
    ids=["v2-send", "v7-other-shape", "v0-ping"],
)
def test_an_unknown_protocol_version_is_refused_with_a_typed_error(fields: dict) -> None:
    with pytest.raises(wire.VersionError, match="protocol version"):
        wire.CLIENT_DECODER.decode(msgspec.msgpack.encode(fields))
    assert issubclass(wire.VersionError, WireError)


def test_the_current_version_is_implied_when_omitted() -> None:
    raw = msgspec.msgpack.encode({"k": "ping", "t": 1})
    assert wire.CLIENT_DECODER.decode(raw) == wire.Ping(t=1)
    assert wire.CLIENT_DECODER.decode(msgspec.msgpack.encode({"k": "ping", "v": 1, "t": 1}))


@pytest.mark.parametrize("code", wire.ERROR_CODES)
def test_every_error_code_round_trips(code: wire.ErrorCode) -> None:
    err = wire.Error(code=code, message="m", ref=MID)
    assert wire.SERVER_DECODER.decode(wire.encode(err)) == err
    assert wire.PEER_DECODER.decode(wire.encode(err)) == err


def test_an_error_code_outside_the_list_is_refused() -> None:
    with pytest.raises(WireError):
        wire.SERVER_DECODER.decode(msgspec.msgpack.encode({"k": "error", "code": "made-up"}))


def test_every_code_the_broker_emits_is_listed() -> None:
    """The broker's sources name only codes of `ErrorCode` or, for media, `MediaErrorCode`
    (a new one is added there first)."""
    import re
    from pathlib import Path

    broker = Path(__file__).resolve().parents[2] / "broker"
    pattern = re.compile(r'(?:_error|_garbage)\(\s*\w+,\s*"([a-z-]+)"|code="([a-z-]+)"')
    found = {a or b for f in broker.glob("*.py") for a, b in pattern.findall(f.read_text())}
    known = set(wire.ERROR_CODES) | set(wire.MEDIA_ERROR_CODES)
    assert found and found <= known, found - known


def test_media_frames_round_trip() -> None:
    sha = bytes(range(32))
    for msg in (
        wire.BlobOffer(sha256=sha),
        wire.ChunkPut(sha256=sha, index=3),
        wire.ChunkGet(chunk=sha, index=2, holder="A" * 40),
    ):
        assert wire.CLIENT_DECODER.decode(wire.encode(msg)) == msg
    for reply in (
        wire.BlobHave(sha256=sha, missing=[0, 5]),
        wire.ChunkOk(sha256=sha, index=1, complete=True),
        wire.ChunkData(chunk=sha, index=4),
        wire.BlobError(code="quota", message="m", sha256=sha),
    ):
        assert wire.SERVER_DECODER.decode(wire.encode(reply)) == reply
    want = wire.ChunkWant(chunk=sha, origin="A" * 40, target="B" * 40)
    assert wire.PEER_DECODER.decode(wire.encode(want)) == want
    with pytest.raises(WireError):  # a chunk index past any manifest
        wire.CLIENT_DECODER.decode(msgspec.msgpack.encode({"k": "chunk-put", "sha256": sha,
                                                           "index": wire.MAX_CHUNKS}))  # fmt: skip
