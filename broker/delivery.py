"""Delivery to devices: what to send to whom, in order, and when a device's cursor moves.

Pure logic over a `Store` and a `send` callable, so it is tested without sockets. Every stored
message of a user has a seq (increasing, with gaps between users). Each online device has:

- `sent_upto`: every message of its user with seq <= sent_upto has been sent to it (or was
  sent *from* it: a device is not sent its own message back);
- `inflight`: sent and not yet acknowledged, by seq in seq order (seq → id, time sent,
  frames), with `ids` (id → seq) for the acknowledgements, which name ids;
- its cursor, which therefore is `min(inflight) - 1`, or `sent_upto` when nothing is in flight:
  it passes only rows that were acknowledged (or whose message is in flight again at a later
  seq: one acknowledgement of an id answers for both), or that no longer exist (an unsend
  purged them: `drop`, broker/purge.py).

A new message goes straight to a device that is caught up and has room in its window; any
other device is "behind" and is refilled from the store (`pump`) as acknowledgements free its
window. A send that fails (peer gone, or its queue full) is never counted as sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from tits.wire import BATCH_DELIVERIES, BATCH_ENVELOPES

from .store import Store


class SendResult(Enum):
    OK = 0
    FULL = 1  # the peer's queue is full (EAGAIN): try again later
    GONE = 2  # no such peer any more (EHOSTUNREACH)
    LATER = 3  # no way there right now (a broker with no route yet): try again in a while


@dataclass(eq=False)
class Device:
    user: str
    device: str
    route: bytes
    name: str = ""
    sent_upto: int = 0
    inflight: dict[int, tuple[bytes, float, bytes, bytes]] = field(default_factory=dict)
    ids: dict[bytes, int] = field(default_factory=dict)
    stalled_until: float = 0.0
    window: int = 0  # deliveries in flight before it must acknowledge; 0: the broker's default
    batch: bool = False  # it takes many deliveries a message (`wire.Deliveries`)
    inflight_bytes: int = 0  # bodies in `inflight`, bounded by WINDOW_BYTES

    @property
    def cursor(self) -> int:
        if self.inflight:
            return next(iter(self.inflight)) - 1
        return self.sent_upto


SendFn = Callable[[Device, bytes, bytes], SendResult]
SendManyFn = Callable[[Device, list[bytes], list[bytes]], SendResult]

STALL_S = 0.05  # after a full queue, wait this long before trying the device again
LATER_S = 1.0  # after "no route", this long: routes change by gossip, not by the millisecond
WINDOW_BYTES = 32 << 20  # bodies in flight per device: a window of 1 MiB pictures is not RAM


class Delivery:
    def __init__(
        self,
        store: Store,
        send: SendFn,
        window: int = 1000,
        retry_s: float = 5.0,
        send_many: SendManyFn | None = None,
    ):
        self.store = store
        self._send = send
        self._send_many = send_many
        # deliveries to batching devices, in flight already, sent at `flush` (seqs per device)
        self._out: dict[Device, list[int]] = {}
        self.window = window
        self.retry_s = retry_s
        self.online: dict[str, dict[str, Device]] = {}
        self.last: dict[str, int] = {}  # newest stored seq of each online user
        self.behind: set[Device] = set()
        self._dirty: dict[Device, int] = {}  # device → cursor last persisted
        self._left: dict[tuple[str, str], Device] = {}  # detached, cursor not yet persisted
        self.delivered = 0
        self.on_gone: Callable[[Device], None] = lambda dev: None

    # -- devices come and go ---------------------------------------------------------------

    def attach(self, dev: Device, floor: int = 0) -> int:
        """A device logged in: returns how many stored messages it has yet to acknowledge.
        `floor`: where its cursor is at least (rows known to be acknowledged otherwise)."""
        old = self.online.get(dev.user, {}).get(dev.device)
        if old is not None:
            self.detach(old)
        stored = self.store.device_cursor(dev.user, dev.device)
        left = self._left.get((dev.user, dev.device))
        # back soon after it went: where its acknowledgements had got to, not yet on disk
        cursor = max(stored, floor, left.cursor if left is not None else 0)
        dev.sent_upto = cursor
        dev.inflight.clear()
        dev.ids.clear()
        dev.inflight_bytes = 0
        devices = self.online.setdefault(dev.user, {})
        if not devices:
            self.last[dev.user] = self.store.last_seq(dev.user)
        devices[dev.device] = dev
        self._dirty.setdefault(dev, stored)
        last = self.last[dev.user]
        pending = self.store.count_after(dev.user, cursor, dev.device) if last > cursor else 0
        if last > cursor and not pending:
            dev.sent_upto = last  # all it has not acknowledged, it sent itself
        if pending:
            self.behind.add(dev)
        return pending

    def detach(self, dev: Device) -> None:
        devices = self.online.get(dev.user)
        if devices is None or devices.get(dev.device) is not dev:
            return
        del devices[dev.device]
        if not devices:
            del self.online[dev.user]
            self.last.pop(dev.user, None)
        self.behind.discard(dev)
        if dev in self._dirty:
            self._left[(dev.user, dev.device)] = dev
        # its cursor stays where acknowledgements put it; the in-flight rest is sent again
        # at its next login

    def device(self, user: str, device: str) -> Device | None:
        return self.online.get(user, {}).get(device)

    def cursor_of(self, user: str, device: str) -> int | None:
        """The device's cursor as it is now (online, or left and not yet persisted, or as
        stored); None for a device this broker has never seen."""
        dev = self.device(user, device) or self._left.get((user, device))
        if dev is not None:
            return dev.cursor
        return self.store.known_cursor(user, device)

    # -- messages and acknowledgements --------------------------------------------------------

    def stored(
        self, user: str, seq: int, msg_id: bytes, env: bytes, body: bytes, skip: str = ""
    ) -> None:
        """A message for `user` has been committed at `seq` (called in seq order); `skip`:
        the device that sent it, which is not sent it."""
        prev = self.last.get(user)
        if prev is None:
            return  # nobody online: it waits in the mailbox
        if seq <= prev:
            return  # a device attached after this commit: its reads of the store include it
        self.last[user] = seq
        for dev in list(self.online[user].values()):
            if dev.sent_upto != prev or dev in self.behind:
                self.behind.add(dev)
            elif dev.device == skip:
                dev.sent_upto = seq
            elif self._room(dev) > 0:
                self._transmit(dev, seq, msg_id, env, body)
            else:
                self.behind.add(dev)
        if self._out:
            self.flush()

    def stored_many(
        self,
        items: Iterable[tuple[str, int, bytes, bytes, bytes, str]],
        absent: Callable[[str], None] = lambda user: None,
    ) -> None:
        """`stored` for a commit's worth of (user, seq, id, env, body, skip), in seq order: a
        group message is one row per member, so this is the fan-out's inner loop (the checks
        of `stored` and `_room` inlined). `absent(user)` is called first for a user with no
        device here (the relay may give it one: a device at another broker)."""
        last, online, behind, window = self.last, self.online, self.behind, self.window
        out = self._out if self._send_many is not None else None
        now = time.monotonic()
        sent = 0
        for user, seq, msg_id, env, body, skip in items:
            if user not in online:
                absent(user)
            prev = last.get(user)
            if prev is None or seq <= prev:
                continue
            last[user] = seq
            for dev in tuple(online[user].values()):
                if dev.sent_upto != prev or dev in behind:
                    behind.add(dev)
                elif dev.device == skip:
                    dev.sent_upto = seq
                elif dev.inflight_bytes >= WINDOW_BYTES or len(dev.inflight) >= (
                    dev.window or window
                ):
                    behind.add(dev)
                elif out is not None and dev.batch and msg_id not in dev.ids:
                    # `_transmit` for a batching device, inlined (a group message is this
                    # once per member): in flight now, sent at `flush`
                    seqs = out.get(dev)
                    if seqs is None:
                        seqs = out[dev] = []
                    seqs.append(seq)
                    dev.inflight_bytes += len(body)
                    dev.inflight[seq] = (msg_id, now, env, body)
                    dev.ids[msg_id] = seq
                    dev.sent_upto = seq
                    sent += 1
                else:
                    self._transmit(dev, seq, msg_id, env, body, now)
        self.delivered += sent
        if self._out:
            self.flush()

    def acked(self, dev: Device, ids: list[bytes]) -> None:
        inflight, by_id = dev.inflight, dev.ids
        for msg_id in ids:
            seq = by_id.pop(msg_id, None)
            if seq is not None:
                gone = inflight.pop(seq)
                dev.inflight_bytes -= len(gone[3])
        self._dirty.setdefault(dev, -1)
        if dev.sent_upto < self.last.get(dev.user, 0):
            self.behind.add(dev)

    def drop(self, msg_id: bytes, mine: Callable[[bytes], bool]) -> int:
        """Take the message `msg_id` out of flight everywhere (收回: its rows are deleted), so
        no retry sends it again; only entries whose envelope `mine(env)` accepts go (the
        purge's sender's). Returns how many went. Cursors may then pass it: no row is left."""
        dropped = 0
        for devices in self.online.values():
            for dev in devices.values():
                seq = dev.ids.get(msg_id)
                if seq is None or not mine(dev.inflight[seq][2]):
                    continue
                del dev.ids[msg_id]
                gone = dev.inflight.pop(seq)
                dev.inflight_bytes -= len(gone[3])
                self._dirty.setdefault(dev, -1)
                dropped += 1
        return dropped

    def cursor_moves(self) -> list[tuple[int, str, str]]:
        """(cursor, user, device) for every device whose cursor moved since the last call."""
        out = []
        for dev, before in self._dirty.items():
            cursor = dev.cursor
            if cursor != before:
                out.append((cursor, dev.user, dev.device))
        self._dirty.clear()
        self._left.clear()
        return out

    def pump(self, now: float | None = None) -> None:
        """Refill the windows of devices that are behind, from the store."""
        if not self.behind:
            return
        now = time.monotonic() if now is None else now
        for dev in list(self.behind):
            if dev.stalled_until > now:
                continue
            room = self._room(dev)
            last = self.last.get(dev.user, 0)
            while room > 0 and dev.sent_upto < last:
                rows = self.store.fetch(dev.user, dev.sent_upto, min(room, 256))
                if not rows:
                    dev.sent_upto = last
                    break
                for seq, msg_id, env, body, skip in rows:
                    if skip == dev.device:
                        dev.sent_upto = seq  # its own message: not sent back
                        continue
                    if room <= 0 or not self._transmit(dev, seq, bytes(msg_id), env, body):
                        break
                    room = self._room(dev)
                else:
                    continue
                break
            if dev.sent_upto >= last and self.device(dev.user, dev.device) is dev:
                self.behind.discard(dev)
            elif self.device(dev.user, dev.device) is not dev:
                self.behind.discard(dev)
        if self._out:
            self.flush()

    def flush(self) -> None:
        """Send what `_transmit` batched: per device, `Deliveries` of at most
        BATCH_DELIVERIES deliveries and BATCH_ENVELOPES bytes of envelopes. What cannot be sent
        (its queue full, or gone) is taken back out of flight: never counted as sent."""
        out, self._out = self._out, {}
        for dev, seqs in out.items():
            if self.device(dev.user, dev.device) is dev:
                self._flush_device(dev, seqs)

    def _flush_device(self, dev: Device, seqs: list[int]) -> None:
        assert self._send_many is not None
        inflight = dev.inflight
        i, n = 0, len(seqs)
        while i < n:
            envs: list[bytes] = []
            bodies: list[bytes] = []
            size = 0
            j = i
            while j < n and len(envs) < BATCH_DELIVERIES:
                entry = inflight.get(seqs[j])
                if entry is not None:  # (a later copy of its message took its place)
                    if envs and size + len(entry[2]) > BATCH_ENVELOPES:
                        break
                    envs.append(entry[2])
                    bodies.append(entry[3])
                    size += len(entry[2])
                j += 1
            if not envs:
                i = j
                continue
            result = self._send_many(dev, envs, bodies)
            if result is SendResult.OK:
                i = j
                continue
            for seq in seqs[i:]:  # not sent: from here on, none of these went
                gone = inflight.pop(seq, None)
                if gone is not None:
                    dev.inflight_bytes -= len(gone[3])
                    if dev.ids.get(gone[0]) == seq:
                        del dev.ids[gone[0]]
                    self.delivered -= 1
            dev.sent_upto = min(dev.sent_upto, seqs[i] - 1)
            if result is SendResult.GONE:
                self._gone(dev)
            else:
                wait = STALL_S if result is SendResult.FULL else LATER_S
                dev.stalled_until = time.monotonic() + wait
                self.behind.add(dev)
            return

    def retry(
        self,
        now: float | None = None,
        wait_s: float | None = None,
        only: Callable[[Device], bool] | None = None,
    ) -> int:
        """Send again what has waited longer than `wait_s` (default `retry_s`) for an
        acknowledgement, on every device or on those `only` picks."""
        now = time.monotonic() if now is None else now
        limit = now - (self.retry_s if wait_s is None else wait_s)
        resent = 0
        for devices in list(self.online.values()):
            for dev in list(devices.values()):
                if only is not None and not only(dev):
                    continue
                for seq, (msg_id, sent, env, body) in list(dev.inflight.items()):
                    if sent > limit:
                        continue
                    result = self._send(dev, env, body)
                    if result is SendResult.GONE:
                        self._gone(dev)
                        break
                    if result is SendResult.OK:
                        dev.inflight[seq] = (msg_id, now, env, body)
                        resent += 1
                    else:
                        break
        return resent

    # -- internals ----------------------------------------------------------------------------

    def _room(self, dev: Device) -> int:
        """How many more it may have in flight (none once its bodies fill WINDOW_BYTES)."""
        if dev.inflight_bytes >= WINDOW_BYTES:
            return 0
        return (dev.window or self.window) - len(dev.inflight)

    def _transmit(
        self, dev: Device, seq: int, msg_id: bytes, env: bytes, body: bytes, now: float = 0.0
    ) -> bool:
        if dev.batch and self._send_many is not None:
            self._out.setdefault(dev, []).append(seq)  # in flight now, sent at `flush`
            result = SendResult.OK
        else:
            result = self._send(dev, env, body)
        if result is SendResult.OK:
            earlier = dev.ids.get(msg_id)
            if earlier is not None:
                # the same message again at a later seq (a copy that came by another path):
                # the id's one acknowledgement answers for both, so the later one stands in
                gone = dev.inflight.pop(earlier)
                dev.inflight_bytes -= len(gone[3])
            dev.inflight_bytes += len(body)
            dev.inflight[seq] = (msg_id, now or time.monotonic(), env, body)
            dev.ids[msg_id] = seq
            dev.sent_upto = seq
            self.delivered += 1
            return True
        if result is SendResult.FULL or result is SendResult.LATER:
            wait = STALL_S if result is SendResult.FULL else LATER_S
            dev.stalled_until = time.monotonic() + wait
            self.behind.add(dev)
        else:
            self._gone(dev)
        return False

    def _gone(self, dev: Device) -> None:
        self.detach(dev)
        self.on_gone(dev)
