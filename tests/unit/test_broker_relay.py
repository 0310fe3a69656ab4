"""The relay between mailbox and cloud, without sockets: what is stored, acknowledged, refused."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tits import wire
from tits.broker.cloud import Route
from tits.broker.delivery import Delivery, Device, SendResult
from tits.broker.relay import Relay
from tits.broker.store import Job, Row, Store, Writer

ME, PREV, TARGET = "A" * 40, "B" * 40, "C" * 40
U1, U2, SENDER = "1" * 40, "2" * 40, "5" * 40


class Committer:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.devices: list[tuple[str, str]] = []

    def submit_relay(self, rows, fanout, done, purges=None) -> None:  # type: ignore[no-untyped-def]
        self.rows += rows
        done(True)

    def register_device(self, user: str, device: str) -> None:
        self.devices.append((user, device))


class Cloud:
    def __init__(self) -> None:
        self.acks: list[tuple[str, bytes, bytes]] = []

    def ack(self, peer: str, msg_id: bytes, token: bytes) -> None:
        self.acks.append((peer, msg_id, token))

    def where(self, fp: str) -> dict[str, list[str]]:
        return {}


def make(tmp_path: Path) -> tuple[Relay, Committer, Cloud, Delivery]:
    store = Store(tmp_path / "mail.db")
    delivery = Delivery(store, lambda dev, env, body: SendResult.OK)
    committer, cloud = Committer(), Cloud()
    relay = Relay(ME, store, delivery, committer)
    relay.cloud = cloud  # type: ignore[assignment]
    return relay, committer, cloud, delivery


def forward(**kw: object) -> wire.Forward:
    base = wire.Forward(id=b"i" * 16, origin=PREV, sender=SENDER, to=[U1, U2], target=TARGET,
                        hops=5, deliver_to=[U1], ts=0, token=b"t")  # fmt: skip
    return msgspec.structs.replace(base, **kw)


def test_one_message_for_two_users_passes_through_as_two_forwards(tmp_path: Path) -> None:
    relay, committer, cloud, _ = make(tmp_path)
    relay.cloud_forward_arrived(PREV, forward(), b"body")
    relay.cloud_forward_arrived(PREV, forward(deliver_to=[U2]), b"body")
    relay.flush()
    users = [r[1] for r in committer.rows]  # one pseudo user per target and recipients
    assert len(set(users)) == 2 and all(u.startswith("@" + TARGET + "/") for u in users)
    stored = [wire.PEER_DECODER.decode(r[4]) for r in committer.rows]
    assert [f.deliver_to for f in stored] == [[U1], [U2]] and all(f.hops == 4 for f in stored)
    assert len(cloud.acks) == 2
    relay.cloud_forward_arrived(PREV, forward(), b"body")  # the previous hop's retry
    relay.flush()
    assert len(committer.rows) == 2 and len(cloud.acks) == 3  # acknowledged, not stored again


def test_a_forward_for_us_is_stored_for_each_of_its_users(tmp_path: Path) -> None:
    relay, committer, cloud, _ = make(tmp_path)
    relay.cloud_forward_arrived(PREV, forward(target=ME, deliver_to=[U1, U2]), b"body")
    relay.flush()
    assert sorted(r[1] for r in committer.rows) == [U1, U2]
    env = wire.SERVER_DECODER.decode(committer.rows[0][4])
    assert isinstance(env, wire.Deliver) and env.sender == SENDER and env.to == [U1, U2]
    assert cloud.acks == [(PREV, b"i" * 16, b"t")]


def test_out_of_hops_is_kept_for_its_users_not_dropped(tmp_path: Path) -> None:
    relay, committer, cloud, _ = make(tmp_path)
    relay.cloud_forward_arrived(PREV, forward(hops=0), b"body")
    relay.flush()
    assert [r[1] for r in committer.rows] == [U1] and len(cloud.acks) == 1
    assert isinstance(wire.SERVER_DECODER.decode(committer.rows[0][4]), wire.Deliver)


def test_a_peer_cannot_acknowledge_for_a_real_device(tmp_path: Path) -> None:
    relay, _, _, delivery = make(tmp_path)
    phone = Device(U1, "0123456789abcdef", b"route")
    delivery.attach(phone)
    phone.inflight[1] = (b"m" * 16, 0.0, b"env", b"body")
    phone.ids[b"m" * 16] = 1
    relay.cloud_forward_acked(PREV, b"m" * 16, wire.encode((U1, "0123456789abcdef")))
    assert 1 in phone.inflight  # only the device itself acknowledges its deliveries
    relay.cloud_forward_acked(PREV, b"m" * 16, b"\xff garbage")  # and garbage is ignored


def test_a_forward_stored_before_a_restart_is_acknowledged_not_stored_again(
    tmp_path: Path,
) -> None:
    relay, committer, cloud, _ = make(tmp_path)
    relay.cloud_forward_arrived(PREV, forward(target=ME, deliver_to=[U1]), b"body")
    relay.flush()
    (row,) = committer.rows
    writer = Writer(tmp_path / "mail.db", "normal", lambda: None)  # the broker's commit
    writer.submit(Job(rows=[row]))
    writer.close()
    restarted, committer2, cloud2, _ = make(tmp_path)  # same store, nothing remembered
    for deliver_to in ([U1], [U1, U2]):  # the retry, and a copy that also names U2
        restarted.cloud_forward_arrived(PREV, forward(target=ME, deliver_to=deliver_to), b"body")
    restarted.flush()
    assert [r[1] for r in committer2.rows] == [U2]
    assert len(cloud2.acks) == 2


def test_two_forwards_of_one_message_kept_at_a_relay_are_sent_and_acked_apart(
    tmp_path: Path,
) -> None:
    """One message for U1 and U2 at TARGET travels as two forwards with one id. Kept by a
    relay, each must stay in flight until its own acknowledgement."""
    store = Store(tmp_path / "mail.db")
    sent: list[wire.Forward] = []

    class Net:
        def send_forward(self, fwd: wire.Forward, body: bytes) -> Route:
            sent.append(fwd)
            return Route.OK

        def ack(self, *_: object) -> None:
            pass

    committer = Committer()
    delivery = Delivery(store, lambda dev, env, body: relay.send(dev, env, body))
    relay = Relay(ME, store, delivery, committer)
    # no transit: everything is kept
    relay.cloud = Net()  # type: ignore[assignment]
    writer = Writer(tmp_path / "mail.db", "normal", lambda: None)
    for who in (U1, U2):
        relay.cloud_forward_arrived(PREV, forward(deliver_to=[who]), b"body")
    relay.flush()
    writer.submit(Job(rows=committer.rows))
    writer.close()
    for seq, user, msg_id, _s, env, body, _ts, skip in committer.rows:
        delivery.stored(user, seq, msg_id, env, body, skip)
    assert sorted(f.deliver_to[0] for f in sent) == [U1, U2]
    first = sent[0]
    relay.cloud_forward_acked(PREV, first.id, first.token)  # only the first is acknowledged
    devices = [d for ds in delivery.online.values() for d in ds.values()]
    assert sorted(len(d.inflight) for d in devices) == [0, 1]


def test_a_forward_for_us_with_a_malformed_fingerprint_is_refused_not_stored(
    tmp_path: Path,
) -> None:
    """Forwards' fingerprints are only sized on the wire (relays pass them on); the broker
    that would store them checks them."""
    relay, committer, cloud, _ = make(tmp_path)
    bad = "g" * 40
    for fwd in (
        forward(target=ME, sender=bad),
        forward(target=ME, to=[U1, bad], deliver_to=[U1]),
        forward(target=ME, to=[U1, U2], deliver_to=["a" * 40]),
    ):
        relay.cloud_forward_arrived(PREV, fwd, b"body")
    relay.flush()
    assert committer.rows == [] and len(cloud.acks) == 3  # acknowledged: not sent again
    relay.cloud_forward_arrived(PREV, forward(target=ME, id=b"k" * 16), b"body")
    relay.flush()
    assert [r[1] for r in committer.rows] == [U1]  # a good one still goes in
