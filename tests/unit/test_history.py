"""The history archive: what each choice keeps, chunks in any order and asked for again,
and archives that are truncated, altered, hold other files or another user's chats refused."""

from __future__ import annotations

import io
import os
import random
import tarfile
import time
from pathlib import Path

import pytest

from tits import wire
from tits.client import history as H
from tits.client.model import Message
from tits.client.store import LocalStore
from tits.session import direct_conversation_id

ME = "A" * 40
BOB = "B" * 40
EVE = "E" * 40
SHA = "ab" * 32


def _msgs(n: int, sender: str, to: str, age_days: float = 0) -> list[Message]:
    ts = int((time.time() - age_days * 86400) * 1000)
    return [
        Message(
            id=wire.new_msg_id(),
            conv=direct_conversation_id(sender, to),
            sender=sender,
            to=[to],
            group=None,
            kind="text",
            text=f"訊息 {i}",
            verified=True,
            ts=ts + i,
        )  # fmt: skip
        for i in range(n)
    ]


def _home(tmp_path: Path, old: int = 5, new: int = 1000) -> Path:
    home = tmp_path / "old"
    store = LocalStore(home)
    msgs = _msgs(old, BOB, ME, age_days=60) + _msgs(new, ME, BOB)
    msgs[-1].kind, msgs[-1].mime, msgs[-1].file = "media", "image/png", str(home / "media" / SHA)
    store.record(msgs)
    store.close()
    (home / "contacts.toml").write_text(f'bob = "{BOB}"\n')
    return home


def _transfer(archive: Path, dest: Path, shuffle: bool = True) -> H.Receiver:
    size = archive.stat().st_size
    got = H.Receiver(dest, H.chunk_count(size), size, H.digest(archive))
    parts = list(H.chunks(archive))
    if shuffle:
        random.shuffle(parts)
    for i, data in parts:
        got.add(i, data)
    return got


@pytest.mark.parametrize(("choice", "count"), [("all", 1005), ("30d", 1000), ("none", 0)])
def test_each_choice_brings_what_it_says(tmp_path: Path, choice: str, count: int) -> None:
    archive = H.make_archive(_home(tmp_path), choice, tmp_path / "work")
    got = _transfer(archive, tmp_path / "in.tar")
    new = tmp_path / "new"
    new.mkdir()
    assert H.install(got.finish(), new, ME) == count
    store = LocalStore(new)
    conv = direct_conversation_id(ME, BOB)
    chat = store.history(conv, limit=5000)
    assert len(chat) == count
    if count:  # a picture names where this home keeps media (fetched on demand)
        assert chat[-1].file == str(new / "media" / SHA)
    store.close()
    assert (new / "contacts.toml").read_text() == f'bob = "{BOB}"\n'


def test_a_transfer_resumes_with_only_what_is_missing(tmp_path: Path) -> None:
    archive = H.make_archive(_home(tmp_path, new=3000), "all", tmp_path / "work")
    size = archive.stat().st_size
    got = H.Receiver(tmp_path / "in.tar", H.chunk_count(size), size, H.digest(archive))
    assert got.total > 2
    parts = list(H.chunks(archive))
    for i, data in parts[::2]:  # every other chunk was lost on the way
        got.add(i, data)
    with pytest.raises(H.HistoryError, match="truncated"):
        got.finish()
    assert got.missing == [i for i, _ in parts[1::2]]
    for i in got.missing:
        assert got.add(i, H.read_chunk(archive, i))
    assert not got.add(0, parts[0][1])  # twice: taken once
    assert H.digest(got.finish()) == H.digest(archive)


def test_an_altered_or_misfit_chunk_is_refused(tmp_path: Path) -> None:
    archive = H.make_archive(_home(tmp_path), "all", tmp_path / "work")
    size = archive.stat().st_size
    got = H.Receiver(tmp_path / "in.tar", H.chunk_count(size), size, H.digest(archive))
    parts = list(H.chunks(archive))
    with pytest.raises(H.HistoryError):
        got.add(len(parts), b"x")
    with pytest.raises(H.HistoryError):
        got.add(0, parts[0][1][:-1])
    for i, data in parts:
        got.add(i, data if i else bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(H.HistoryError, match="does not match"):
        got.finish()


def _tar(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../escape", "gnupg/pubring.kbx", "device.key", "config.toml"])
def test_an_archive_with_other_files_is_refused(tmp_path: Path, name: str) -> None:
    new = tmp_path / "new"
    new.mkdir()
    with pytest.raises(H.HistoryError, match="files it should not"):
        H.install(_tar(tmp_path, {name: b"x"}), new, ME)
    assert os.listdir(new) == []


def test_an_archive_of_another_users_chats_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "eve"
    store = LocalStore(home)
    store.record(_msgs(3, EVE, BOB))
    store.close()
    archive = H.make_archive(home, "all", tmp_path / "work")
    new = tmp_path / "new"
    new.mkdir()
    with pytest.raises(H.HistoryError, match="another user"):
        H.install(archive, new, ME)
    assert not (new / "store.db").exists()


def test_a_damaged_store_is_refused(tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.mkdir()
    with pytest.raises(H.HistoryError):
        H.install(_tar(tmp_path, {"store.db": b"SQLite format 3\0" + os.urandom(4000)}), new, ME)
    assert not (new / "store.db").exists()
