"""What the client library hands its users: one `Message` type and the typed events.

A delivery becomes exactly one event (`Inbox.process`); the commands print them, the app
draws them. `Message` is also what the local store keeps, so history, `recv` and the app read
the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

MessageKind = Literal["text", "media"]
_EXT = {"image/jpeg": "jpg", "image/png": "png"}


def thumb_name(m: Any) -> str:
    """HOME/media/thumbs/<this>: a manifest's thumbnail, by the file's hash."""
    return f"{m.sha256.hex()}.{_EXT.get(m.thumb_mime, 'img')}"


# Receipts (已讀) and unsends (收回) are sealed, signed messages of the conversation like texts;
# only their MIME type says what they are, so a broker cannot tell them from texts.
RECEIPT_MIME = "application/x-tits-receipt"  # payload: msgpack list of message ids read
UNSEND_MIME = "application/x-tits-unsend"  # payload: the id of the message taken back
REACTION_MIME = "application/x-tits-reaction"  # payload: msgpack [message id, name or ""]
ANNOUNCE_MIME = "application/x-tits-announce"  # payload: the 公告 text ("" takes it down)
SETTINGS_MIME = "application/x-tits-settings"  # payload: msgpack ChatSettings, from an admin
CONTROL_MIMES = frozenset({RECEIPT_MIME, UNSEND_MIME, REACTION_MIME, ANNOUNCE_MIME, SETTINGS_MIME})
UNSEND_WINDOW_S = 24 * 3600  # 收回: how long after sending, unless the group says otherwise
UNSEND_WINDOW_MAX_S = 7 * 24 * 3600  # a group may allow at most this (the brokers purge so far)
# LINE's small set: a name on the wire (never free text, so nothing can be smuggled into a
# screen through it), drawn as the emoji
REACTIONS = {"like": "👍", "love": "❤️", "haha": "😆", "wow": "😮", "sad": "😢", "thanks": "🙏"}
ANNOUNCE_MAX = 500  # characters in a 公告
LIFETIME_MIN_S, LIFETIME_MAX_S = 5, 7 * 24 * 3600


class SendOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a text carries besides its words: signed into its header by the composer."""

    lifetime_s: int = 0  # shown this long on each device, from when it is first shown there
    mentions: list[str] = []  # fingerprints of members named with @
    mention_all: bool = False  # @All


