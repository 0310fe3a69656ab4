"""scripts/i18n-convert: `t("中文", "English")` → `_("English")` keeps what each language
shows, call for call, and a second run changes nothing. The lead runs it again after merging
branches that still write `t()`, so the cases those branches write are all here."""

from __future__ import annotations

import gettext
import io
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tits import pofile

pytest.importorskip("libcst")
pytest.importorskip("babel")

ROOT = Path(__file__).resolve().parents[2]
CONVERT = ROOT / "scripts" / "i18n" / "convert.py"

SAMPLE = """
from tits.cli.output import console, t


def plain():
    return t("已傳送", "sent")


def fstr(who):
    return t(f"{who} 已收回訊息", f"{who} took this message back")


def different(n, names):
    return t(f"已讀 {n} 則", f"read by {', '.join(names)}")


def only_zh_has_one(n):
    return t(f"共 {n} 則", "some")


def spec(x):
    return t(f"共 {x:>3} 筆 {x!r}", f"{x:>3} in all {x!r}")


def nested(n):
    return f"[dim]{t(f'{n} 則', f'{n} left')}[/]"


def shadow(items):
    out = []
    for _, v in items:
        out.append(t("項目", "item") + str(v))
    return out


def braces():
    return t("{不是欄位}", "{not a field}")


def fbraces(n):
    return t(f"{{{n}}} 個", f"{{{n}}} of them")


def concat():
    return t("很長的" "中文", "a long " "English text")


def attr(kc):
    return t(f"找不到 {kc.base_url}", f"not at {kc.base_url}")


def calls(ids, name):
    return t(f"{len(ids)} 則給 {name.upper()}", f"{len(ids)} for {name.upper()}")


def long():
    return t(
        "很長",
        "a very long English text that goes on and on, well past seventy-two characters",
    )


def quotes():
    return t("「引號」", "it's \\"quoted\\"")


def conflict():
    return t("移除了", "removed")


def conflict2():
    return t("已移除", "removed")


def nonliteral(a, b):
    return t(a, b)


LABEL = t("標籤", "label")
"""


class KC:
    base_url = "http://k:1"


CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("plain", ()),
    ("fstr", ("阿明",)),
    ("different", (3, ["a", "b"])),
    ("only_zh_has_one", (7,)),
    ("spec", (5,)),
    ("nested", (2,)),
    ("shadow", ([(1, "x"), (2, "y")],)),
    ("braces", ()),
    ("fbraces", (4,)),
    ("concat", ()),
    ("attr", (KC(),)),
    ("calls", ([1, 2], "bob")),
    ("long", ()),
    ("quotes", ()),
    ("conflict", ()),
    ("conflict2", ()),
]

HEADER = 'msgid ""\nmsgstr ""\n"Language: zh_TW\\n"\n"Content-Type: text/plain; charset=utf-8\\n"\n'


