"""Sticker packs with real GnuPG: the built-in ones check out with plain `gpg --verify`; a
pack made and signed from a folder of PNGs installs; one signed by someone other than its
stated creator, or changed after signing, is refused."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.support import kill_agent
from tits.errors import MediaError
from tits.media import stickers
from tits.media.stickers import BUILTIN, Shelf

from ..conftest import Users


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "PNG")
    return out.getvalue()


def test_the_builtin_packs_verify_with_plain_gpg(tmp_path: Path) -> None:
    gnupg = tmp_path / "g"
    gnupg.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(gnupg))
    try:
        subprocess.run(["gpg", "--batch", "--import", str(BUILTIN / "signer.asc")], env=env,
                       check=True, capture_output=True)  # fmt: skip
        packs = Shelf(tmp_path / "home").packs()
        assert {p.id for p, _, builtin in packs if builtin} >= {"tits-faces", "tits-signs"}
        for pack, folder, _ in packs:
            r = subprocess.run(
                ["gpg", "--batch", "--status-fd", "1", "--verify",
                 str(folder / "pack.json.asc"), str(folder / "pack.json")],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            assert r.returncode == 0 and f"VALIDSIG {pack.creator}" in r.stdout
            assert pack.name_zh and pack.name_en
            for s in pack.stickers:
                data = (folder / f"{s.sha256}.png").read_bytes()
                assert hashlib.sha256(data).hexdigest() == s.sha256 and len(data) == s.size
                assert s.text and s.code.startswith("(")
    finally:
        kill_agent(gnupg)


def test_a_pack_made_from_a_folder_installs_and_finds_by_shortcode(
    users: Users, tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "love.png").write_bytes(png((255, 0, 80)))
    (folder / "Good Night.png").write_bytes(png((0, 0, 80)))
    alice, bob = users.alice, users.bob
    path = stickers.make(folder, alice.identity, alice.fingerprint, pack_id="alice-1",
                         name_zh="愛麗絲", name_en="Alice's")  # fmt: skip
    pack = Shelf(bob.path).add(path, bob.identity)  # Bob has Alice's public key
    assert [s.code for s in pack.stickers] == ["(goodnight)", "(love)"]
    found = Shelf(bob.path).find("alice-1/(love)")
    assert found.image is not None and found.image.read_bytes() == png((255, 0, 80))
    assert Shelf(bob.path).find("(goodnight)").pack.id == "alice-1"
    shutil.rmtree(bob.path / "stickers")


def test_a_pack_not_signed_by_its_creator_is_refused(users: Users, tmp_path: Path) -> None:
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "love.png").write_bytes(png((1, 2, 3)))
    alice, mallory, bob = users.alice, users.mallory, users.bob
    # Mallory makes a pack naming Alice as its creator, signed with her own key
    path = stickers.make(folder, mallory.identity, mallory.fingerprint, pack_id="alice-2",
                         name_zh="假", name_en="Fake")  # fmt: skip
    data = path.read_bytes().replace(mallory.fingerprint.encode(), alice.fingerprint.encode())
    path.write_bytes(data)
    path.with_name("pack.json.asc").write_text(
        mallory.identity.sign_detached(data, mallory.fingerprint)
    )
    with pytest.raises(MediaError, match="not signed by its creator"):
        Shelf(bob.path).add(path, bob.identity)
    # and a pack changed after its creator signed it
    real = stickers.make(folder, alice.identity, alice.fingerprint, pack_id="alice-3",
                         name_zh="真", name_en="Real")  # fmt: skip
    real.write_bytes(real.read_bytes().replace(b'"Real"', b'"Evil"'))
    with pytest.raises(MediaError, match="not signed by its creator"):
        Shelf(bob.path).add(real, bob.identity)
    assert not (bob.path / "stickers" / "alice-2").exists()
    assert not (bob.path / "stickers" / "alice-3").exists()
