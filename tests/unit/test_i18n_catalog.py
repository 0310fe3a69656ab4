"""The zh-TW catalog: every UI string has a translation, written as Taiwan writes it, and
every line is in one language.

The strings come from the code as scripts/i18n-update extracts them (gettext calls and Typer
help texts); the translations from tits/locale/zh_TW/LC_MESSAGES/tits.po.
"""

from __future__ import annotations

import ast
import gettext
import io
import re
import sys
from functools import cache
from pathlib import Path

import pytest

from tits import i18n, pofile

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "tits" / "locale" / "zh_TW" / "LC_MESSAGES" / "tits.po"
SOURCES = ("cli", "tits", "broker", "keyd", "router")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

# Words Taiwan writes otherwise (mainland or Hong Kong usage → Taiwan's), from the issue and
# from what a Taiwanese reader stumbles on in software
NOT_TAIWAN = {
    "拓撲": "拓樸",
    "在線": "線上",
    "投遞": "遞送",
    "代理伺服器": "伺服器 (a user's broker is not a proxy)",
    "服務器": "伺服器",
    "網絡": "網路",
    "默認": "預設",
    "設置": "設定",
    "用戶名": "使用者名稱",
    "軟件": "軟體",
    "屏幕": "螢幕",
    "視頻": "影片",
    "數據": "資料",
    "鏈接": "連結",
    "信息": "訊息",
    "登錄": "登入",
    "菜單": "選單",
    "緩存": "快取",
    "文件夾": "資料夾",
    "激活": "啟用",
    "密鑰": "金鑰",
    "公鑰": "公開金鑰",
    "短信": "簡訊",
    "二維碼": "QR 碼",
    "賬號": "帳號",
    "質量": "品質",
    "程序": "程式",
    "端口": "連接埠",
    "字符": "字元",
    "打印": "列印",
}


@cache
def entries() -> list[pofile.Entry]:
    return [e for e in pofile.parse(PO.read_text(encoding="utf-8")) if e.msgid]


@cache
def catalog() -> dict[tuple[str | None, str], str]:
    return {(e.msgctxt, e.msgid): e.msgstr for e in entries() if not e.obsolete}


@cache
def simplified_only() -> dict[str, str]:
    """Characters that are Simplified only (OpenCC's Simplified → Traditional table maps them
    to other characters, never to themselves), and OpenCC-standard forms Taiwan writes another
    way (爲 → 為), each with what to write instead."""
    opencc = pytest.importorskip("opencc")
    folder = Path(opencc.__file__).parent / "dictionary"

    def table(name: str) -> dict[str, list[str]]:
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        pairs = (line.split("\t", 1) for line in lines if "\t" in line)
        return {k: v.split() for k, v in pairs if len(k) == 1}

    tw_variants = table("TWVariants.txt")  # OpenCC's standard form → Taiwan's
    taiwan = {c for forms in tw_variants.values() for c in forms}
    out = {s: t[0] for s, t in table("STCharacters.txt").items() if s not in t}
    out.update({std: tw[0] for std, tw in tw_variants.items() if std not in tw})
    return {c: better for c, better in out.items() if c not in taiwan}


@cache
def extracted() -> set[tuple[str | None, str]]:
    sys.path.insert(0, str(ROOT / "scripts" / "i18n"))
    try:
        from catalog import template  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return {(m.context, str(m.id)) for m in template() if m.id}


def test_every_ui_string_has_a_zh_tw_translation() -> None:
    pytest.importorskip("babel")
    have = catalog()
    missing = sorted(
        (ctx or "", msgid) for ctx, msgid in extracted() if not have.get((ctx, msgid), "")
    )
    assert not missing, (
        "UI strings without a zh-TW translation (run scripts/i18n-update, then translate "
        f"them in {PO.relative_to(ROOT)}):\n" + "\n".join(f"  {c} {m!r}" for c, m in missing)
    )


def test_the_catalog_holds_no_string_the_code_lost() -> None:
    pytest.importorskip("babel")
    stale = sorted(m for k, m in catalog() if (k, m) not in extracted())
    assert not stale, f"in the catalog but not in the code (run scripts/i18n-update): {stale}"


def test_no_fuzzy_translations() -> None:
    fuzzy = [e.msgid for e in entries() if "fuzzy" in e.flags]
    assert not fuzzy, f"fuzzy (guessed) translations, check and unflag them: {fuzzy}"


def test_the_english_side_has_no_chinese() -> None:
    """msgid is the English text: Chinese in it means a line of two languages."""
    mixed = [e.msgid for e in entries() if CJK.search(e.msgid)]
    assert not mixed, f"English texts with Chinese in them: {mixed}"


def test_no_simplified_only_characters() -> None:
    table = simplified_only()
    assert table["们"] == "們" and "們" not in table and "里" not in table  # the table is right
    bad = [
        f"{e.msgstr!r}: {ch} → {table[ch]}"
        for e in entries()
        for ch in dict.fromkeys(e.msgstr)
        if ch in table
    ]
    assert not bad, "characters Taiwan does not write:\n" + "\n".join(bad)


