"""Every message ω IM puts on a wire, as tagged msgspec Structs, with one decoder per channel.

A ZeroMQ message is frames: ``[envelope, body?]``. The envelope is msgpack of one of the
Structs below; brokers read it. The body is opaque to brokers: a `SealedBody` (text, encrypted
with the conversation's session key) or a `MediaBody` (signed, never encrypted).

Tags are set explicitly so a class rename never changes the wire. Core fields have no
defaults (keyword-only): a `Send` without an `id` is refused, never read as id 0. New fields
get defaults; decoders ignore unknown fields, so newer peers can talk to older ones. A message
whose `v` is not `PROTOCOL` is refused with a `VersionError`, whatever else it holds.

Channels and who sends what:

- client → broker (`CLIENT_DECODER`): Hello, Login, Send, Received, Ping, Bye; for media
  BlobOffer, ChunkPut, ChunkGet
- broker → client (`SERVER_DECODER`): Challenge, Welcome, Accepted, Deliver, Deliveries (to a
  client that asked for them), Error, Pong; for media BlobHave, ChunkOk, ChunkData, BlobError
- broker ↔ broker (`PEER_DECODER`): PeerHello, PeerBye, Heartbeat, HeartbeatAck, Forward,
  ForwardAck, PeerBatch (of forwards and acks), SnapshotRequest, Snapshot, Error, ChunkWant,
  ChunkFound
- gossip PUB/SUB (`GOSSIP_DECODER`): SignedAdvert, PresenceUpdate
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Annotated, Any, Literal, Union, get_args

import msgspec
from msgspec import Meta, Struct

from .errors import WireError

PROTOCOL = 1

# -- limits that live in the types -----------------------------------------------------------

MAX_RECIPIENTS = 256
MAX_BODY = 1 << 20  # one text or inline media body; bigger files are chunked by the client
MAX_BODY_FRAME = MAX_BODY + (64 << 10)  # a Send's body frame: the body, its signature and fields
MAX_ENVELOPE = 16 << 10
MAX_FRAMES = 2

Fingerprint = Annotated[str, Meta(pattern=r"^[0-9A-F]{40}\Z")]
DeviceId = Annotated[str, Meta(pattern=r"^[0-9a-f]{16}\Z")]
MsgId = Annotated[bytes, Meta(min_length=16, max_length=16)]
GroupId = Annotated[bytes, Meta(min_length=16, max_length=16)]
Nonce = Annotated[bytes, Meta(min_length=32, max_length=32)]
Sha256 = Annotated[bytes, Meta(min_length=32, max_length=32)]
Text = Annotated[str, Meta(max_length=1024)]
Mime = Annotated[str, Meta(pattern=r"^[a-z0-9.+-]+/[a-zA-Z0-9.+-]+\Z", max_length=100)]
Epoch = Annotated[int, Meta(ge=0, lt=1 << 32)]
Hops = Annotated[int, Meta(ge=0, le=64)]
U64 = Annotated[int, Meta(ge=0, le=(1 << 63) - 1)]
Recipients = Annotated[list[Fingerprint], Meta(max_length=MAX_RECIPIENTS)]
# In forwards, fingerprints are only sized here: the broker that delivers checks them
# (`is_fingerprint`), relays pass them on. A regex per field was 2.8 µs of a forward's 3.6 µs
# decode, paid at every hop (msgspec runs `re.search` for each).
HopFingerprint = Annotated[str, Meta(min_length=40, max_length=40)]
HopRecipients = Annotated[list[HopFingerprint], Meta(max_length=MAX_RECIPIENTS)]
BrokerUrl = Annotated[str, Meta(max_length=256)]
MAX_WELCOME_BROKERS = 64
_HEX_UPPER = frozenset("0123456789ABCDEF")
_HEX_RUN = re.compile(r"[0-9A-F]*\Z")  # fingerprints of a known length, checked in one pass


def is_fingerprint(text: str) -> bool:
    """What `Fingerprint` accepts: 40 upper-case hex digits."""
    return len(text) == 40 and _HEX_UPPER.issuperset(text)


DEFAULT_TTL = 16
# a broker purges (收回) only messages it accepted this recently: the longest window a group
# may set (tits/client/model.py UNSEND_WINDOW_MAX_S; a broker knows no group's rules)
PURGE_WINDOW_S = 7 * 24 * 3600


def new_msg_id() -> bytes:
    """128-bit, time-ordered: 48 bits of milliseconds, then 80 random bits."""
    return (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)


def msg_id_time_ms(msg_id: bytes) -> int:
    return int.from_bytes(msg_id[:6], "big")


def new_group_id() -> bytes:
    return os.urandom(16)


class _Msg(Struct, tag_field="k", forbid_unknown_fields=False, omit_defaults=True, kw_only=True):
    """Keyword-only, so core fields need no defaults. (msgspec applies `kw_only` to the fields
    a class defines itself: a kind that puts a required field after an optional one says
    `kw_only=True` again.)"""

    v: int = PROTOCOL


class VersionError(WireError):
    """A message of another protocol version: refused as a whole (`Error(code="version")`)."""


# Every code a broker puts in an `Error` (to clients and to peers). A client matches on these,
# so a new one is added here first.
ErrorCode = Literal[
    "bad-frame",  # undecodable, or the wrong frames for its kind
    "bad-kind",  # a message this port does not take
    "bad-request",  # well-formed but meaningless (a send with no recipients)
    "version",  # another protocol version
    "rate-limited",  # too many messages or logins: slow down
    "busy",  # too many logins waiting for GnuPG: try again shortly
    "not-logged-in",  # log in first (a broker restart logs everyone out)
    "no-challenge",  # a login that answers no challenge
    "login-refused",  # the login does not check out
    "login-unavailable",  # the broker could not check a login (its own trouble): try again
    "forged-sender",  # a send whose sender is not the logged-in user
    "id-conflict",  # another sender's message already has this id
    "too-big",  # body × recipients over the limit
    "storage",  # the broker could not store it: retry
    "dropped",  # too many bad frames: this key is dropped
    "route-in-use",  # another live connection holds this routing id
    "not-admitted",  # a peer link without (valid) admission
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)


# -- client → broker ---------------------------------------------------------------------------


class Hello(_Msg, tag="hello"):
    """Ask for a login challenge."""


class Login(_Msg, tag="login"):
    """`blob`: OpenPGP message, signed by the user and encrypted to the broker (see login.py).

    `fingerprint` names the user who claims to have signed it, so the broker can find the key
    before decrypting; `pubkey` may carry that user's armored public key for a broker that
    cannot reach a key server (used only if its fingerprint is exactly `fingerprint`)."""

    blob: Annotated[bytes, Meta(max_length=64 << 10)]
    fingerprint: Fingerprint
    pubkey: Annotated[bytes, Meta(max_length=32 << 10)] = b""
    listed: bool = True  # False: status pages show this user's fingerprint but not the name
    batch: bool = False  # this client takes `Deliveries` (many deliveries in one message)


class Send(_Msg, tag="send"):
    """A message from the logged-in user; the body frame follows.

    `sender` and `to` are sized by the types and their digits checked once for all of them
    in `__post_init__` (msgspec reports its ValueError as a ValidationError, like a pattern's):
    a pattern per field runs `re.search` for each, 7 µs of a group send's decode at 10
    recipients, on the broker's loop."""

    id: MsgId
    sender: HopFingerprint
    to: HopRecipients
    group: GroupId | None = None
    ttl: Hops = DEFAULT_TTL
    # 收回: this message takes back the sender's message `purge` (its body, sealed, says so to
    # the clients); brokers drop that message's copies not yet delivered (see broker/purge.py)
    purge: MsgId | None = None

    def __post_init__(self) -> None:
        if _HEX_RUN.match(self.sender + "".join(self.to)) is None:
            raise ValueError("a fingerprint is 40 hexadecimal digits in capitals")


RECEIVED_MAX = 800  # ids in a `Received` or `Accepted`: they must fit in MAX_ENVELOPE (18 B each)


class Received(_Msg, tag="received"):
    """This device has stored these deliveries; the broker may advance its cursor."""

    ids: Annotated[list[MsgId], Meta(max_length=RECEIVED_MAX)]


class Ping(_Msg, tag="ping"):
    t: U64


class Bye(_Msg, tag="bye"):
    pass


# -- broker → client ---------------------------------------------------------------------------


class Challenge(_Msg, tag="challenge"):
    """A fresh login nonce. `key` is the broker's armored OpenPGP public key: it arrives over
    the CURVE link the client opened with the server key from the broker URL, and the client
    still checks that its fingerprint is `broker`. `expires` is in Unix milliseconds."""

    nonce: Nonce
    broker: Fingerprint
    expires: U64
    key: Annotated[bytes, Meta(max_length=32 << 10)]


class Gap(Struct, forbid_unknown_fields=False, omit_defaults=True, kw_only=True):
    """What the broker's mailbox retention took before this device came back for it (times in
    Unix seconds). `missed` counts the messages for this device pruned here unacknowledged;
    0 with `seen` set: away longer than the retention, count not known (mail held at another
    broker of the cloud may have gone there)."""

    retention_s: U64  # the broker's max_age_s: anything older is gone
    missed: U64 = 0
    oldest: U64 = 0  # the first and last of the messages pruned
    newest: U64 = 0
    seen: U64 = 0  # when this device last logged in or took mail here (0: not known)


class Welcome(_Msg, tag="welcome"):
    """Logged in. `pending`: how many stored messages this device has not yet acknowledged
    (they follow as `Deliver`s, oldest first), so `tits recv` knows when it has drained."""

    fingerprint: Fingerprint
    device: DeviceId
    broker: Fingerprint
    pending: U64
    # in a cloud, mail held at other brokers follows this login within moments (presence
    # gossip, then forwarding): a client draining its mailbox should listen this much longer
    settle_ms: U64 = 0
    # the client URLs (tcp://HOST:PORT#KEYHEX) of the cloud's brokers this one knows, itself
    # first: where a client whose broker stops answering tries next
    brokers: Annotated[list[BrokerUrl], Meta(max_length=MAX_WELCOME_BROKERS)] = []
    # retention took mail this device had not taken (older clients ignore the field)
    gap: Gap | None = None


class Accepted(_Msg, tag="accepted"):
    """The message `id` is durably stored (or taken by the next hop). `ids` carries more ids
    accepted in the same group commit (one frame for a batch)."""

    id: MsgId
    ids: Annotated[list[MsgId], Meta(max_length=RECEIVED_MAX)] = []


class Deliver(_Msg, tag="deliver", kw_only=True):
    """A message for this user; the body frame follows. `sender` is what the origin broker
    saw logged in; the body's own signature is what the receiving client trusts."""

    id: MsgId
    sender: Fingerprint
    to: Recipients
    group: GroupId | None = None
    ts: U64  # when the broker accepted it, Unix milliseconds
    # the sender's device it came from. The sender's other devices are sent it too (with
    # `sender` and `to` as they were): a `Deliver` whose sender is you is your own message.
    device: DeviceId | None = None
    purge: MsgId | None = None  # the `Send`'s: a relay device's forward carries it on


BATCH_DELIVERIES = 64  # deliveries in one `Deliveries` at most
BATCH_ENVELOPES = 12 << 10  # ... and bytes of their envelopes (the frame is an envelope)


class Deliveries(_Msg, tag="deliveries"):
    """Many deliveries to one device in one message, for a client whose `Login` said `batch`:
    frames ``[Deliveries, body 1, ..., body n]``, `items[i]` the envelope of body i+1. A group
    message fans out to many devices, and a frame per delivery cost the broker two sends and
    two CURVE boxes each."""

    items: Annotated[list[Deliver], Meta(max_length=BATCH_DELIVERIES)]


class Error(_Msg, tag="error"):
    """A typed refusal. `ref` names the message it is about, when there is one."""

    code: ErrorCode
    message: Text = ""
    ref: MsgId | None = None


class Pong(_Msg, tag="pong"):
    """`user`: who this connection is logged in as (None: nobody; log in again)."""

    t: U64
    user: Fingerprint | None = None


# -- broker ↔ broker ---------------------------------------------------------------------------


class PeerHello(_Msg, tag="peer-hello"):
    """First frame on a peer link, both ways. `proof` is HMAC-SHA256 under the cloud's join
    secret over the sender's broker id and the CURVE key its link authenticated with, so only
    brokers holding the secret are admitted (see broker/admission.py)."""

    broker: Fingerprint = "0" * 40
    address: Annotated[str, Meta(max_length=256)] = ""  # peer URL, tcp://HOST:PORT#CURVEHEX
    pub: Annotated[str, Meta(max_length=256)] = ""  # gossip PUB endpoint, same form
    http: Annotated[str, Meta(max_length=256)] = ""
    proof: Annotated[bytes, Meta(max_length=64)] = b""
    media: bool = False  # a direct media connection, not a link (broker/medialinks.py)


class Heartbeat(_Msg, tag="heartbeat"):
    t: U64 = 0


class HeartbeatAck(_Msg, tag="heartbeat-ack"):
    t: U64 = 0


class Forward(_Msg, tag="forward", kw_only=True):
    """A client's `Send`, carried between brokers; the body frame follows."""

    id: MsgId
    origin: HopFingerprint  # broker where the sender logged in
    sender: HopFingerprint
    to: HopRecipients
    group: GroupId | None = None
    target: HopFingerprint  # broker that should deliver
    hops: Hops = DEFAULT_TTL
    deliver_to: HopRecipients  # the users of `to` (or the sender) to deliver to at `target`
    ts: U64  # when the origin broker accepted it, Unix milliseconds
    device: Annotated[str, Meta(max_length=16)] = ""  # the sending device: not sent it back
    token: Annotated[bytes, Meta(max_length=128)] = b""  # echoed in the ForwardAck
    # the `Send`'s purge, sized only (like the fingerprints): checked where it is applied
    purge: Annotated[bytes, Meta(max_length=16)] | None = None


class ForwardAck(_Msg, tag="forward-ack"):
    """The previous hop may forget the forward: this hop stored it durably."""

    id: MsgId
    token: Annotated[bytes, Meta(max_length=128)]


BATCH_MAX = 1024  # forwards (and acks) in one `PeerBatch`
BATCH_BYTES = 1 << 20  # a batch stops growing past this (its one item may be bigger: MAX_BODY)


class PeerBatch(_Msg, tag="batch"):
    """Many forwards and acknowledgements in one peer frame: what one pass of a broker's
    loop has for that peer. A frame per forward cost each relay four socket calls and two
    polls per message; `bodies[i]` is the body of `fwds[i]`."""

    fwds: Annotated[list[Forward], Meta(max_length=BATCH_MAX)] = []
    bodies: Annotated[list[bytes], Meta(max_length=BATCH_MAX)] = []
    acks: Annotated[list[ForwardAck], Meta(max_length=BATCH_MAX)] = []


class PeerBye(_Msg, tag="peer-bye"):
    """The link is being closed on purpose (a graceful leave, or a seed link not kept)."""


class SnapshotRequest(_Msg, tag="snapshot-request"):
    pass


class Link(Struct, forbid_unknown_fields=False, array_like=True):
    peer: Fingerprint
    cost_us: Annotated[int, Meta(ge=1, le=60_000_000)]  # what routing uses (router/)
    rtt_us: Annotated[int, Meta(ge=0, le=60_000_000)] = 0  # measured, for people to read


class Advert(Struct, forbid_unknown_fields=False):
    """One broker's link-state advertisement: who it is, where, and its links with costs."""

    broker: Fingerprint
    address: Annotated[str, Meta(max_length=512)]
    seq: U64
    links: Annotated[list[Link], Meta(max_length=1024)] = []
    alive: bool = True  # False: the broker said goodbye (a graceful leave)
    http: Annotated[str, Meta(max_length=256)] = ""  # its status page
    client: Annotated[str, Meta(max_length=256)] = ""  # the URL clients pass as --broker
    pub: Annotated[str, Meta(max_length=256)] = ""  # its gossip PUB endpoint
    name: Annotated[str, Meta(max_length=64)] = ""  # what its operator calls it


class SignedAdvert(_Msg, tag="advert"):
    """`advert` is msgpack of an `Advert`, signed (Ed25519, 64 bytes) by the broker's device
    key; `cert`/`cert_sig` certify that key with the broker's GnuPG identity, whose armored
    public key is `key` (its fingerprint must be the advert's broker id). GnuPG is needed once
    per broker, so flooding adverts stays cheap."""

    advert: Annotated[bytes, Meta(max_length=64 << 10)] = b""
    signature: Annotated[bytes, Meta(max_length=4096)] = b""
    device: Annotated[str, Meta(max_length=16)] = ""
    cert: Annotated[bytes, Meta(max_length=4096)] = b""
    cert_sig: Annotated[bytes, Meta(max_length=8192)] = b""
    key: Annotated[bytes, Meta(max_length=32 << 10)] = b""


class PresenceEntry(Struct, forbid_unknown_fields=False, array_like=True):
    fingerprint: Fingerprint
    devices: Annotated[list[DeviceId], Meta(max_length=64)]
    name: Text = ""


class Presence(Struct, forbid_unknown_fields=False):
    """Who is online at one broker, one `shard` of its list (the users whose fingerprint
    starts with that hex digit), replaced as a unit (newest `seq` wins)."""

    broker: Fingerprint
    seq: U64
    users: Annotated[list[PresenceEntry], Meta(max_length=100_000)] = []
    shard: Annotated[int, Meta(ge=0, le=15)] = 0


class PresenceUpdate(_Msg, tag="presence"):
    """`presence` is msgpack of a `Presence`, signed by the broker's device key like adverts."""

    presence: Annotated[bytes, Meta(max_length=8 << 20)] = b""
    signature: Annotated[bytes, Meta(max_length=64)] = b""
    device: Annotated[str, Meta(max_length=16)] = ""


class Snapshot(_Msg, tag="snapshot"):
    """The answer to a SnapshotRequest: every advert and presence list the sender holds, in
    as many of these (pages) as it takes."""

    adverts: Annotated[list[SignedAdvert], Meta(max_length=4096)] = []
    seq: U64 = 0
    presence: Annotated[list[PresenceUpdate], Meta(max_length=4096)] = []


# -- media: content-addressed, chunked, signed, never encrypted (tits/media/, broker/blobs.py) --

# 4 MiB, not 1: a chunk costs each of sender, broker and receiver a fixed price (a file, a
# database row, a round trip, Python per frame) on top of its bytes; one broker end to end
# went 88 → 112 MB/s median (3 interleaved rounds, the same 8 MiB in flight up).
CHUNK_SIZE = 4 << 20  # every chunk but a file's last is this long
MAX_CHUNK_FRAME = CHUNK_SIZE + (64 << 10)  # the biggest frame a client sends: a chunk, slack
MAX_CHUNKS = 2048  # a manifest names at most this many chunks (8 GiB at CHUNK_SIZE)
MAX_MEDIA_SIZE = MAX_CHUNKS * CHUNK_SIZE
MAX_THUMB = 48 << 10
MAX_MANIFEST = MAX_CHUNKS * 34 + MAX_THUMB + (8 << 10)  # the chunk list, a thumbnail, fields
MANIFEST_MIME = "application/x-tits-media"  # a media message's payload is a `Manifest`
MediaName = Annotated[str, Meta(max_length=255)]


class Manifest(Struct, forbid_unknown_fields=False, omit_defaults=True, kw_only=True):
    """What a media message carries instead of the bytes: the file's SHA-256 and size, the
    SHA-256 of each `chunk_size` piece, the MIME type sniffed from the content, the name
    the sender gave it (made safe again by every receiver) and, for pictures, a small
    thumbnail. It is the payload of a `MediaBody`, so the sender's device key signs it
    together with the envelope (`session.sign_media`): a receiver checks each chunk against
    it, and the whole file against `sha256`, whatever broker served the bytes.

    `holder` is the broker the sender uploaded to: a receiver's broker that lacks a chunk
    fetches it from there along the cloud's routes."""

    sha256: Sha256
    size: Annotated[int, Meta(ge=0, le=MAX_MEDIA_SIZE)]
    chunk_size: Annotated[int, Meta(ge=4096, le=CHUNK_SIZE)] = CHUNK_SIZE
    chunks: Annotated[list[Sha256], Meta(max_length=MAX_CHUNKS)]
    mime: Mime = "application/octet-stream"
    name: MediaName = ""
    thumb: Annotated[bytes, Meta(max_length=MAX_THUMB)] = b""
    thumb_mime: Annotated[str, Meta(max_length=100)] = ""
    width: Annotated[int, Meta(ge=0, le=1 << 20)] = 0
    height: Annotated[int, Meta(ge=0, le=1 << 20)] = 0
    holder: Annotated[str, Meta(max_length=40)] = ""
    sticker: Annotated[str, Meta(max_length=200)] = ""  # "PACK/SHORTCODE" for a sticker


MediaErrorCode = Literal[
    "bad-manifest",  # undecodable, or its chunk list does not fit its size
    "too-big",  # over the broker's size limit for one file
    "too-many-chunks",  # over the broker's chunk-count limit
    "quota",  # the user's stored media would pass their quota
    "unknown-manifest",  # a chunk for a file never offered here
    "bad-chunk",  # the bytes do not match the chunk's hash (or its length)
    "not-found",  # no such chunk here, and none found in the cloud (yet): try again later
    "storage",  # the broker could not write it: retry
    "busy",  # too many chunks waiting to be stored or read here: try again shortly
    "rate-limited",  # over the broker's media bytes per second for this user: slow down
]
MEDIA_ERROR_CODES: tuple[str, ...] = get_args(MediaErrorCode)


class BlobOffer(_Msg, tag="blob-offer"):
    """Client → broker: "I will upload this file", the `Manifest` in the body frame. The
    answer is a `BlobHave` listing the chunks the broker still lacks (none: nothing to send,
    the same sticker a hundredth time), so a broken upload resumes where it stopped."""

    sha256: Sha256


class ChunkPut(_Msg, tag="chunk-put"):
    """Client → broker: chunk `index` of an offered file, its bytes in the body frame."""

    sha256: Sha256
    index: Annotated[int, Meta(ge=0, lt=MAX_CHUNKS)]


class ChunkGet(_Msg, tag="chunk-get"):
    """Client → broker: send me the chunk whose SHA-256 is `chunk`; `index` is echoed.
    `holder` (a broker id) is where to look in the cloud if this broker lacks it, then the
    brokers where `sender` is online."""

    chunk: Sha256
    index: Annotated[int, Meta(ge=0, lt=MAX_CHUNKS)] = 0
    holder: Annotated[str, Meta(max_length=40)] = ""
    # the file's sender: where the cloud's presence says they are logged in is asked when
    # the holder cannot be reached or lacks it (a sender who failed over mid-upload)
    sender: Annotated[str, Meta(max_length=40)] = ""


class BlobHave(_Msg, tag="blob-have"):
    """Broker → client: the chunks of `sha256` it still lacks (all stored: `missing` empty)."""

    sha256: Sha256
    missing: Annotated[list[int], Meta(max_length=MAX_CHUNKS)]


class ChunkOk(_Msg, tag="chunk-ok"):
    """Broker → client: chunk `index` of `sha256` is stored; `complete`: all of it is."""

    sha256: Sha256
    index: Annotated[int, Meta(ge=0, lt=MAX_CHUNKS)]
    complete: bool = False


class ChunkData(_Msg, tag="chunk"):
    """Broker → client: the chunk `chunk` (asked as `index`), its bytes in the body frame."""

    chunk: Sha256
    index: Annotated[int, Meta(ge=0, lt=MAX_CHUNKS)] = 0


class BlobError(_Msg, tag="blob-error"):
    """Broker → client: a typed refusal about one file (`sha256`) or one chunk (`chunk`)."""

    code: MediaErrorCode
    message: Text = ""
    sha256: Sha256 | None = None
    chunk: Sha256 | None = None
    index: Annotated[int, Meta(ge=0, lt=MAX_CHUNKS)] = 0


class ChunkWant(_Msg, tag="chunk-want"):
    """Broker → broker, hop by hop toward `target` (the manifest's holder): `origin` lacks
    the chunk `chunk`. Any broker on the way that has it answers instead."""

    chunk: Sha256
    origin: HopFingerprint
    target: HopFingerprint
    hops: Hops = DEFAULT_TTL


class ChunkFound(_Msg, tag="chunk-found"):
    """Broker → broker, hop by hop back toward `to`: the chunk's bytes in the body frame
    (none, and `missing`, when the holder does not have it either)."""

    chunk: Sha256
    to: HopFingerprint
    hops: Hops = DEFAULT_TTL
    missing: bool = False


ClientMsg = Union[Hello, Login, Send, Received, Ping, Bye, BlobOffer, ChunkPut, ChunkGet]
ServerMsg = Union[
    Challenge,
    Welcome,
    Accepted,
    Deliver,
    Deliveries,
    Error,
    Pong,
    BlobHave,
    ChunkOk,
    ChunkData,
    BlobError,
]
PeerMsg = Union[
    PeerHello,
    PeerBye,
    Heartbeat,
    HeartbeatAck,
    Forward,
    ForwardAck,
    PeerBatch,
    SnapshotRequest,
    Snapshot,
    Error,
    ChunkWant,
    ChunkFound,
]
GossipMsg = Union[SignedAdvert, PresenceUpdate]

# -- bodies (client to client; brokers never read these) ------------------------------------


class Header(Struct, forbid_unknown_fields=False, omit_defaults=True):
    """The client-to-client header. In a sealed body it is encrypted with the payload."""

    ts_ms: U64
    serial: U64
    checksum: Sha256  # SHA-256 of the payload
    mime: Mime = "text/plain"
    lifetime_s: U64 = 0  # display lifetime; 0 = keep
    group: GroupId | None = None
    epoch: Epoch = 0
    reply_to: MsgId | None = None
    # @mentions (group members) and @All: signed with the text, so only the sender names them
    mentions: Annotated[list[Fingerprint], Meta(max_length=MAX_RECIPIENTS)] = []
    mention_all: bool = False


class Signed(Struct, forbid_unknown_fields=False):
    """Header and payload signed by a device key: `signature` covers `header_payload`."""

    header_payload: bytes  # msgpack of [Header, payload]
    device: DeviceId
    signature: Annotated[bytes, Meta(min_length=64, max_length=64)]


class SealedBody(Struct, tag="sealed", tag_field="b", forbid_unknown_fields=False):
    """A text: `Signed`, encrypted with the session key of `epoch` (AEAD, envelope as AD)."""

    epoch: Epoch
    alg: Annotated[str, Meta(pattern=r"^(aes256gcm|chacha20poly1305)\Z")]
    nonce: Annotated[bytes, Meta(min_length=12, max_length=12)]
    ciphertext: Annotated[bytes, Meta(max_length=MAX_BODY)]
    key: Annotated[list[bytes], Meta(max_length=MAX_RECIPIENTS)] = []  # wrapped keys, if any


class MediaBody(Struct, tag="media", tag_field="b", forbid_unknown_fields=False):
    """Media: signed, never encrypted; named by the SHA-256 of its content."""

    signed: Signed
    sha256: Sha256


class KeyBody(Struct, tag="key", tag_field="b", forbid_unknown_fields=False):
    """A session key for one member, wrapped with GnuPG (an ASCII-armored OpenPGP message)."""

    group: GroupId
    epoch: Epoch
    wrapped: Annotated[bytes, Meta(max_length=16 << 10)]
    secure: bool = False
    # the sending device's certificate and the identity's armored signature over it, so the
    # member can check the texts that follow without asking a key server
    cert: Annotated[bytes, Meta(max_length=4096)] = b""
    cert_sig: Annotated[bytes, Meta(max_length=8192)] = b""
    # the device key's proof of possession (tits/device.py): without it anyone could pass
    # off someone else's device public key as a device of their own
    cert_proof: Annotated[bytes, Meta(max_length=64)] = b""


class GroupBody(Struct, tag="group", tag_field="b", forbid_unknown_fields=False):
    """A group's membership log and, for its members, the session key of the new epoch.

    `bundle` is one OpenPGP message, signed by the member who changed the group and encrypted
    to every recipient at once (plain `gpg --decrypt` opens it: JSON of a `GroupBundle`, see
    tits/client/groups.py), so neither the group's name nor its members reach a broker."""

    group: GroupId
    bundle: Annotated[bytes, Meta(max_length=MAX_BODY)]
    cert: Annotated[bytes, Meta(max_length=4096)] = b""
    cert_sig: Annotated[bytes, Meta(max_length=8192)] = b""
    cert_proof: Annotated[bytes, Meta(max_length=64)] = b""  # see KeyBody


class HistoryItem(Struct, forbid_unknown_fields=False, array_like=True):
    """An earlier message of a group, as its members received it: the envelope fields its
    body is bound to and the body itself, still sealed and signed by its own sender."""

    id: MsgId
    sender: Fingerprint
    to: Recipients
    ts: U64
    body: Annotated[bytes, Meta(max_length=MAX_BODY)]


class HistoryBody(Struct, tag="history", tag_field="b", forbid_unknown_fields=False):
    """Earlier messages passed to a newcomer (`group invite --share-history`); the keys of
    their epochs come in the `GroupBody` of the invitation."""

    group: GroupId
    items: Annotated[list[HistoryItem], Meta(max_length=4096)]


Body = Union[SealedBody, MediaBody, KeyBody, GroupBody, HistoryBody]

# -- encoders and decoders (built once) -------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode


class _Version(Struct, forbid_unknown_fields=False):
    v: int = PROTOCOL


_version = msgspec.msgpack.Decoder(_Version)


def _other_version(data: bytes | memoryview) -> int | None:
    """The `v` of a message that failed to decode, if it names another protocol (a newer
    message may well break today's types: the version is what to tell its sender)."""
    try:
        v = _version.decode(data).v
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, RecursionError):
        return None
    return None if v == PROTOCOL else v


