"""Between the broker's mailbox and the cloud: forwarded messages in, remote users out.

The mailbox and its per-device cursors do all the remembering, so nothing crosses the cloud
on trust alone:

- A user online at another broker Y is, for this broker's `Delivery`, one more device of that
  user: ``(user, "@" + Y)``. Its "sending" is a `Forward` toward Y; its acknowledgement is the
  next hop's `ForwardAck`, which that hop sends only once it has stored the message durably.
  So a message for someone elsewhere is retried like any delivery, rerouted when a hop dies
  (the next hop is looked up at each try), and replayed in full when the user shows up at
  yet another broker.
- A message passing through on its way to Y is sent on from memory and acknowledged upstream
  when the next hop acknowledges it (`Transit`). One that cannot go on at once, or is not
  acknowledged in time, is stored under the pseudo user ``"@" + Y`` and sent on by the pseudo
  device ``"hop"`` of that user, with the same machinery.
- A message that reached its target is stored for its recipients like a local send.

Duplicates are harmless: receivers drop message ids they have already stored, and clients drop
ids they have already shown.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import structlog

from tits import wire
from tits.errors import WireError
from tits.log import sanitise

from .cloud import Cloud, Route
from .delivery import Delivery, Device, SendResult
from .purge import Purge, Purged, valid
from .store import Row, Store
from .transit import Transit

log = structlog.get_logger("tits.broker.relay")

HOP_DEVICE = "hop"
# Forwards in flight to another broker per (user, broker) or transit queue. Their acks come
# back only after the far broker's group commit, through every relay, so the round trip is
# long under load: with a client's window of 1,000 the cloud benchmark's 3-hop pairs ran at
# 36 % of one broker's rate, at 4,000 at 51 % (bigger batches at every hop).
RELAY_WINDOW = 4000
DEDUP_MAX = 200_000
_tokens = msgspec.msgpack.Decoder(tuple[str, str])


class _StoredDeliver(msgspec.Struct, tag="deliver", tag_field="k", forbid_unknown_fields=False):
    """A `wire.Deliver` this broker wrote to its own store, read back without the wire's
    checks (a regex per fingerprint: most of the decode, on every forward a sender makes)."""

    id: bytes
    sender: str
    to: list[str] = []
    group: bytes | None = None
    ts: int = 0
    device: str | None = None
    purge: bytes | None = None


_stored_deliver = msgspec.msgpack.Decoder(_StoredDeliver)
_DEVICE = re.compile(r"[0-9a-f]{16}")


def remote_device(broker: str) -> str:
    return "@" + broker


def transit_user(fwd: wire.Forward) -> str:
    """The pseudo user a relay stores a forward under: one per target broker *and* list of
    users to deliver to there. One message for two users there travels as two forwards with
    the same id; under one pseudo user they would share one device's in-flight entry (keyed
    by id), and one acknowledgement would have let go of both."""
    users = wire.sha256(",".join(fwd.deliver_to).encode()).hex()[:16]
    return f"@{fwd.target}/{users}"


def is_relay_device(dev: Device) -> bool:
    return dev.device.startswith("@") or dev.user.startswith("@")


Fanout = list[tuple[str, int, bytes, bytes, bytes, str]]  # user, seq, id, env, body, skip


class Committer(Protocol):
    def submit_relay(
        self, rows: list[Row], fanout: Fanout, done: Callable[[bool], None],
        purges: list[Purge] | None = None,
    ) -> None:  # fmt: skip
        """Commit `rows` and `purges` (group commit), hand `fanout` to delivery, then call
        `done(ok)`."""

    def register_device(self, user: str, device: str) -> None:
        """Give a (pseudo) device a persistent cursor."""


@dataclass
class _Pending:
    rows: list[Row] = field(default_factory=list)
    fanout: Fanout = field(default_factory=list)
    acks: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    purges: list[Purge] = field(default_factory=list)


class Relay:
    def __init__(
        self, me: str, store: Store, delivery: Delivery, committer: Committer,
        purged: Purged | None = None,
    ) -> None:  # fmt: skip
        self.me, self.store, self.delivery, self.committer = me, store, delivery, committer
        self.purged = purged if purged is not None else Purged()
        self.cloud: Cloud | None = None
        self.transit: Transit | None = None
        self._seen: OrderedDict[tuple[bytes, str], None] = OrderedDict()
        self._pending = _Pending()
        self._token: dict[tuple[str, str], bytes] = {}  # a relay device's token, made once
        self.forwarded = 0
        self.arrived = 0
        self.kept = 0  # forwards for other brokers stored here: not passed on from memory

    def start(self, cloud: Cloud) -> None:
        """Re-attach relays with mail still waiting (after a restart)."""
        self.cloud = cloud
        self.transit = Transit(cloud.forward_via, cloud.ack)
        for user in self.store.relay_users():
            self._attach(user, HOP_DEVICE)

    # -- CloudHost -------------------------------------------------------------------------

    def cloud_forward_arrived(self, peer: str, fwd: wire.Forward, body: bytes) -> None:
        if fwd.purge is not None:  # an unsend: its message goes from here too, even passing by
            self._purge(fwd)
        elif self.purged and self.purged.hit(fwd.id, fwd.sender):
            self._pending.acks.append((peer, fwd.id, fwd.token))  # taken back: goes no further
            return
        if fwd.target != self.me and self.transit is not None:
            if self.transit.pass_on(peer, fwd, body):
                return
        self._keep(peer, fwd, body)

    def _keep(self, peer: str, fwd: wire.Forward, body: bytes) -> None:
        """Store `fwd` (for its users here, or to send on), acknowledged after the commit."""
        if fwd.target == self.me or fwd.hops == 0:
            if not all(map(wire.is_fingerprint, [fwd.sender, *fwd.to, *fwd.deliver_to])):
                # relays pass fingerprints on unchecked: here is where they are checked
                log.warning("forward.bad_fingerprint", id=fwd.id.hex(), peer=peer[:16])
                self._pending.acks.append((peer, fwd.id, fwd.token))  # refused: not resent
                return
            if fwd.target != self.me:
                # out of hops (routes disagreed for a while): not dropped but kept here for its
                # users, whose relay devices carry it on with a fresh hop count
                log.warning("forward.hop_limit", id=fwd.id.hex(), target=fwd.target[:16])
            # its recipients here, and the sender (for their devices here)
            users = [u for u in (fwd.deliver_to or fwd.to) if u in fwd.to or u == fwd.sender]
            device = fwd.device if _DEVICE.fullmatch(fwd.device) else ""
            purge = fwd.purge if fwd.purge is not None and len(fwd.purge) == 16 else None
            env = wire.encode(
                wire.Deliver(
                    id=fwd.id, sender=fwd.sender, to=fwd.to, group=fwd.group, ts=fwd.ts,
                    device=device or None, purge=purge,
                )
            )  # fmt: skip
        else:
            self.kept += 1
            users = [transit_user(fwd)]
            device = ""
            env = wire.encode(msgspec.structs.replace(fwd, hops=fwd.hops - 1, token=b""))
        ts = fwd.ts // 1000 or int(time.time())
        for user in users:
            if self._known(fwd.id, user):
                continue
            seq = self.store.allocate()
            skip = device if user == fwd.sender else ""
            self._pending.rows.append((seq, user, fwd.id, fwd.sender, env, body, ts, skip))
            self._pending.fanout.append((user, seq, fwd.id, env, body, skip))
            if user.startswith("@"):
                self._attach(user, HOP_DEVICE)
        self._pending.acks.append((peer, fwd.id, fwd.token))

    def cloud_forward_acked(self, peer: str, msg_id: bytes, token: bytes) -> None:
        if Transit.owns(token):
            if self.transit is not None:
                self.transit.acked(peer, msg_id, token)
            return
        try:
            user, device = _tokens.decode(token)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        dev = self.delivery.device(user, device)
        if dev is not None and is_relay_device(dev):  # a peer never acks for a real device
            self.delivery.acked(dev, [msg_id])

    def cloud_link_down(self, peer: str) -> None:
        """Forwards in flight over that link will not be acknowledged: ours (relay devices)
        go again now on the new routes, not after the retry timer (5 s); those passing
        through are kept, so this broker retries them."""
        self.delivery.retry(wait_s=0.0, only=is_relay_device)
        if self.transit is not None:
            lost = self.transit.lost(peer)
            for passing in lost:
                self._keep(passing.upstream, passing.fwd, passing.body)
            if lost:
                log.info("transit.kept", count=len(lost), reason="link down")
                self.flush()

    def cloud_presence_changed(self, fingerprints: set[str]) -> None:
        for fp in fingerprints:
            self.sync_remote(fp)

    # -- called by the broker ------------------------------------------------------------------

    def flush(self) -> None:
        """Commit what forwards brought in this round; acknowledge them hop by hop only once
        it is on disk. Duplicates are acknowledged after this commit too: their original may
        be in it."""
        pending, self._pending = self._pending, _Pending()
        if not pending.rows and not pending.acks and not pending.purges:
            return
        if pending.rows:
            self._drop_stored(pending)
            if self.purged:  # (none, almost always)
                pending.rows, pending.fanout, _ = self.purged.keep(
                    pending.rows, pending.fanout, [(row[2], row[3]) for row in pending.rows]
                )

        def done(ok: bool) -> None:
            if not ok:
                for _seq, user, msg_id, *_rest in pending.rows:
                    self._seen.pop((msg_id, user), None)
                return  # not acknowledged: the previous hop sends them again
            self.arrived += len(pending.rows)
            assert self.cloud is not None
            for peer, msg_id, token in pending.acks:
                self.cloud.ack(peer, msg_id, token)

        self.committer.submit_relay(pending.rows, pending.fanout, done, pending.purges)

    def tick(self) -> None:
        """Keep what the next hop left unacknowledged too long: we retry it from now on."""
        if self.transit is None:
            return
        overdue = self.transit.overdue()
        for passing in overdue:
            self._keep(passing.upstream, passing.fwd, passing.body)
        if overdue:
            log.info("transit.kept", count=len(overdue))
            self.flush()

    def sync_remote(self, fp: str) -> None:
        """Make (user, "@"+broker) devices match where `fp` is online elsewhere now."""
        if self.cloud is None or fp.startswith("@"):
            return
        where = self.cloud.where(fp)
        remote = {b for b in where if b != self.me}
        online = self.delivery.online.get(fp, {})
        for device, dev in list(online.items()):
            if device.startswith("@") and device[1:] not in remote:
                self.delivery.detach(dev)
        if remote and (fp in self.delivery.online or self.store.last_seq(fp) > 0):
            for broker in remote:
                if remote_device(broker) not in online:
                    self._attach(fp, remote_device(broker), self._floor(fp, where[broker]))

    def _floor(self, user: str, devices: list[str]) -> int:
        """Where a relay device toward the broker `devices` are online at may start: what all
        of them acknowledged here (when they were here) need not cross the cloud again, so
        a user who moves is sent the unread mail, not the mailbox. A device never seen here
        has acknowledged nothing here: then there is no floor."""
        floor: int | None = None
        for device in set(devices):
            cursor = self.delivery.cursor_of(user, device)
            if cursor is None:
                return 0
            floor = cursor if floor is None else min(floor, cursor)
        return floor or 0

    def send(self, dev: Device, env: bytes, body: bytes) -> SendResult:
        """Delivery's send for relay devices: a Forward to the next hop."""
        assert self.cloud is not None
        token = self._token.get((dev.user, dev.device))
        if token is None:
            if len(self._token) >= 100_000:  # devices come and go: start over, never grow
                self._token.clear()
            token = self._token[(dev.user, dev.device)] = wire.encode((dev.user, dev.device))
        try:
            if dev.user.startswith("@"):
                fwd = msgspec.structs.replace(wire.PEER_DECODER.decode(env), token=token)
            else:
                d = _stored_deliver.decode(env)
                fwd = wire.Forward(
                    id=d.id, origin=self.me, sender=d.sender, to=d.to, group=d.group,
                    target=dev.device[1:], deliver_to=[dev.user], ts=d.ts, token=token,
                    device=d.device or "", purge=d.purge,
                )  # fmt: skip
        except (WireError, msgspec.DecodeError, msgspec.ValidationError, AttributeError) as exc:
            log.error("relay.bad_stored_envelope", error=sanitise(str(exc)))
            return SendResult.OK  # unforwardable: count it sent so it does not block the rest
        route = self.cloud.send_forward(fwd, body)
        if route is Route.OK:
            self.forwarded += 1
            return SendResult.OK
        return SendResult.FULL if route is Route.FULL else SendResult.LATER

    # -- internals ----------------------------------------------------------------------------

    def _attach(self, user: str, device: str, floor: int = 0) -> None:
        if self.delivery.device(user, device) is None:
            self.delivery.attach(Device(user, device, b"", window=RELAY_WINDOW), floor)
            self.committer.register_device(user, device)

    def _purge(self, fwd: wire.Forward) -> None:
        """收回 across the cloud: the forward's sender is the origin broker's word (an
        admitted peer's), as for every forward; only that sender's rows go (purge.py)."""
        if not valid(fwd.purge, fwd.sender, fwd.id, time.time()):
            log.warning("forward.bad_purge", id=fwd.id.hex(), sender=fwd.sender[:16])
            return
        assert fwd.purge is not None
        pair = (bytes(fwd.purge), fwd.sender)
        self.purged.add(*pair)
        # a retried unsend is purged again: its first commit may have failed (rare, and the
        # deletes find nothing the second time)
        if pair not in self._pending.purges:
            self._pending.purges.append(pair)

    def _known(self, msg_id: bytes, user: str) -> bool:
        """Seen lately? What was stored before a restart is sorted out at `flush`, in one
        query for the whole batch."""
        key = (msg_id, user)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > DEDUP_MAX:
            self._seen.popitem(last=False)
        return False

    def _drop_stored(self, pending: _Pending) -> None:
        """Take out of `pending` the rows the store holds already."""
        present = self.store.stored_already([(row[2], row[1]) for row in pending.rows])
        if not present:
            return
        keep = [k for k, row in enumerate(pending.rows) if (row[2], row[1]) not in present]
        pending.rows = [pending.rows[k] for k in keep]
        pending.fanout = [pending.fanout[k] for k in keep]
