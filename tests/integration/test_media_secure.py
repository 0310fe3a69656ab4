"""Media in a secure chat on a real broker: a signed file arrives verified; a media item
whose signature is not its sender's device's is refused with a reason; a chunk whose bytes
do not match its hash is refused at upload, and one rotted on the broker's disk is never
saved by the receiver."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.group_fixtures import (  # noqa: F401 - fixtures
    Crowd,
    Received,
    cloud1_fixture,
    crowd_fixture,
    send_raw,
)
from tests.proc_cloud import ProcCloud
from tits import wire
from tits.errors import MediaError
from tits.media.manifest import scan
from tits.session import Envelope, sign_media

from .test_groups_secure import join, secure_group

pytestmark = pytest.mark.timeout(300)


def test_media_in_a_secure_chat(cloud1: ProcCloud, crowd: Crowd, tmp_path: Path) -> None:
    rs = join(cloud1, crowd, "alice", "bob")
    alice, bob = rs["alice"].m, rs["bob"].m
    gid = secure_group(crowd, rs, ["bob"])
    photo = tmp_path / "photo.bin"
    photo.write_bytes(os.urandom(300_000))
    m = scan(photo)
    good = alice.send_file("#" + gid.hex(), photo, manifest=m)

    # the same manifest, its signature not by Alice's device: "unsigned" media
    to = [crowd.fp("bob")]
    send = wire.Send(id=wire.new_msg_id(), sender=alice.me, to=to, group=gid)
    m.holder = alice.client.link.broker or ""  # type: ignore[union-attr]
    body = wire.BODY_DECODER.decode(
        sign_media(alice.home.device, Envelope(send.id, alice.me, to, gid), wire.encode(m),
                   wire.MANIFEST_MIME)
    )  # fmt: skip
    body.signed.signature = bytes(64)
    send_raw(alice, [(send, wire.encode(body))])

    r = rs["bob"]
    r.until(lambda r: good in {x.id for x in r.messages} and bool(r.refused), 60, "both")
    [shown] = [x for x in r.messages if x.id == good]
    assert shown.kind == "media" and shown.verified
    assert [e.id for e in r.refused] == [send.id]
    assert send.id not in {x.id for x in r.messages}

    # a chunk rotted (or swapped) on the broker's disk: the receiver never keeps it
    [blob] = [p for p in cloud1.root.rglob("blobs/*/*") if p.name == m.chunks[0].hex()]
    blob.write_bytes(os.urandom(blob.stat().st_size))
    with pytest.raises(MediaError):
        bob.fetch(shown, timeout=3.0)
    assert not (crowd.homes["bob"].path / "media" / m.sha256.hex()).exists()

    # and a chunk whose bytes lie is refused at upload; the honest one then goes, and arrives
    conn = alice.connection()
    conn._send(wire.BlobOffer(sha256=m.sha256), wire.encode(m))
    conn._send(wire.ChunkPut(sha256=m.sha256, index=0), os.urandom(300_000))
    codes: list[str] = []
    while len(codes) < 1:
        got = conn.recv(20.0)
        assert got is not None
        if isinstance(got, wire.BlobError):
            codes.append(got.code)
    assert codes == ["bad-chunk"]
    alice.send_file("#" + gid.hex(), photo, manifest=m)
    path = bob.fetch(shown)
    assert hashlib.sha256(path.read_bytes()).digest() == m.sha256