def test_wording_as_taiwan_writes_it() -> None:
    bad = [
        f"{e.msgstr!r}: {word} → {better}"
        for e in entries()
        for word, better in NOT_TAIWAN.items()
        if word in e.msgstr
    ]
    assert not bad, "\n".join(bad)


# Latin words that may stand in a Chinese sentence: names, protocols, units, values
LATIN_OK = set(
    """
    gnupg gpg json url urls id ids qr ssh tcp http https hkp hkps toml systemd journald
    keyd titsd tits sigkill sigterm socket mib kib gib utf ctrl enter esc pgup pgdn true false
    debug info warning error receipts listed lang theme roc_year ed25519 cv25519 rtt ms ok
    zeromq stdin stderr regex forwarded im alice journalctl pid prev none all root unix
    """.split()
)


def _latin_words(text: str) -> list[str]:
    code = [
        r"`[^`]*`",  # code
        r"\b(tits|titsd|systemctl|journalctl|gpg)( [a-z-]+)+",  # a command to type
        r"\{[^}]*\}|\[/?[a-z ]*\]",  # fields, Rich markup
        r"\S*://\S*|--?[\w-]+|[$@]\w+|\b[A-Z_]{2,}\b",  # URLs, options, variables, NAMES
        r"[\w.~<>$-]*/[\w.~/<>$-]*|\w+\.\w+|\w+_\w+|\w+(\|\w+)+",  # paths, files, keys, a|b
    ]
    text = re.sub("|".join(code), " ", text)
    return [w for w in re.findall(r"[A-Za-z][A-Za-z0-9_]+", text) if w.lower() not in LATIN_OK]


def test_the_chinese_side_is_chinese() -> None:
    """A translation is one language: no English words left in it but names and code."""
    mixed = [
        f"{e.msgstr!r}: {words}"
        for e in entries()
        if CJK.search(e.msgstr) and (words := _latin_words(e.msgstr))
    ]
    untranslated = [e.msgid for e in entries() if e.msgstr and not CJK.search(e.msgstr)]
    assert not mixed, "English in a Chinese text:\n" + "\n".join(mixed)
    # a text with no Chinese at all is fine only if it is a symbol, a name or code
    words = [m for m in untranslated if len(_latin_words(m)) > 0]
    assert not words, f"left in English: {words}"


def test_placeholders_are_kept() -> None:
    """A translation uses only the fields its English text uses (or, where the two texts had
    different fields, fields the code passes — the English one then names fewer)."""

    def fields(text: str) -> set[str]:
        return {m for m in re.findall(r"(?<!\{)\{([A-Za-z_]\w*)[!:}]", text)}

    bad = [
        e.msgid
        for e in entries()
        if fields(e.msgid) and not fields(e.msgstr) and "{" not in e.msgstr
    ]
    assert not bad, f"translations that dropped every field: {bad}"


def test_no_t_calls_left() -> None:
    """`t("中文", "English")` is the old way; scripts/i18n-convert turns what is left into
    `_("English")` and the catalog."""
    left = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "t"
                ):
                    left.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not left, "t() calls left, run scripts/i18n-convert:\n" + "\n".join(left)


def test_compiled_catalog_matches_gettext() -> None:
    """tits/pofile.py compiles what GNU gettext reads: every entry comes back through the
    standard library's reader, contexts included."""
    cat = gettext.GNUTranslations(io.BytesIO(pofile.compile_po(PO.read_text(encoding="utf-8"))))
    for e in entries():
        if e.obsolete:
            assert cat.gettext(e.msgid) == e.msgid  # kept as memory, never compiled
            continue
        got = cat.gettext(e.msgid) if e.msgctxt is None else cat.pgettext(e.msgctxt, e.msgid)
        assert got == e.msgstr
    assert cat.info()["language"] == "zh_TW"


@pytest.mark.parametrize(
    ("env", "lang"),
    [
        ({"LANG": "zh_TW.UTF-8"}, "zh-TW"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "C"}, "zh-TW"),
        ({"LANG": "POSIX"}, "zh-TW"),
        ({}, "zh-TW"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
        ({"LANG": "zh_CN.UTF-8"}, "zh-TW"),
        ({"LANGUAGE": "en_GB:zh_TW", "LANG": "zh_TW.UTF-8"}, "en"),
        ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh-TW"),
        ({"LC_MESSAGES": "en_US.UTF-8", "LANG": "zh_TW.UTF-8"}, "en"),
        ({"TITS_LANG": "en", "LC_ALL": "zh_TW.UTF-8"}, "en"),
        ({"TITS_LANG": "zh-TW", "LANG": "en_US.UTF-8"}, "zh-TW"),
    ],
)
def test_language_follows_gettext(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], lang: str
) -> None:
    for var in ("TITS_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert i18n.current() == lang
    assert i18n._("sent") == ("已傳送" if lang == "zh-TW" else "sent")


def test_the_setting_overrides_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TITS_LANG", raising=False)
    monkeypatch.setenv("LANG", "zh_TW.UTF-8")
    try:
        i18n.choose_lang("en")
        assert i18n._("sent") == "sent"
        monkeypatch.setenv("TITS_LANG", "zh-TW")  # the environment beats the home's setting
        assert i18n._("sent") == "已傳送"
    finally:
        i18n.choose_lang(None)