class Message(msgspec.Struct, kw_only=True):
    id: bytes
    conv: bytes  # the conversation: a group id, or `direct_conversation_id(a, b)`
    sender: str
    to: list[str]
    group: bytes | None
    kind: MessageKind
    text: str | None
    verified: bool
    ts: int  # Unix ms: the signed header's time (the broker's, when unverifiable)
    outgoing: bool = False
    mime: str = "text/plain"
    file: str | None = None  # media: where its content is kept (HOME/media/<sha256>)
    read: bool = False
    reply_to: bytes | None = None
    unsent: bool = False  # taken back by its sender: only "○○ 已收回訊息" remains
    read_by: int = 0  # how many others have read it (已讀 N): each member once
    mentions: list[str] = []  # members it names with @ (checked against the group)
    mention_all: bool = False
    lifetime_s: int = 0  # 0: kept; else removed that long after it was first shown here
    expired: bool = False  # its lifetime ran out: only a placeholder remains
    reactions: dict[str, list[str]] = {}  # reaction name → who reacted so (one each)
    manifest: bytes | None = None  # media: the signed `wire.Manifest` (chunks fetched later)
    thumb: str | None = None  # media: its thumbnail, saved as it came (HOME/media/thumbs/)

    def mentions_of(self, fp: str) -> bool:
        return not self.outgoing and (self.mention_all or fp in self.mentions)

    def media(self) -> dict[str, Any] | None:
        """What `recv --json` says of a media message: `path` None until fetched."""
        if self.manifest is None:
            return None
        from tits import wire
        from tits.errors import WireError

        try:
            m = wire.MANIFEST_DECODER.decode(self.manifest)
        except WireError:
            return None
        from tits.media.names import safe_name

        thumb = self.thumb
        if thumb is None and m.thumb and self.file:
            t = Path(self.file).parent / "thumbs" / thumb_name(m)
            thumb = str(t) if t.exists() else None
        return {
            "sha256": m.sha256.hex(),
            "size": m.size,
            "mime": self.mime,  # from the content once fetched (the manifest's until then)
            "claimed_mime": m.mime,
            "name": safe_name(m.name, m.sha256.hex()[:16]),
            "path": self.file,
            "verified": self.verified,
            "thumbnail": thumb,
            "width": m.width,
            "height": m.height,
            "sticker": m.sticker or None,
        }

    def to_json(self, sender_name: str = "") -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id.hex(),
            "from": self.sender,
            "from_name": sender_name,
            "to": self.to,
            "group": self.group.hex() if self.group else None,
            "conversation": self.conv.hex(),
            "text": self.text,
            "verified": self.verified,
            "ts": self.ts,
            "outgoing": self.outgoing,
            "mime": self.mime,
            "file": self.file,
            "reply_to": self.reply_to.hex() if self.reply_to else None,
            "unsent": self.unsent,
            "read_by": self.read_by,
            "mentions": self.mentions,
            "mention_all": self.mention_all,
            "lifetime_s": self.lifetime_s,
            "expired": self.expired,
            "reactions": self.reactions,
            **({"media": self.media()} if self.manifest is not None else {}),
        }


class Prepared(msgspec.Struct, kw_only=True):
    """An outbox item made ready to send: the exact frames (so a resend is byte-identical and
    the broker drops the copy by id) and the message to keep once a broker stored them."""

    frames: list[tuple[bytes, bytes]]  # (envelope, body): key or log messages first
    message: Message | None = None
    skipped: list[str] = []  # secure group members not sent to (unconfirmed, or key changed)


# -- events out of the inbox, the outbox and the link ------------------------------------------


class Shown(msgspec.Struct, tag="shown"):
    """A message to show (and keep): verified, or marked not verified in a normal chat."""

    message: Message


class Refused(msgspec.Struct, tag="refused"):
    """A delivery that was checked and refused; never shown as a message."""

    id: bytes
    sender: str
    reason: str
    group: bytes | None = None


class Held(msgspec.Struct, tag="held"):
    """A delivery waiting for something it needs (its session key, the group's log): it is not
    acknowledged, so the broker offers it again; refused after `KEY_WAIT_S`."""

    id: bytes
    sender: str
    reason: str


GroupOp = Literal["create", "invite", "remove", "leave", "admin", "rename", "rekey"]


class GroupChanged(msgspec.Struct, tag="group"):
    """A membership change applied to a group's log (or a new key for its members)."""

    id: bytes
    group: bytes
    name: str
    event: GroupOp
    actor: str
    targets: list[str]
    members: list[str]
    ts: int

    def to_json(self, actor_name: str = "") -> dict[str, Any]:
        return {
            "kind": "group",
            "id": self.id.hex(),
            "group": self.group.hex(),
            "name": self.name,
            "event": self.event,
            "who": self.actor,
            "who_name": actor_name,
            "targets": self.targets,
            "members": self.members,
            "ts": self.ts,
        }


class Receipt(msgspec.Struct, tag="receipt"):
    """`reader` has read these messages of ours (one receipt message for many)."""

    conv: bytes
    reader: str
    ids: list[bytes]


class Unsent(msgspec.Struct, tag="unsent"):
    """`by` took back message `id` (within the unsend window): it is gone from this device."""

    id: bytes
    conv: bytes
    by: str


