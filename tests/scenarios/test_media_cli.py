"""Alice sends Bob an album and a file on the command line; `recv --json` reports each as
`kind: "media"` with its `media` object, fetched into Bob's home (or, with `--no-media`,
left for `tits media get`); a sender-given name that tries to leave the media folder
lands inside it, made safe."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from PIL import Image

from tests.broker_fixtures import BrokerProc
from tests.keyd_fixtures import KeydProcess
from tits.cli.media_cmds import render_media
from tits.client.blocking import Messenger
from tits.home import Home

from .test_chat_cli import cloud, tits  # noqa: F401 - the fixture


def _setup(root: Path, keyd: KeydProcess, broker: BrokerProc) -> dict[str, str]:
    fps = {}
    for who in ("alice", "bob"):
        out = tits(
            root / who, "init", "--name", who.title(), "--email", f"{who}@example.org",
            "--broker", broker.url, "--keyserver", keyd.url, "--json",
        )  # fmt: skip
        fps[who] = json.loads(out.stdout)["fingerprint"]
        tits(root / who, "key", "publish")
    tits(root / "alice", "contact", "add", "bob", fps["bob"])
    tits(root / "bob", "contact", "add", "alice", fps["alice"])
    return fps


def _lines(out: str) -> list[dict[str, object]]:
    return [g for g in map(json.loads, out.splitlines()) if g["kind"] != "receipt"]


def test_an_album_and_a_file_on_the_command_line(
    cloud: tuple[Path, KeydProcess, BrokerProc],  # noqa: F811
) -> None:
    root, keyd, broker = cloud
    _setup(root, keyd, broker)
    one, two = root / "一.bin", root / "two.txt"
    one.write_bytes(os.urandom(2_500_000))
    two.write_text("晚安\n" * 1000)
    r = tits(root / "alice", "send", "@bob", "相簿", "--file", str(one), "--file", str(two),
             "--json")  # fmt: skip
    assert len(json.loads(r.stdout)["ids"]) == 3 and r.stderr == ""  # no bar with --json

    got = _lines(tits(root / "bob", "recv", "--json").stdout)
    assert [g["kind"] for g in got] == ["text", "media", "media"]
    for g, src in zip(got[1:], (one, two), strict=True):
        media = g["media"]
        assert isinstance(media, dict)
        assert media["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert media["size"] == src.stat().st_size and media["verified"] is True
        assert media["name"] == src.name
        assert Path(str(media["path"])).read_bytes() == src.read_bytes()
        assert Path(str(media["path"])).parent == root / "bob" / "media"
    assert got[2]["media"]["mime"] == "text/plain"  # type: ignore[index]

    # --no-media: the message shows, its path null until `tits media get`
    three = root / "three.bin"
    three.write_bytes(os.urandom(300_000))
    tits(root / "alice", "send", "@bob", "--file", str(three))
    [g] = _lines(tits(root / "bob", "recv", "--json", "--no-media").stdout)
    media = g["media"]
    assert isinstance(media, dict) and media["path"] is None
    r = tits(root / "bob", "media", "get", str(media["sha256"]), "--json")
    path = json.loads(r.stdout)["media"]["path"]
    assert Path(path).read_bytes() == three.read_bytes()


def test_a_name_that_leaves_the_media_folder_lands_inside_it(
    cloud: tuple[Path, KeydProcess, BrokerProc],  # noqa: F811
) -> None:
    root, keyd, broker = cloud
    fps = _setup(root, keyd, broker)
    evil = root / "evil.sh"
    evil.write_bytes(b"echo pwned\n")
    with Messenger(Home(root / "alice")) as a:
        m = a._run(a.client.scan(evil, name="../../.bashrc\x1b[2K"))
        assert m.name == "bashrc[2K"  # the sender's own client makes it safe too...
        m.name = "../../.bashrc"  # ... and a hostile one would not
        m.mime = "image/png"  # nor tell the truth about what it is
        a.send_file(fps["bob"], evil, manifest=m)
        photo = root / "photo.png"
        Image.new("RGB", (800, 600), (10, 120, 200)).save(photo)
        a.send_file(fps["bob"], photo)
    got = _lines(tits(root / "bob", "recv", "--json", "--no-media").stdout)
    thumb = got[1]["media"]["thumbnail"]  # type: ignore[index]
    with Image.open(str(thumb)) as im:  # there at once, before any fetch
        assert max(im.size) <= 160
    assert got[1]["media"]["path"] is None  # type: ignore[index]
    r = tits(root / "bob", "media", "get", str(got[0]["media"]["sha256"]), "--json")  # type: ignore[index]
    media = json.loads(r.stdout)["media"]
    assert media["mime"] == "text/plain" and media["claimed_mime"] == "image/png"
    assert isinstance(media, dict) and media["name"] == "bashrc"
    assert (root / "bob" / "media" / "files" / "bashrc").read_bytes() == b"echo pwned\n"
    assert not (root / ".bashrc").exists() and not (root / "bob" / ".bashrc").exists()


def test_a_sticker_shows_from_the_receivers_own_pack(
    cloud: tuple[Path, KeydProcess, BrokerProc],  # noqa: F811
) -> None:
    root, keyd, broker = cloud
    _setup(root, keyd, broker)
    packs = [
        json.loads(x)
        for x in tits(root / "bob", "sticker", "list", "--json").stdout.split("\n")
        if x
    ]
    faces = next(p for p in packs if p["id"] == "tits-faces")
    love = next(s for s in faces["stickers"] if s["code"] == "(love)")
    for _ in range(3):
        tits(root / "alice", "send", "@bob", "--sticker", "(love)")
    got = _lines(tits(root / "bob", "recv", "--json").stdout)
    assert len(got) == 3
    for g in got:
        media = g["media"]
        assert isinstance(media, dict)
        assert media["sticker"] == "tits-faces/(love)" and media["sha256"] == love["sha256"]
        assert media["path"] == love["image"]  # Bob's own copy: nothing fetched
    # a plain terminal shows the sticker's text rendering
    with Messenger(Home(root / "bob")) as b:
        msgs = [x for x in b.store.media_messages() if x.media()]
        assert "(♥‿♥)" in render_media(msgs[0], root / "bob").plain
