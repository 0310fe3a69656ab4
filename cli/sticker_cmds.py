"""`tits sticker list|show|add|make`: the packs a home has (its own and the built-in ones),
a pack someone sent (its signature checked against its creator), a pack made and signed
from a folder of PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tits.i18n import _, zh
from tits.media import stickers
from tits.media.stickers import Pack, Shelf

from .context import State
from .output import console, emit_json, safe

sticker_app = typer.Typer(help="Sticker packs (signed; check one with gpg --verify).",
                          no_args_is_help=True)  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object a line).")]


def _row(pack: Pack, folder: Path, builtin: bool) -> dict[str, object]:
    return {
        "id": pack.id,
        "name": {"zh-TW": pack.name_zh, "en": pack.name_en},
        "creator": pack.creator,
        "builtin": builtin,
        "path": str(folder / "pack.json"),
        "stickers": [
            {"code": s.code, "sha256": s.sha256, "size": s.size, "mime": s.mime, "text": s.text,
             "image": str(folder / f"{s.sha256}.png")
             if (folder / f"{s.sha256}.png").exists() else None}
            for s in pack.stickers
        ],
    }  # fmt: skip


@sticker_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The packs here: yours and the built-in ones."""
    state = State.of(ctx)
    for pack, folder, builtin in Shelf(state.home.path).packs():
        if as_json:
            emit_json(_row(pack, folder, builtin))
            continue
        codes = " ".join(s.code for s in pack.stickers)
        console.print(
            Text.assemble(
                (pack.id, "bold"),
                "  ",
                safe(pack.name_zh if zh() else pack.name_en),
                (f"  {_('built-in')}" if builtin else "", "dim"),
                "\n  ",
                (codes, "dim"),
            )
        )


@sticker_app.command("show")
def show(ctx: typer.Context, pack_id: Annotated[str, typer.Argument(help="The pack's id.")],
         as_json: JsonOpt = False) -> None:  # fmt: skip
    """One pack's stickers: shortcode, text rendering, image."""
    state = State.of(ctx)
    pack, folder, builtin = Shelf(state.home.path).get(pack_id)
    if as_json:
        emit_json(_row(pack, folder, builtin))
        return
    table = Table(title=f"{safe(pack.name_zh)} / {safe(pack.name_en)}  ({pack.id})")
    for col in (_("code"), _("text"), "SHA-256"):
        table.add_column(col)
    for s in pack.stickers:
        table.add_row(s.code, safe(s.text), s.sha256[:16])
    console.print(table)
    console.print(Text.assemble((_("creator "), "dim"), pack.creator))


@sticker_app.command("add")
def add(
    ctx: typer.Context,
    packfile: Annotated[Path, typer.Argument(help="pack.json (pack.json.asc beside it).")],
    as_json: JsonOpt = False,
) -> None:
    """Install a pack someone sent; refused unless its creator signed it (their public key
    must be here: `tits key fetch`)."""
    state = State.of(ctx)
    state.home.require()
    pack = Shelf(state.home.path).add(packfile, state.home.identity)
    if as_json:
        emit_json({"id": pack.id, "creator": pack.creator, "stickers": len(pack.stickers)})
    else:
        console.print(Text.assemble(("✓ ", "green"), _("added sticker pack "), (pack.id, "bold")))


@sticker_app.command("make")
def make(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="A folder of PNG files (love.png → (love)).")],
    pack_id: Annotated[str, typer.Option("--id", help="The pack's id (a-z, 0-9, -).")],
    name_zh: Annotated[str, typer.Option("--name-zh", help="Its name in Traditional Chinese.")],
    name_en: Annotated[str, typer.Option("--name-en", help="Its name in English.")],
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="Add it here too.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Make and sign a pack (you are its creator): FOLDER/pack.json and pack.json.asc."""
    state = State.of(ctx)
    home = state.home
    home.require()
    path = stickers.make(folder, home.identity, home.fingerprint, pack_id=pack_id,
                         name_zh=name_zh, name_en=name_en)  # fmt: skip
    if install:
        Shelf(home.path).add(path, home.identity)
    if as_json:
        emit_json({"id": pack_id, "path": str(path), "signature": str(path) + ".asc"})
    else:
        console.print(Text.assemble(("✓ ", "green"), str(path), ("  gpg --verify ", "dim"),
                                    (f"{path}.asc {path}", "dim")))  # fmt: skip
