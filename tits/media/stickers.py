"""Sticker packs: a signed manifest (`pack.json`, canonical JSON) with a detached OpenPGP
signature beside it (`pack.json.asc`), so anyone can check one with plain
``gpg --verify pack.json.asc pack.json``. It names the pack (id, zh-TW and English names),
its creator's fingerprint (who must be the signer), and each sticker: shortcode such as
`(love)`, the image's SHA-256, size and MIME type, and a text rendering for plain terminals.

Installed packs live in HOME/stickers/<id>/ (the manifest, its signature, each image named
by its SHA-256); the built-in ones ship with the package (stickers_builtin/, made by
scripts/make_stickers with Pillow, licensed with the project). A sticker goes as any media
does (its manifest says `sticker = "<pack>/<code>"`); a receiver who has the pack shows its
own copy, one who does not fetches the image like any file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from tits.errors import MediaError, TitsError
from tits.identity import Identity

from .sniff import sniff

FORMAT = "tits-sticker-pack-v1"
BUILTIN = Path(__file__).with_name("stickers_builtin")
MAX_STICKERS = 200
MAX_IMAGE = 512 << 10
PackId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{2,39}\Z")]
Code = Annotated[str, Meta(pattern=r"^\([a-z0-9_-]{1,30}\)\Z")]


class Sticker(Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
    size: Annotated[int, Meta(ge=1, le=MAX_IMAGE)]
    mime: Annotated[str, Meta(pattern=r"^image/(png|webp|gif|jpeg)\Z")]
    text: Annotated[str, Meta(max_length=64)]  # what a plain terminal shows


class Pack(Struct, forbid_unknown_fields=True, kw_only=True):
    format: str = FORMAT
    id: PackId
    name_zh: Annotated[str, Meta(min_length=1, max_length=64)]
    name_en: Annotated[str, Meta(min_length=1, max_length=64)]
    creator: Annotated[str, Meta(pattern=r"^[0-9A-F]{40}\Z")]
    created: Annotated[int, Meta(ge=0)]
    stickers: Annotated[list[Sticker], Meta(min_length=1, max_length=MAX_STICKERS)]

    def find(self, code: str) -> Sticker | None:
        return next((s for s in self.stickers if s.code == code), None)


_DECODER = msgspec.json.Decoder(Pack)


def encode(pack: Pack) -> bytes:
    """The exact bytes the creator signs: JSON, keys in a fixed order, UTF-8, a final \\n."""
    return msgspec.json.format(msgspec.json.encode(pack), indent=2) + b"\n"


def parse(data: bytes) -> Pack:
    try:
        pack = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MediaError(f"not a sticker pack: {exc}", code="bad-manifest") from None
    if pack.format != FORMAT:
        raise MediaError(f"not a sticker pack of format {FORMAT}", code="bad-manifest")
    if encode(pack) != data:
        raise MediaError("the sticker pack is not in its canonical form", code="bad-manifest")
    if len({s.code for s in pack.stickers}) != len(pack.stickers):
        raise MediaError("two stickers of the pack share a shortcode", code="bad-manifest")
    return pack


def _text_for(stem: str) -> str:
    return f"[{stem}]"


def make(
    folder: Path, identity: Identity, creator: str, *, pack_id: str, name_zh: str, name_en: str,
    texts: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """A pack of the PNGs in `folder` (shortcode from each file's name: love.png → (love)),
    signed by `creator`: writes folder/pack.json and folder/pack.json.asc, and each image
    again as <sha256>.png beside them. Returns pack.json's path."""
    texts = texts or {}
    stickers = []
    for png in sorted(folder.glob("*.png")):
        if re.fullmatch(r"[0-9a-f]{64}", png.stem):
            continue  # an image already named by its hash (a pack made here before)
        data = png.read_bytes()
        if sniff(data) != "image/png" or len(data) > MAX_IMAGE:
            raise MediaError(f"{png.name}: not a PNG of at most {MAX_IMAGE >> 10} KiB")
        stem = re.sub(r"[^a-z0-9_-]", "", png.stem.lower())[:30] or "s"
        digest = hashlib.sha256(data).hexdigest()
        text = texts.get(stem, _text_for(stem))
        stickers.append(
            Sticker(code=f"({stem})", sha256=digest, size=len(data), mime="image/png", text=text)
        )
        shutil.copyfile(png, folder / f"{digest}.png")
    if not stickers:
        raise MediaError(f"{folder}: no PNG files to make a pack of")
    try:
        pack = Pack(id=pack_id, name_zh=name_zh, name_en=name_en, creator=creator,
                    created=int(time.time()), stickers=stickers)  # fmt: skip
        data = encode(pack)
        parse(data)  # every limit checked as a receiver will
    except (msgspec.ValidationError, TypeError) as exc:
        raise MediaError(f"cannot make that pack: {exc}") from None
    (folder / "pack.json").write_bytes(data)
    (folder / "pack.json.asc").write_text(identity.sign_detached(data, creator))
    return folder / "pack.json"


def verify(path: Path, identity: Identity) -> Pack:
    """A pack file and the signature beside it: refused unless signed by its creator."""
    try:
        data = path.read_bytes()
        sig = path.with_name(path.name + ".asc").read_bytes()
    except OSError as exc:
        raise MediaError(f"{path}: {exc.strerror or exc}") from None
    pack = parse(data)
    if not identity.has_key(pack.creator):
        raise MediaError(
            f"no public key for the pack's creator {pack.creator[:16]}: `tits key fetch` it first"
        )
    try:
        identity.verify_detached(data, sig, pack.creator)
    except TitsError as exc:
        raise MediaError(f"the pack is not signed by its creator: {exc.message}") from None
    return pack


@dataclass(frozen=True)
class Found:
    pack: Pack
    sticker: Sticker
    image: Path | None  # None: the pack is here, this image not (yet)


class Shelf:
    """The packs a home has: its own (HOME/stickers) and the built-in ones."""

    def __init__(self, home: Path) -> None:
        self.root = home / "stickers"

    def _folders(self) -> list[tuple[Path, bool]]:
        out = (
            [(d, True) for d in sorted(BUILTIN.iterdir()) if d.is_dir()] if BUILTIN.is_dir() else []
        )
        if self.root.is_dir():
            out += [(d, False) for d in sorted(self.root.iterdir()) if d.is_dir()]
        return out

    def packs(self) -> list[tuple[Pack, Path, bool]]:
        """(pack, folder, built-in); a folder whose manifest does not parse is left out
        (it was checked when added)."""
        out = []
        seen = set()
        for folder, builtin in self._folders():
            try:
                pack = parse((folder / "pack.json").read_bytes())
            except (OSError, MediaError):
                continue
            if pack.id not in seen:
                seen.add(pack.id)
                out.append((pack, folder, builtin))
        return out

    def get(self, pack_id: str) -> tuple[Pack, Path, bool]:
        for pack, folder, builtin in self.packs():
            if pack.id == pack_id:
                return pack, folder, builtin
        raise MediaError(f"no sticker pack {pack_id!r} here (tits sticker list)")

    def find(self, ref: str) -> Found:
        """`PACK/(code)`, `PACK/code`, or a bare `(code)` (the first pack that has it)."""
        pack_id, _, code = ref.rpartition("/")
        code = code if code.startswith("(") else f"({code})"
        for pack, folder, _ in self.packs():
            if pack_id and pack.id != pack_id:
                continue
            s = pack.find(code)
            if s is not None:
                image = folder / f"{s.sha256}.png"
                return Found(pack, s, image if image.exists() else None)
        raise MediaError(f"no sticker {ref!r} in the packs here (tits sticker list)")

    def image(self, sha256: bytes) -> Path | None:
        """A sticker image any pack here has, by its hash (a receiver's own copy)."""
        name = f"{sha256.hex()}.png"
        for _, folder, _ in self.packs():
            p = folder / name
            if p.exists():
                return p
        return None

    def add(self, path: Path, identity: Identity) -> Pack:
        """Install a pack someone sent: its signature checked, its images (those beside it
        whose bytes match) copied; the others come as media when a sticker needs them."""
        pack = verify(path, identity)
        dest = self.root / pack.id
        tmp = self.root / f".{pack.id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(path, tmp / "pack.json")
        shutil.copyfile(path.with_name(path.name + ".asc"), tmp / "pack.json.asc")
        for s in pack.stickers:
            src = path.with_name(f"{s.sha256}.png")
            if src.exists() and hashlib.sha256(src.read_bytes()).hexdigest() == s.sha256:
                shutil.copyfile(src, tmp / src.name)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return pack
