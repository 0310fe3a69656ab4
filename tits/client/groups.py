"""Groups on top of the membership log: making changes, sending them, applying what comes.

A change travels as a `GroupBody`: ONE OpenPGP message, signed by the member who made it and
encrypted to every member at once, holding a `GroupBundle` — the whole log (so a receiver
never lacks a predecessor, and a newcomer learns the group) and, after a change of members,
the session key of the new epoch (so a removed member cannot read what follows, and a
newcomer nothing before it unless `--share-history` adds the earlier epochs' keys, with the
earlier messages following as `HistoryBody`s). A removed member gets the log alone.

Everything here may run gpg or the key server: the client calls it off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec

from tits import wire
from tits.errors import ConfigError, IdentityError, TitsError, VerificationError
from tits.identity import Identity
from tits.session import KeyFile, SessionKey

from . import memberlog as ml
from .keyring import Keyring
from .model import GroupChanged, Refused
from .store import LocalStore

MAX_GROUP_RECIPIENTS = wire.MAX_RECIPIENTS  # per Send; bigger groups take several


class GroupBundle(msgspec.Struct, kw_only=True):
    v: int = 1
    group: str  # hex
    log: list[ml.SignedEntry]
    keys: list[KeyFile] = []


_BUNDLE = msgspec.json.Decoder(GroupBundle)
_LOG = msgspec.msgpack.Decoder(list[ml.SignedEntry])


def _trusted(_data: bytes, _sig: str, _fp: str) -> None:
    """Entries from our own store were verified when they came in."""


@dataclass
class Change:
    """What a change produced: frames to send (via the outbox) and the event to show."""

    frames: list[tuple[bytes, bytes]]
    event: GroupChanged | None


def chunks(members: list[str], size: int = MAX_GROUP_RECIPIENTS) -> list[list[str]]:
    return [members[i : i + size] for i in range(0, len(members), size)]


class Groups:
    def __init__(
        self,
        store: LocalStore,
        identity: Identity,
        me: str,
        keyring: Keyring,
        certificate: tuple[bytes, str, bytes],
        ensure_key: Callable[[str], None],
    ) -> None:
        self.store = store
        self.identity = identity
        self.me = me
        self.keyring = keyring
        self.cert = certificate
        self.ensure_key = ensure_key  # import a member's public key (key server) or raise
        self._logs: dict[bytes, ml.MemberLog] = {}

    # -- reading ------------------------------------------------------------------------------

    def log(self, group: bytes) -> ml.MemberLog | None:
        if group in self._logs:
            return self._logs[group]
        raw = self.store.group_log(group)
        if raw is None:
            return None
        log = ml.MemberLog(group.hex())
        log.merge(_LOG.decode(raw), _trusted)
        self._logs[group] = log
        return log

    def state(self, group: bytes) -> ml.GroupState | None:
        log = self.log(group)
        return log.state if log is not None else None

    def find(self, ref: str) -> bytes:
        """`#name`, `name` or a group id (hex); a name two groups share is refused."""
        bare = ref.removeprefix("#")
        try:
            gid = bytes.fromhex(bare)
            if len(gid) == 16 and self.store.group_log(gid) is not None:
                return gid
        except ValueError:
            pass
        hits = [(g, n) for g, n, _ in self.store.groups() if n == bare]
        if not hits:
            raise ConfigError(f"no group called {bare!r}: `tits group list` shows yours")
        if len(hits) > 1:
            ids = ", ".join(g.hex() for g, _ in hits)
            raise ConfigError(f"{len(hits)} groups are called {bare!r}: give the id ({ids})")
        return hits[0][0]

    def members_at(self, log: ml.MemberLog, basis: str) -> set[str] | None:
        members: set[str] = set()
        for a in log.applied():
            members.update(a.added)
            members.difference_update(a.removed)
            if a.hash == basis:
                return members
        return None

    @staticmethod
    def members_on_path(log: ml.MemberLog, basis: str) -> set[str] | None:
        """The members as the maker of an entry saw them: the applied entries from the
        create to `basis` along their `prev` links only."""
        by_hash = {a.hash: a for a in log.applied()}
        chain: list[ml.Applied] = []
        h: str | None = basis
        while h is not None:
            a = by_hash.get(h)
            if a is None:
                return None  # an entry on the way was refused: no view to match
            chain.append(a)
            h = a.entry.prev
        members: set[str] = set()
        for a in reversed(chain):
            members.update(a.added)
            members.difference_update(a.removed)
        return members

    def _save(self, group: bytes, log: ml.MemberLog) -> None:
        state = log.state
        assert state is not None
        self.store.put_group(group, state.name, state.secure, msgspec.msgpack.encode(log.entries()))
        self._logs[group] = log

    # -- changes made here ---------------------------------------------------------------------

    def create(self, name: str, secure: bool) -> bytes:
        gid_hex = ml.new_group_id(self.me)
        entry = ml.make_entry(
            None, "create", self.me, group=gid_hex, name=name, secure=secure, ts=_now_ms()
        )
        signed = ml.sign_entry(entry, self.identity.sign_detached)
        log = ml.MemberLog(gid_hex)
        result = log.merge([signed], _trusted)
        if result.refused:
            raise ml.GroupError(result.refused[0].reason, code="malformed")
        gid = bytes.fromhex(gid_hex)
        self._save(gid, log)
        state = log.state
        assert state is not None
        self.keyring.make(gid, [self.me], secure=secure, basis=state.epoch_basis, now=time.time())
        return gid

    def change(
        self,
        group: bytes,
        op: ml.Op,
        targets: list[str] = (),  # type: ignore[assignment]
        *,
        name: str = "",
        share_history: bool = False,
        confirmed: Callable[[str], bool] | None = None,
    ) -> Change:
        log = self.log(group)
        if log is None or log.state is None:
            raise ConfigError("no such group here")
        before = log.state
        # every rule that needs no gpg first: a 500-name list is refused before 500 look-ups
        entry = ml.make_entry(
            before, op, self.me, group=group.hex(), targets=targets, name=name, ts=_now_ms()
        )
        if op == "invite":
            for fp in targets:
                if before.secure and confirmed is not None and not confirmed(fp):
                    raise ConfigError(
                        f"{fp} is not confirmed: compare fingerprints, then "
                        f"`tits contact confirm {fp}` (a secure group takes confirmed people only)"
                    )
            self._ensure_keys(targets)
        signed = ml.sign_entry(entry, self.identity.sign_detached)
        result = log.merge([signed], _trusted)
        if result.refused:
            raise ml.GroupError(result.refused[0].reason, code="not-allowed")
        self._save(group, log)
        after = log.state
        assert after is not None
        frames: list[tuple[bytes, bytes]] = []
        keys: list[SessionKey] = []
        if op in ("invite", "remove"):
            keys.append(self._new_epoch(group, after))
            if share_history:
                keys.extend(r.key for r in self.store.epochs(group) if r.key.epoch != keys[0].epoch)
        recipients = sorted(set(after.members) - {self.me})
        frames += self._bundle_frames(group, log, keys, recipients)
        if op == "remove":
            frames += self._bundle_frames(group, log, [], list(targets))
        if op == "leave":
            frames += self._bundle_frames(group, log, [], recipients)
        if share_history and op == "invite":
            frames += self._history_frames(group, list(targets))
        members = sorted(after.members)
        event = GroupChanged(
            id=wire.new_msg_id(), group=group, name=after.name, event=op, actor=self.me,
            targets=list(targets), members=members, ts=_now_ms(),
        )  # fmt: skip
        return Change(frames, event)

    def rekey(self, group: bytes) -> Change:
        """A key for the members as they now are (after a leave, a fork, or a rotation)."""
        log = self.log(group)
        if log is None or log.state is None or not log.state.is_member(self.me):
            raise ConfigError("not a member of this group")
        key = self._new_epoch(group, log.state)
        recipients = sorted(set(log.state.members) - {self.me})
        frames = self._bundle_frames(group, log, [key], recipients)
        return Change(frames, None)

    def _ensure_keys(self, fps: Iterable[str]) -> None:
        """Every one of these public keys at hand: ONE gpg listing for all of them, then the
        key server for those missing (a `has_key` each was a gpg process per member: 151
        of them, 1.2 s, to remove one member of 150)."""
        wanted = sorted(set(fps) - {self.me})
        if not wanted:
            return
        listed = self.identity.gpg.list_keys(keys=wanted)
        have = {str(k.get("fingerprint", "")).upper() for k in listed}
        for fp in wanted:
            if fp not in have:
                self.ensure_key(fp)

    def _new_epoch(self, group: bytes, state: ml.GroupState) -> SessionKey:
        self._ensure_keys(state.members)
        return self.keyring.make(
            group, list(state.members), secure=state.secure, basis=state.epoch_basis,
            now=time.time(),
        )  # fmt: skip

    def _bundle_frames(
        self, group: bytes, log: ml.MemberLog, keys: list[SessionKey], recipients: list[str]
    ) -> list[tuple[bytes, bytes]]:
        if not recipients:
            return []
        bundle = GroupBundle(group=group.hex(), log=log.entries(), keys=[k.to_file() for k in keys])
        sealed = self.keyring.wrap(msgspec.json.encode(bundle), recipients)
        if len(sealed) > wire.MAX_BODY - 16384:
            raise ConfigError("this group's log has grown too big to send in one message")
        body = wire.encode(
            wire.GroupBody(
                group=group,
                bundle=sealed,
                cert=self.cert[0],
                cert_sig=self.cert[1].encode(),
                cert_proof=self.cert[2],
            )
        )
        out = []
        for part in chunks(recipients):
            send = wire.Send(id=wire.new_msg_id(), sender=self.me, to=part, group=group)
            out.append((wire.encode(send), body))
        return out

    def _history_frames(self, group: bytes, newcomers: list[str]) -> list[tuple[bytes, bytes]]:
        items: list[wire.HistoryItem] = []
        size = 0
        batches: list[list[wire.HistoryItem]] = []
        for msg, raw in self.store.raw_history(group):
            item = wire.HistoryItem(id=msg.id, sender=msg.sender, to=msg.to, ts=msg.ts, body=raw)
            cost = len(raw) + 64 + 41 * len(msg.to)
            if items and size + cost > wire.HISTORY_LIMIT:
                batches.append(items)
                items, size = [], 0
            items.append(item)
            size += cost
        if items:
            batches.append(items)
        out = []
        for batch in batches:
            body = wire.encode(wire.HistoryBody(group=group, items=batch))
            for part in chunks(newcomers):
                send = wire.Send(id=wire.new_msg_id(), sender=self.me, to=part, group=group)
                out.append((wire.encode(send), body))
        return out

    # -- changes that come in -------------------------------------------------------------------

    def receive(
        self, env: wire.Deliver, body: wire.GroupBody, need_key: Callable[[str], None]
    ) -> tuple[list[GroupChanged | Refused], bool]:
        """Apply a group message; (events, whether we should rekey the group now).
        `need_key(fp)` raises (`NotYet`) for a signer whose public key we lack."""
        need_key(env.sender)
        try:
            plain = self.keyring.unwrap(body.bundle, env.sender)
            bundle = _BUNDLE.decode(plain)
        except (TitsError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            why = exc.message if isinstance(exc, TitsError) else f"not a group bundle ({exc})"
            raise VerificationError(why) from None
        if bundle.group != body.group.hex() or env.group != body.group:
            raise VerificationError("a group message for another group")
        log = self.log(body.group) or ml.MemberLog(body.group.hex())
        before = log.state
        was_member = before is not None and before.is_member(self.me)

        for signed in bundle.log:  # every new entry's signer, before any gpg run
            h = ml.entry_hash(signed.raw)
            if h not in log:
                try:
                    actor = ml.decode_entry(signed.raw).actor
                except ml.GroupError:
                    continue  # merge refuses it with its reason
                need_key(actor)

        def verify(data: bytes, sig: str, fp: str) -> None:
            self.identity.verify_detached(data, sig, fp)

        result = log.merge(bundle.log, verify)
        events: list[GroupChanged | Refused] = [
            Refused(id=env.id, sender=env.sender, reason=f"{r.code}: {r.reason}", group=body.group)
            for r in result.refused
            if r.code != "duplicate"
        ]
        # a late entry placed before ones already applied can take a right away from them:
        # say which changes no longer hold (every member's client undoes the same ones)
        events += [
            Refused(id=env.id, sender=env.sender, reason=f"undone: {r.reason}", group=body.group)
            for r in result.reverted
        ]
        state = log.state
        if state is None:
            raise VerificationError("a group log without its create")
        if not state.is_member(env.sender) and not any(
            a.entry.actor == env.sender for a in result.applied
        ):
            raise VerificationError(f"{env.sender[:16]} is not a member of this group")
        if not was_member and not state.is_member(self.me) and before is None:
            raise VerificationError("a group log for a group we are not in")
        self._save(body.group, log)
        for a in result.applied:
            events.append(
                GroupChanged(
                    id=env.id,
                    group=body.group,
                    name=state.name,
                    event=a.entry.op,
                    actor=a.entry.actor,
                    targets=list(a.entry.targets),
                    members=sorted(state.members),
                    ts=a.entry.ts,
                )  # fmt: skip
            )
        for kf in bundle.keys:
            key = SessionKey.from_file(kf)
            if key.conversation != body.group:
                raise VerificationError("a wrapped key for another group")
            if key.creator != env.sender or env.sender not in key.members:
                raise VerificationError("a key made by someone else than its sender")
            if self.me not in key.members and key.basis == state.epoch_basis:
                continue
            at = self.members_at(log, key.basis)
            if at is None:
                raise VerificationError("a key for a membership entry we do not have")
            current = key.basis == state.epoch_basis
            if set(key.members) != at:
                # after a fork the order puts the other branch's entry before this key's:
                # its maker saw only the entries along its own `prev` links
                if set(key.members) != self.members_on_path(log, key.basis):
                    raise VerificationError("a key wrapped for other members than the group had")
                current = False  # the lowest admin makes one for the group as it now is
            if self.keyring.accept(key, env.sender, time.time(), current=current) and current:
                events.append(
                    GroupChanged(
                        id=env.id,
                        group=body.group,
                        name=state.name,
                        event="rekey",
                        actor=env.sender,
                        targets=[],
                        members=sorted(state.members),
                        ts=_now_ms(),
                    )  # fmt: skip
                )
        return events, self._should_rekey(body.group, state)

    def _should_rekey(self, group: bytes, state: ml.GroupState) -> bool:
        """After a leave (the leaver must not make the next key) or a fork, the members need a
        key for who is in the group now; one member makes it: the lowest admin fingerprint."""
        if not state.is_member(self.me) or state.closed:
            return False
        if self.keyring.for_sending(group, list(state.members), time.time()) is not None:
            return False
        return bool(state.admins) and state.admins[0] == self.me


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def require_key(identity: Identity, fetch: Callable[[str], str] | None) -> Callable[[str], None]:
    """`ensure_key` for `Groups`: a public key from the ring, else from the key server."""

    def ensure(fp: str) -> None:
        if identity.has_key(fp):
            return
        if fetch is None:
            raise IdentityError(f"no public key for {fp}: `tits key fetch {fp}`")
        if fp not in identity.import_public(fetch(fp)):
            raise IdentityError(f"the key server did not return {fp}")

    return ensure