class _Decoder:
    """A msgspec decoder whose every failure is a `WireError` (a `VersionError` for a message
    of another protocol version, when `versioned`)."""

    def __init__(self, type_: Any, name: str, limit: int, versioned: bool = True) -> None:
        self._dec = msgspec.msgpack.Decoder(type_)
        self.name = name
        self.limit = limit
        self.versioned = versioned

    def decode(self, data: bytes | memoryview) -> Any:
        if len(data) > self.limit:
            raise WireError(f"{self.name}: {len(data)} bytes is over the {self.limit} limit")
        try:
            msg = self._dec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._check_version(data)
            raise WireError(f"{self.name}: {exc}") from None
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise WireError(f"{self.name}: undecodable ({type(exc).__name__})") from None
        if self.versioned and msg.v != PROTOCOL:
            raise VersionError(f"{self.name}: protocol version {msg.v}, this is {PROTOCOL}")
        return msg

    def _check_version(self, data: bytes | memoryview) -> None:
        if self.versioned and (v := _other_version(data)) is not None:
            raise VersionError(f"{self.name}: protocol version {v}, this is {PROTOCOL}")


CLIENT_DECODER = _Decoder(ClientMsg, "client message", MAX_ENVELOPE)
SERVER_DECODER = _Decoder(ServerMsg, "server message", MAX_ENVELOPE)
PEER_DECODER = _Decoder(PeerMsg, "peer message", MAX_ENVELOPE + (4 << 20))
GOSSIP_DECODER = _Decoder(GossipMsg, "gossip message", 8 << 20)
ADVERT_DECODER = _Decoder(Advert, "advertisement", 64 << 10, versioned=False)
PRESENCE_DECODER = _Decoder(Presence, "presence", 8 << 20, versioned=False)
BODY_DECODER = _Decoder(Body, "body", MAX_BODY + (64 << 10), versioned=False)
HISTORY_LIMIT = MAX_BODY - (64 << 10)  # a HistoryBody is cut into messages of this size
SIGNED_DECODER = _Decoder(Signed, "signed body", MAX_BODY + 1024, versioned=False)
MANIFEST_DECODER = _Decoder(Manifest, "manifest", MAX_MANIFEST, versioned=False)
HEADER_PAYLOAD_DECODER = _Decoder(
    tuple[Header, bytes], "header and payload", MAX_BODY + 1024, versioned=False
)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def associated_data(
    msg_id: bytes, sender: str, to: list[str], group: bytes | None, epoch: int
) -> bytes:
    """What a sealed body is bound to: a broker that moves it to another conversation, sender
    or recipient list breaks the AEAD tag. Hop counts are left out: they change en route."""
    return encode((PROTOCOL, msg_id, sender, sorted(to), group, epoch))
