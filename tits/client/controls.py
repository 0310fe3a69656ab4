"""The payloads of control messages (reactions, 公告), made and checked in one place.

They travel sealed and signed like texts; only the MIME type in the encrypted header says
what they are. A payload that does not parse, or names a reaction outside the small set, is
refused with a reason the receiver can show.
"""

from __future__ import annotations

import unicodedata

import msgspec

from tits.errors import VerificationError

from .model import (
    ANNOUNCE_MAX,
    LIFETIME_MAX_S,
    LIFETIME_MIN_S,
    REACTIONS,
    UNSEND_WINDOW_MAX_S,
    ChatSettings,
)

_REACTION = msgspec.msgpack.Decoder(tuple[bytes, str])
_SETTINGS = msgspec.msgpack.Decoder(ChatSettings)
UNSEND_WINDOW_MIN_S = 60


def reaction_payload(msg_id: bytes, name: str) -> bytes:
    return msgspec.msgpack.encode((msg_id, name))


def read_reaction(payload: bytes) -> tuple[bytes, str]:
    try:
        msg_id, name = _REACTION.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
        raise VerificationError("a reaction that does not name a message") from None
    if len(msg_id) != 16:
        raise VerificationError("a reaction that does not name a message")
    if name and name not in REACTIONS:
        raise VerificationError("a reaction outside the set every client draws")
    return msg_id, name


def clean_announcement(text: str) -> str:
    """A 公告 as it may be put up: one paragraph of printable text, at most ANNOUNCE_MAX
    characters (control and bidi characters would let it rewrite the screen)."""
    text = " ".join(text.split())
    if len(text) > ANNOUNCE_MAX:
        raise ValueError(f"an announcement is at most {ANNOUNCE_MAX} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise ValueError("an announcement cannot contain control characters")
    return text


def read_announcement(payload: bytes) -> str:
    try:
        return clean_announcement(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationError(f"an announcement refused: {exc}") from None


def lifetime_seconds(text: str) -> int | None:
    """`30s`, `10m`, `2h`, `1d` (or plain seconds) → seconds; None when malformed or out of
    the allowed range."""
    raw = text.strip().lower()
    size = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(raw[-1:], 0)
    number = raw[:-1] if size else raw
    if not number.isdigit() or len(number) > 9:
        return None
    seconds = int(number) * (size or 1)
    return seconds if LIFETIME_MIN_S <= seconds <= LIFETIME_MAX_S else None


def settings_payload(settings: ChatSettings) -> bytes:
    return msgspec.msgpack.encode(settings)


def read_settings(payload: bytes) -> ChatSettings:
    try:
        settings = _SETTINGS.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise VerificationError("group settings that do not parse") from None
    if not _window_ok(settings.unsend_s):
        raise VerificationError("an unsend window out of range")
    return settings


def _window_ok(seconds: int) -> bool:
    return seconds == 0 or UNSEND_WINDOW_MIN_S <= seconds <= UNSEND_WINDOW_MAX_S


def unsend_window_seconds(text: str) -> int | None:
    """`off` (or 0), `10m`, `2h`, `7d` → seconds; None when malformed or out of range (1 minute
    to 7 days)."""
    raw = text.strip().lower()
    if raw in ("off", "0"):
        return 0
    size = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(raw[-1:], 0)
    number = raw[:-1] if size else raw
    if not number.isdigit() or len(number) > 9:
        return None
    seconds = int(number) * (size or 1)
    return seconds if _window_ok(seconds) else None