def _run(tree: Path, po: Path) -> str:
    out = subprocess.run(
        [sys.executable, str(CONVERT), "--root", str(tree), "--po", str(po), "pkg"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


def _load(source: str, name: str, stub: types.ModuleType | None = None) -> types.ModuleType:
    mod = types.ModuleType(name)
    if stub is not None:
        sys.modules["_i18n_stub"] = stub
        source = source.replace("from tits.i18n import", "from _i18n_stub import")
    exec(compile(source, name, "exec"), mod.__dict__)  # noqa: S102 - the test's own sample
    return mod


def _stub(po: Path, zh: bool) -> types.ModuleType:
    cat = gettext.GNUTranslations(io.BytesIO(pofile.compile_po(po.read_text(encoding="utf-8"))))
    stub = types.ModuleType("_i18n_stub")
    stub._ = cat.gettext if zh else (lambda m: m)  # type: ignore[attr-defined]
    stub.pgettext = cat.pgettext if zh else (lambda c, m: m)  # type: ignore[attr-defined]
    return stub


def test_conversion_keeps_both_languages_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    sample = tree / "pkg" / "sample.py"
    sample.write_text(SAMPLE, encoding="utf-8")
    po = tmp_path / "tits.po"
    po.write_text(HEADER, encoding="utf-8")

    before: dict[str, dict[str, Any]] = {}
    for lang in ("zh-TW", "en"):
        monkeypatch.setenv("TITS_LANG", lang)
        mod = _load(SAMPLE, "before")
        before[lang] = {f: getattr(mod, f)(*args) for f, args in CALLS}
        before[lang]["LABEL"] = mod.LABEL

    report = _run(tree, po)
    converted = sample.read_text(encoding="utf-8")
    left = re.findall(r"\bt\(.*", converted)
    assert left == ["t(a, b)"], left
    assert "return t(a, b)" in converted and "not a string literal" in report
    assert "import console, t\n" in converted  # still imported: nonliteral() uses it
    assert "pgettext(" in converted and "'removed'" in report
    assert "for _unused, v in items" in converted
    assert "translated at import" in report  # LABEL

    for lang in ("zh-TW", "en"):
        mod = _load(converted, "after", _stub(po, lang == "zh-TW"))
        after = {f: getattr(mod, f)(*args) for f, args in CALLS}
        after["LABEL"] = mod.LABEL
        assert after == before[lang], lang

    catalog = {(e.msgctxt, e.msgid): e.msgstr for e in pofile.parse(po.read_text("utf-8"))}
    assert catalog[(None, "{who} took this message back")] == "{who} 已收回訊息"
    assert catalog[(None, "read by {join}")] == "已讀 {n} 則"  # each text keeps its own fields
    assert catalog[(None, "removed")] == "移除了"
    assert catalog[("pkg.sample", "removed")] == "已移除"

    po_before = po.read_bytes()
    again = _run(tree, po)
    assert "0 t() calls converted in 0 files" in again
    assert sample.read_text(encoding="utf-8") == converted and po.read_bytes() == po_before


LOCAL = """
from collections.abc import Callable

Tr = Callable[[str, str], str]


def chooser(lang):
    english = lang == "en"
    return lambda zh_tw, en: en if english else zh_tw


def rows(items, t: Tr):
    out = []
    for _, v in items:
        out.append(t(f"{v} 線上", f"{v} online"))
    return out


def page(lang):
    t = chooser(lang)
    label = lambda: t("拓樸", "topology")  # noqa: E731
    return t("計數", "counters") + label() + "".join(rows([(1, "a")], t))
"""


def test_a_functions_own_t_is_converted_and_listed(tmp_path: Path) -> None:
    """A status page that picks its language per request binds `t` locally
    (`t = chooser(lang)`, or a `t` parameter): the codemod converts those calls too, renames
    that `t` to `_`, and lists the functions, whose binding a person then points at
    `translator(lang).gettext`."""
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    page = tree / "pkg" / "page.py"
    page.write_text(LOCAL, encoding="utf-8")
    po = tmp_path / "tits.po"
    po.write_text(HEADER, encoding="utf-8")
    report = _run(tree, po)
    code = page.read_text(encoding="utf-8")
    assert "3 t() calls converted in 1 files" in report
    assert "a function's own t renamed _" in report and "rows()" in report and "page()" in report
    assert "def rows(items, _: Tr):" in code and "_ = chooser(lang)" in code
    assert "for _unused, v in items" in code and "tits.i18n" not in code
    assert '_("{v} online").format(v=v)' in code and '_("topology")' in code
    # what a person then writes: the local translator is the catalog's gettext
    code = code.replace(
        '    english = lang == "en"\n    return lambda zh_tw, en: en if english else zh_tw',
        "    return CATALOG.gettext if lang != 'en' else (lambda m: m)",
    )
    cat = gettext.GNUTranslations(io.BytesIO(pofile.compile_po(po.read_text(encoding="utf-8"))))
    mod = _load(code, "page")
    mod.CATALOG = cat  # type: ignore[attr-defined]
    assert mod.page("zh-TW") == "計數拓樸a 線上" and mod.page("en") == "counterstopologya online"


def test_a_function_whose_own_t_cannot_all_convert_keeps_all(tmp_path: Path) -> None:
    """Its `t` must stay bound for the call left as it was, so none of its calls change; a
    text the code no longer uses is no conflict (and its translation is kept); mainland
    words in the Chinese are written as Taiwan writes them."""
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "other.py").write_text(
        'from tits.i18n import _\n\nSTATE = _("down")\n', encoding="utf-8"
    )
    page = tree / "pkg" / "page.py"
    page.write_text(
        "def cell(t, alive):\n"
        '    return t("在線", "online") if alive else t("離線", "down")\n\n\n'
        "def title(t):\n"
        '    return t("計數", "counters")\n\n\n'
        "def state(t):\n"
        '    return t("在線的拓撲", "the topology online")\n',
        encoding="utf-8",
    )
    po = tmp_path / "tits.po"
    po.write_text(
        HEADER + '\nmsgid "down"\nmsgstr "停止"\n\nmsgid "counters"\nmsgstr "舊的"\n',
        encoding="utf-8",
    )
    report = _run(tree, po)
    code = page.read_text(encoding="utf-8")
    assert "'down' is '停止' elsewhere, here '離線'" in report
    assert 'def cell(t, alive):\n    return t("在線", "online") if alive else t(' in code
    assert 'def title(_):\n    return _("counters")' in code
    catalog = {e.msgid: e.msgstr for e in pofile.parse(po.read_text("utf-8"))}
    assert catalog["counters"] == "舊的"  # the catalog's own (reviewed) one is kept
    assert catalog["the topology online"] == "線上的拓樸"  # as Taiwan writes it
    assert "在線 → 線上" in report and "拓撲 → 拓樸" in report
    assert catalog["down"] == "停止" and "online" not in catalog


def test_an_obsolete_translation_comes_back_with_its_text(tmp_path: Path) -> None:
    """scripts/i18n-update keeps a text the code lost as translation memory (#~) and revives
    it when the text returns (another branch merged): no translating twice."""
    sys.path.insert(0, str(ROOT / "scripts" / "i18n"))
    try:
        from catalog import template, updated  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "m.py").write_text('from tits.i18n import _\n\nA = _("back")\n')
    po = tmp_path / "locale" / "zh_TW" / "LC_MESSAGES" / "tits.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        HEADER + '\n#~ msgid "back"\n#~ msgstr "回來了"\n\n#~ msgid "gone"\n#~ msgstr "走了"\n',
        encoding="utf-8",
    )
    text = updated(po, template(tmp_path)).decode()
    entries = {(e.msgid, e.obsolete): e.msgstr for e in pofile.parse(text)}
    assert entries[("back", False)] == "回來了" and ("back", True) not in entries
    assert entries[("gone", True)] == "走了"  # still kept for later
