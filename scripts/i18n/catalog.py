"""Extract every UI string into the template and bring the translations up to date with it.

    python scripts/i18n/catalog.py update   # extract, then update each tits/locale/*/…/tits.po
    python scripts/i18n/catalog.py check    # exit 1 if `update` would change a .po file

The `.po` files are written sorted, without source locations and unwrapped, so two branches
that add strings touch different lines and merge cleanly. No fuzzy matching: a new English
text gets an empty translation (the catalog test names it), never a guessed one — unless
an obsolete entry (#~, kept as translation memory) holds that very text: then it comes back.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

sys.path.insert(0, str(Path(__file__).parent))
from extract import ERROR_FOLDERS, KEYWORDS, extract  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("cli", "tits", "broker", "keyd", "router")
LOCALE = ROOT / "tits" / "locale"
DOMAIN = "tits"
PROJECT = "ω IM"


def template(root: Path = ROOT, folders: tuple[str, ...] = SOURCES) -> Catalog:
    pot = Catalog(project=PROJECT, fuzzy=False)
    for folder in folders:
        if not (root / folder).is_dir():
            continue
        found = extract_from_dir(
            root / folder,
            method_map=[("**.py", extract)],  # type: ignore[list-item]
            options_map={"**.py": {"errors": "1" if folder in ERROR_FOLDERS else ""}},
            keywords=KEYWORDS,
            comment_tags=("TRANSLATORS:",),
            strip_comment_tags=True,
        )
        for path, lineno, message, comments, context in found:
            pot.add(
                message,
                None,
                [(f"{folder}/{path}", lineno)],
                auto_comments=comments,
                context=context,
            )
    return pot


def po_files() -> list[Path]:
    return sorted(LOCALE.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def render(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_po(
        out,
        catalog,
        width=0,
        no_location=True,
        omit_header=False,
        sort_output=True,
        ignore_obsolete=False,  # kept as translation memory (#~), never compiled
        include_previous=False,
    )
    return out.getvalue()


def updated(path: Path, pot: Catalog) -> bytes:
    with path.open("rb") as f:
        catalog = read_po(f, locale=path.parts[-3], domain=DOMAIN)
    memory = dict(catalog.obsolete)
    # the header keeps its dates, so a run that finds nothing new changes nothing
    catalog.update(pot, no_fuzzy_matching=True, update_creation_date=False)
    # as msgmerge does: a text that comes back (or arrives with a merged branch) takes the
    # translation kept for it among the obsolete entries
    for message in catalog:
        key = catalog._key_for(message.id, message.context)
        old = memory.get(key)
        if message.id and not message.string and old is not None and old.string:
            message.string = old.string
        if message.id:
            catalog.obsolete.pop(key, None)  # in use again: memory no more
    return render(catalog)


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else "update"
    pot = template()
    changed = []
    for path in po_files():
        new = updated(path, pot)
        if new != path.read_bytes():
            changed.append(path)
            if what == "update":
                path.write_bytes(new)
    for path in changed:
        verb = "updated" if what == "update" else "out of date (run scripts/i18n-update)"
        print(f"{path.relative_to(ROOT)}: {verb}", file=sys.stderr)
    return 1 if what == "check" and changed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
