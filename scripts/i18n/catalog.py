"""Extract every UI string into the template and bring the translations up to date with it.

    python scripts/i18n/catalog.py update   # extract, then update each tits/locale/*/…/tits.po
    python scripts/i18n/catalog.py check    # exit 1 if `update` would change a .po file

The `.po` files are written sorted, without source locations and unwrapped, so two branches
that add strings touch different lines and merge cleanly. No fuzzy matching: a new English
text gets an empty translation (the catalog test names it), never a guessed one.
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
        ignore_obsolete=True,
        include_previous=False,
    )
    return out.getvalue()


def updated(path: Path, pot: Catalog) -> bytes:
    with path.open("rb") as f:
        catalog = read_po(f, locale=path.parts[-3], domain=DOMAIN)
    # the header keeps its dates, so a run that finds nothing new changes nothing
    catalog.update(pot, no_fuzzy_matching=True, update_creation_date=False)
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
