"""Session keys by conversation and epoch: which one to send with, which ones open what.

An epoch's key is made by the member who changed the conversation (the inviter, the remover,
or — after a leave or a fork — the first member who needs to send and finds no key for the
members as they now are) and wrapped for every member in ONE OpenPGP message (one gpg process
however many members; each opens it with plain `gpg --decrypt`).

Secure chats rotate: a key is used for at most `ROTATE_MESSAGES` messages by one sender or
`ROTATE_S` seconds, whichever comes first. Megolm defaults to a week or 100 messages; we keep
100 messages but a day, because a rotation costs only one gpg process at the sender and one
per member, and a day bounds what one leaked key exposes to one day of a group's talk.
Each user may set their own (`tits config set rotate_after 12h`, `rotate_messages 50`,
within ROTATE_S_RANGE and ROTATE_MESSAGES_RANGE): the period goes into the keys that user
makes (every member holds a key to the expiry its maker wrote in it), the count bounds the
texts that user sends under one key. A member who wants shorter keys gets them for what they
make and send; no member can make anyone else's last longer. A text
under an epoch that was superseded, or that expired, is accepted for `GRACE_S` after that (it
may have been in flight, or waiting in the cloud) — measured by the broker's acceptance time,
which a removed member cannot backdate — and refused after.
"""

from __future__ import annotations

import os
from typing import Any

from tits.errors import VerificationError
from tits.identity import Identity
from tits.session import SessionKey

from .store import EpochRow, LocalStore

ROTATE_MESSAGES = 100
ROTATE_S = 24 * 3600.0
ROTATE_S_RANGE = (600, 30 * 86400)  # what `rotate_after` may be: 10 minutes to 30 days
ROTATE_MESSAGES_RANGE = (1, 10_000)
GRACE_S = 120.0


def rotation(config: dict[str, Any]) -> dict[str, Any]:
    """The user's secure-chat rotation settings (`tits config set rotate_after|rotate_messages`)
    as Keyring arguments; a value out of range (a hand-edited file) is left out: the default."""
    out: dict[str, Any] = {}
    after, count = config.get("rotate_after"), config.get("rotate_messages")
    lo, hi = ROTATE_S_RANGE
    if isinstance(after, int) and not isinstance(after, bool) and lo <= after <= hi:
        out["rotate_s"] = float(after)
    lo, hi = ROTATE_MESSAGES_RANGE
    if isinstance(count, int) and not isinstance(count, bool) and lo <= count <= hi:
        out["rotate_messages"] = count
    return out


class Keyring:
    def __init__(
        self,
        store: LocalStore,
        identity: Identity,
        me: str,
        *,
        rotate_s: float = ROTATE_S,
        rotate_messages: int = ROTATE_MESSAGES,
    ) -> None:
        self.store = store
        self.identity = identity
        self.me = me
        self.rotate_s, self.rotate_messages = rotate_s, rotate_messages

    # -- sending --------------------------------------------------------------------------------

    def for_sending(self, conv: bytes, members: list[str], now: float) -> SessionKey | None:
        """The newest key made for exactly these members that may still be used."""
        wanted = sorted(set(members))
        for row in reversed(self.store.epochs(conv)):
            key = row.key
            if row.superseded is not None or sorted(key.members) != wanted:
                continue
            if key.secure and (key.expired(now) or row.sent >= self.rotate_messages):
                continue
            return key
        return None

    def make(
        self, conv: bytes, members: list[str], *, secure: bool, basis: str, now: float
    ) -> SessionKey:
        """A new epoch for these members; older epochs of the conversation are superseded."""
        key = SessionKey.generate(
            conv,
            epoch=self._fresh_epoch(conv),
            secure=secure,
            lifetime=self.rotate_s if secure else 0.0,
            members=sorted(set(members)),
            creator=self.me,
            basis=basis,
        )
        self.store.put_epoch(key, self.me)
        self.store.supersede(conv, key.epoch, now)
        return key

    def _fresh_epoch(self, conv: bytes) -> int:
        while True:  # random, so two devices of one user never pick the same one
            epoch = int.from_bytes(os.urandom(4), "big") or 1
            if self.store.epoch(conv, epoch) is None:
                return epoch

    def sent_with(self, key: SessionKey) -> None:
        self.store.count_sent(key.conversation, key.epoch)

    # -- receiving ------------------------------------------------------------------------------

    def accept(self, key: SessionKey, creator: str, now: float, *, current: bool) -> bool:
        """File a key a member sent; False if we had it already. `current`: it is the key
        of the conversation as it now is, so the ones before it are superseded."""
        known = self.store.epoch(key.conversation, key.epoch)
        if known is not None:
            # the same key from another member is no conflict: a device of ours that joined
            # later gets both the maker's key message and the one our reply carried
            if known.key.key != key.key:
                raise VerificationError(f"epoch {key.epoch} already exists with another key")
            return False
        self.store.put_epoch(key, creator)
        if current:
            self.store.supersede(key.conversation, key.epoch, now)
        return True

    def opening(self, conv: bytes, epoch: int) -> EpochRow | None:
        return self.store.epoch(conv, epoch)

    @staticmethod
    def still_open(row: EpochRow, accepted_ms: int) -> bool:
        """May a secure text the broker accepted at `accepted_ms` use this epoch?"""
        accepted = accepted_ms / 1000
        if row.superseded is not None and accepted > row.superseded + GRACE_S:
            return False
        return not (row.key.expires and accepted > row.key.expires + GRACE_S)

    # -- wrapping (gpg: call these off the event loop) -------------------------------------------

    def wrap(self, payload: bytes, recipients: list[str]) -> bytes:
        """`payload` signed by us and encrypted to every recipient (and to us, so our other
        devices can open what this one sent): one gpg process."""
        return self.identity.encrypt_to_many(payload, [*recipients, self.me], self.me).encode()

    def unwrap(self, blob: bytes, expected_signer: str) -> bytes:
        return self.identity.decrypt_from(blob, expected_signer=expected_signer)