class Reacted(msgspec.Struct, tag="reaction"):
    """`by` reacted to message `id` with `name` (one of `REACTIONS`), or took it back ("")."""

    id: bytes
    conv: bytes
    by: str
    name: str

    def to_json(self, by_name: str = "") -> dict[str, Any]:
        return {"kind": "reaction", "id": self.id.hex(), "conversation": self.conv.hex(),
                "from": self.by, "from_name": by_name, "reaction": self.name or None}  # fmt: skip


class Announced(msgspec.Struct, tag="announcement"):
    """A 公告 put up (or taken down: `text` "") at the top of a chat."""

    conv: bytes
    by: str
    text: str
    ts: int
    id: bytes = b""  # the message that carried it

    def to_json(self, by_name: str = "") -> dict[str, Any]:
        return {"kind": "announcement", "conversation": self.conv.hex(), "from": self.by,
                "from_name": by_name, "text": self.text or None, "ts": self.ts}  # fmt: skip


class ChatSettings(msgspec.Struct, kw_only=True):
    """A group's rules that every member's client applies alike, set by its admins."""

    unsend_s: int  # 收回 allowed this long after sending; 0: not at all


class SettingsChanged(msgspec.Struct, tag="settings"):
    """An admin changed a group's rules (its 收回 window)."""

    conv: bytes
    by: str
    unsend_s: int
    ts: int

    def to_json(self, by_name: str = "") -> dict[str, Any]:
        return {"kind": "settings", "conversation": self.conv.hex(), "from": self.by,
                "from_name": by_name, "unsend_window_s": self.unsend_s, "ts": self.ts}  # fmt: skip


class Expired(msgspec.Struct, tag="expired"):
    """Messages whose display lifetime ran out on this device: removed here."""

    ids: list[bytes]


class Stored(msgspec.Struct, tag="stored"):
    """A broker has durably stored what we sent (outbox item `id`)."""

    id: bytes
    broker: str


class SendFailed(msgspec.Struct, tag="send-failed"):
    """A broker refused what we sent, for good (the reason is the broker's own)."""

    id: bytes
    code: str
    reason: str


class Skipped(msgspec.Struct, tag="skipped"):
    """A secure group's message did not go to these members: never confirmed, or their key
    changed since they were (compare fingerprints again, then `tits contact confirm`)."""

    id: bytes
    members: list[str]


class LinkEvent(msgspec.Struct, tag="link"):
    """The connection changed: `state` is "ready", "unreachable", "refused" or "closed"."""

    state: Literal["ready", "unreachable", "refused", "closed"]
    broker_url: str
    detail: str = ""


class Missed(msgspec.Struct, tag="gap"):
    """The broker's mailbox retention took messages before this device came back for them
    (the welcome's `wire.Gap`, told once): times in Unix seconds; `missed` 0 is "not known"."""

    broker_url: str
    retention_s: int
    missed: int = 0
    oldest: int = 0  # the first and last of the messages that are gone
    newest: int = 0
    seen: int = 0  # when this device was last there

    def text(self) -> str:
        from ..i18n import _
        from ..spans import span

        days = span(self.retention_s)
        if self.missed:
            return _(
                "You were offline for more than {days}, longer than the server keeps "
                "messages: {n} earlier messages can no longer be received."
            ).format(days=days, n=self.missed)
        return _(
            "You were offline for more than {days}, longer than the server keeps messages: "
            "some earlier messages may no longer be received."
        ).format(days=days)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "gap", "since": self.seen or self.oldest or None,
                "retention_s": self.retention_s, "missed": self.missed or None,
                "oldest": self.oldest or None, "newest": self.newest or None,
                "broker": self.broker_url.split("#")[0]}  # fmt: skip


Event = (
    Shown
    | Refused
    | Held
    | GroupChanged
    | Receipt
    | Unsent
    | Reacted
    | Announced
    | SettingsChanged
    | Expired
    | Stored
    | SendFailed
    | Skipped
    | LinkEvent
    | Missed
)
