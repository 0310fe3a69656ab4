"""Content-addressed media without sockets: names, MIME sniffing, manifests, thumbnails, and
a receiver's assembly refusing bytes that do not match the signed manifest."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tits import wire
from tits.errors import MediaError
from tits.media.assembly import Assembly, read_chunk
from tits.media.manifest import check, decode, scan
from tits.media.names import MAX_NAME_BYTES, safe_name
from tits.media.sniff import sniff


def png_bytes(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("given_name", "want"),
    [
        ("../../.bashrc", "bashrc"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("a\x1b[31mred\x07.txt", "a[31mred.txt"),
        ("evil\u202egnp.exe", "evilgnp.exe"),  # a bidi override would show "exe.png"
        ("", "file"),
        ("...", "file"),
        ("con.txt", "file-con.txt"),
        ("照片 01.jpg", "照片 01.jpg"),
    ],
)
def test_safe_names(given_name: str, want: str) -> None:
    assert safe_name(given_name) == want


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=400))
def test_a_safe_name_is_one_plain_component(name: str) -> None:
    out = safe_name(name)
    assert out and "/" not in out and "\\" not in out and out not in (".", "..")
    assert not out.startswith(".")
    assert all(ord(c) >= 32 and c != "\x7f" for c in out)
    assert len(out.encode()) <= MAX_NAME_BYTES


def test_mime_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    assert sniff(png_bytes()) == "image/png"
    assert sniff(b"%PDF-1.7\n...") == "application/pdf"
    assert sniff("晚安\n".encode()) == "text/plain"
    assert sniff(os.urandom(64) + b"\0") == "application/octet-stream"
    lying = tmp_path / "cat.jpg"  # a name that lies
    lying.write_bytes(b"#!/bin/sh\nrm -rf ~\n")
    assert scan(lying).mime == "text/plain"


def test_a_manifest_names_every_chunk(tmp_path: Path) -> None:
    data = os.urandom(3 * wire.CHUNK_SIZE + 123)
    f = tmp_path / "video.bin"
    f.write_bytes(data)
    m = scan(f)
    assert m.sha256 == hashlib.sha256(data).digest() and m.size == len(data)
    assert len(m.chunks) == 4
    assert m.chunks[3] == hashlib.sha256(data[3 * wire.CHUNK_SIZE :]).digest()
    assert read_chunk(f, m, 3) == data[3 * wire.CHUNK_SIZE :]
    assert decode(wire.encode(m)) == m


def test_a_picture_gets_a_small_thumbnail(tmp_path: Path) -> None:
    f = tmp_path / "photo.png"
    f.write_bytes(png_bytes((1600, 1200)))
    m = scan(f)
    assert (m.mime, m.width, m.height) == ("image/png", 1600, 1200)
    assert m.thumb_mime == "image/jpeg" and 0 < len(m.thumb) <= wire.MAX_THUMB
    with Image.open(io.BytesIO(m.thumb)) as im:
        assert max(im.size) <= 160


@pytest.mark.parametrize(
    "bad",
    [
        {"size": 10, "chunks": []},  # chunks that do not make the size
        {"size": 5 * wire.CHUNK_SIZE, "chunks": [b"\0" * 32]},
        {"size": 0, "chunks": [], "sha256": b"\1" * 32},  # empty, with another file's hash
    ],
)
def test_a_manifest_that_does_not_add_up_is_refused(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"sha256": b"\0" * 32, **bad}
    with pytest.raises(MediaError) as err:
        check(wire.Manifest(**fields))  # type: ignore[arg-type]
    assert err.value.code == "bad-manifest"


def test_a_million_chunks_or_a_negative_size_do_not_decode() -> None:
    huge = wire.encode({"sha256": b"\0" * 32, "size": 1 << 40, "chunks": []})
    negative = wire.encode({"sha256": b"\0" * 32, "size": -1, "chunks": []})
    many = wire.encode({"sha256": b"\0" * 32, "size": 1, "chunks": [b"\0" * 32] * 10_000})
    for payload in (huge, negative, many):
        with pytest.raises(MediaError) as err:
            decode(payload)
        assert err.value.code == "bad-manifest"


def test_assembly_refuses_a_swapped_chunk_and_resumes(tmp_path: Path) -> None:
    data = os.urandom(2 * wire.CHUNK_SIZE + 7)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    m = scan(src)
    home = tmp_path / "media"
    asm = Assembly(home, m)
    with pytest.raises(MediaError) as err:
        asm.put(0, os.urandom(wire.CHUNK_SIZE))  # what a hostile broker would send
    assert err.value.code == "bad-chunk" and asm.missing() == [0, 1, 2]
    asm.put(1, read_chunk(src, m, 1))
    again = Assembly(home, m)  # a new process: what was checked and written stays done
    assert again.missing() == [0, 2]
    again.put(0, read_chunk(src, m, 0))
    again.put(2, read_chunk(src, m, 2))
    final = again.finish()
    assert final == home / m.sha256.hex() and final.read_bytes() == data
    assert not list((home / ".partial").iterdir())


def test_assembly_hashes_the_whole_file_as_chunks_come_in_any_order(tmp_path: Path) -> None:
    data = os.urandom(3 * wire.CHUNK_SIZE + 5)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    m = scan(src)
    asm = Assembly(tmp_path / "media", m)
    for i in (2, 0, 3, 1):
        asm.put(i, read_chunk(src, m, i))
    assert asm.finish().read_bytes() == data
    # every chunk matches its hash, but the signed whole-file hash is another file's (a
    # sender's lie): nothing is kept under that name
    lie = wire.Manifest(sha256=os.urandom(32), size=m.size, chunk_size=m.chunk_size,
                        chunks=m.chunks)  # fmt: skip
    home = tmp_path / "other"
    asm = Assembly(home, lie)
    for i in range(len(m.chunks)):
        asm.put(i, read_chunk(src, m, i))
    with pytest.raises(MediaError) as err:
        asm.finish()
    assert err.value.code == "bad-chunk"
    assert not (home / lie.sha256.hex()).exists() and not list((home / ".partial").iterdir())


def test_a_big_manifest_goes_to_fewer_recipients_per_send() -> None:
    """A 2 GiB file's manifest × 256 recipients would pass what a broker takes in one Send."""
    from tits.client.compose import FANOUT_BYTES, recipients_per_send

    big = wire.Manifest(sha256=b"\0" * 32, size=2 << 30, chunks=[b"\1" * 32] * 2048,
                        thumb=b"\2" * wire.MAX_THUMB)  # fmt: skip
    n = len(wire.encode(big))
    per = recipients_per_send(n)
    assert 1 <= per < wire.MAX_RECIPIENTS and (n + 1024) * per <= FANOUT_BYTES
    assert recipients_per_send(200) == wire.MAX_RECIPIENTS  # a text: as many as may be
