"""Codemod: `t("中文", "English")` → `_("English")`, the Chinese merged into the zh_TW catalog.

    python scripts/i18n/convert.py [--dry-run] [PATH ...]   (default: cli tits broker keyd router)

Re-runnable: a tree with no `t()` calls left is not touched, and a text already in the catalog
is not added twice, so it can run again after branches that still wrote `t()` are merged.

- f-strings keep named placeholders: `t(f"{who} 已收回", f"{who} took it back")` becomes
  `_("{who} took it back").format(who=who)`; an expression gets a name from its last part
  (`kc.base_url` → `base_url`, `len(ids)` → `n_ids`), the same name in both texts. When the two
  texts use different expressions, every one is passed to `.format()`, which ignores the ones
  a text does not use.
- The same English with two different Chinese texts: the second place gets
  `pgettext("<module>", "English")`, and the conflict is listed to be settled by a person.
- A function that also binds `_` (`for _, x in …`) has that variable renamed to `_unused`, so
  it cannot shadow the translator.
- Calls whose arguments are not string literals are left alone and listed.
"""

from __future__ import annotations

import argparse
import ast
import io
import keyword
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from babel.messages.pofile import read_po, write_po
from libcst.metadata import (
    ComprehensionScope,
    FunctionScope,
    MetadataWrapper,
    PositionProvider,
    ScopeProvider,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATHS = ("cli", "tits", "broker", "keyd", "router")
PO_IN_TREE = Path("tits/locale/zh_TW/LC_MESSAGES/tits.po")
PO = ROOT / PO_IN_TREE
IMPORT_FROM = "tits.i18n"
SKIP = {"cli/output.py"}  # defines the `t()` shim
# words Taiwan writes otherwise, fixed in the Chinese a t() call brings (the catalog test
# checks these and more)
TAIWAN = {"拓撲": "拓樸", "在線": "線上", "投遞": "遞送", "代理伺服器": "伺服器"}
# a placeholder for `safe(x)` is named for x
WRAPPERS = {"safe", "str", "repr", "escape", "int", "float", "abs", "round"}
SPLIT_AT = 72  # longer literals are written as implicit concatenations of about this width


class Unconvertible(Exception):
    pass


@dataclass
class Piece:
    text: str | None = None  # literal text, already in str.format form (braces doubled)
    expr: cst.BaseExpression | None = None
    conversion: str | None = None
    spec: str | None = None


@dataclass
class Converted:
    msgid: str
    msgstr: str
    context: str | None
    where: str


@dataclass
class Report:
    converted: list[Converted] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    import_time: list[str] = field(default_factory=list)
    local_t: list[str] = field(default_factory=list)
    reworded: list[str] = field(default_factory=list)


def _literal_value(source: str) -> str:
    value = ast.literal_eval(source)
    if not isinstance(value, str):
        raise Unconvertible("not a text")
    return value


def _escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _pieces(node: cst.BaseExpression) -> list[Piece]:
    """The parts of a string literal, f-string or implicit concatenation of them."""
    if isinstance(node, cst.ConcatenatedString):
        return _pieces(node.left) + _pieces(node.right)
    if isinstance(node, cst.SimpleString):
        if "b" in node.prefix.lower():
            raise Unconvertible("bytes")
        return [Piece(text=_escape_braces(_literal_value(node.value)))]
    if isinstance(node, cst.FormattedString):
        prefix = node.start[: -len(node.end)].lower().replace("f", "")
        out = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                # evaluated as a plain literal of the same prefix and quote: `{{` stays `{{`
                out.append(Piece(text=_literal_value(f"{prefix}{node.end}{part.value}{node.end}")))
            else:
                assert isinstance(part, cst.FormattedStringExpression)
                spec = None
                if part.format_spec:
                    if not all(isinstance(p, cst.FormattedStringText) for p in part.format_spec):
                        raise Unconvertible("a format spec with an expression")
                    spec = "".join(p.value for p in part.format_spec)  # type: ignore[attr-defined]
                if part.equal is not None:
                    raise Unconvertible("an `=` f-string expression")
                out.append(Piece(expr=part.expression, conversion=part.conversion, spec=spec))
        return out
    raise Unconvertible(f"not a string literal: {type(node).__name__}")


def _quote_of(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.ConcatenatedString):
        return _quote_of(node.left)
    if isinstance(node, cst.SimpleString):
        return node.quote
    if isinstance(node, cst.FormattedString):
        return node.end
    return '"'


def _base_name(expr: cst.BaseExpression) -> str:
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    if isinstance(expr, cst.Subscript):
        sl = expr.slice[0].slice if len(expr.slice) == 1 else None
        if isinstance(sl, cst.Index) and isinstance(sl.value, cst.SimpleString):
            key = _literal_value(sl.value.value)
            if key.isidentifier():
                return key
        return _base_name(expr.value)
    if isinstance(expr, cst.Call):
        func = expr.func.value if isinstance(expr.func, cst.Name) else None
        if func == "len" and expr.args:
            return "n_" + _base_name(expr.args[0].value)
        if func in WRAPPERS and expr.args:
            return _base_name(expr.args[0].value)
        return _base_name(expr.func)
    if isinstance(expr, cst.BinaryOperation):
        return _base_name(expr.left)
    return "value"


class Names:
    """One placeholder name per distinct expression (by its code), shared by both texts."""

    def __init__(self, module: cst.Module) -> None:
        self.module = module
        self.by_code: dict[str, str] = {}
        self.exprs: dict[str, cst.BaseExpression] = {}

    def name(self, expr: cst.BaseExpression) -> str:
        code = self.module.code_for_node(expr).strip()
        if code in self.by_code:
            return self.by_code[code]
        base = re.sub(r"\W", "_", _base_name(expr)).strip("_") or "value"
        if keyword.iskeyword(base) or base[0].isdigit():
            base += "_"
        name, i = base, 2
        while name in self.exprs:
            name, i = f"{base}_{i}", i + 1
        self.by_code[code] = name
        self.exprs[name] = expr
        return name


def _template(pieces: list[Piece], names: Names) -> tuple[str, bool]:
    out = []
    has_fields = False
    for p in pieces:
        if p.expr is None:
            out.append(p.text or "")
            continue
        has_fields = True
        field_ = names.name(p.expr)
        if p.conversion:
            field_ += "!" + p.conversion
        if p.spec:
            field_ += ":" + p.spec
        out.append("{" + field_ + "}")
    return "".join(out), has_fields


def _unescape_braces(text: str) -> str:
    return text.replace("{{", "{").replace("}}", "}")


def _literal(text: str, quote: str) -> str:
    body = text.replace("\\", "\\\\").replace(quote[0], "\\" + quote[0])
    body = body.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return quote + body + quote


def _chunks(text: str, width: int) -> list[str]:
    """`text` cut after spaces into runs of about `width` characters."""
    words = re.findall(r"\S+\s*|\s+", text)
    out, cur = [], ""
    for w in words:
        if cur and len(cur) + len(w) > width:
            out.append(cur)
            cur = ""
        cur += w
    return [*out, cur] if cur else out


def _scope_function(scope: object) -> FunctionScope | None:
    while isinstance(scope, ComprehensionScope):
        scope = scope.parent
    return scope if isinstance(scope, FunctionScope) else None


class Collect(cst.CSTVisitor):
    """Finds the `t()` calls and the `_` bindings of the functions they are in."""

    METADATA_DEPENDENCIES = (ScopeProvider,)

    def __init__(self) -> None:
        self.imports_t = False
        self.calls: set[cst.Call] = set()
        self.rename: set[cst.Name] = set()
        self.translator_calls: set[cst.Name] = set()
        # a function's own `t` (a parameter, or `t = chooser(lang)`): renamed `_`, its calls
        # converted like the imported one's; the function is listed, since what it is bound
        # to must then take one English text (e.g. `tits.i18n.translator(lang).gettext`)
        self.local_calls: set[cst.Call] = set()
        self.local_t: set[cst.Name] = set()
        self.local_functions: set[FunctionScope] = set()
        self.call_fn: dict[cst.Call, FunctionScope] = {}
        self.fn_names: dict[FunctionScope, set[cst.Name]] = {}

    def drop_function(self, fn: FunctionScope) -> None:
        """Leaves a function's own `t` and all its calls as they are."""
        calls = {c for c, f in self.call_fn.items() if f is fn}
        self.calls -= calls
        self.local_calls -= calls
        self.local_t -= self.fn_names.get(fn, set())
        self.local_functions.discard(fn)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if not isinstance(node.names, cst.ImportStar):
            if any(isinstance(a.name, cst.Name) and a.name.value == "t" for a in node.names):
                self.imports_t = True

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name):
            if node.func.value == "t":
                self.calls.add(node)
                fn = _scope_function(self.get_metadata(ScopeProvider, node, None))
                while fn is not None and "t" not in fn.assignments:
                    fn = _scope_function(fn.parent)
                if fn is not None:
                    self.local_calls.add(node)
                    self.local_functions.add(fn)
                    self.call_fn[node] = fn
                    names = self.fn_names.setdefault(fn, set())
                    for a in fn.assignments["t"]:
                        node_ = getattr(a, "node", None)  # an Assignment, not a builtin's
                        bound = node_.name if isinstance(node_, cst.Param) else node_
                        if isinstance(bound, cst.Name):
                            names.add(bound)
                        for ref in a.references:
                            if isinstance(ref.node, cst.Name):
                                names.add(ref.node)
                    self.local_t |= names
            elif node.func.value == "_":
                self.translator_calls.add(node.func)

    def visit_Name(self, node: cst.Name) -> None:
        # once the module imports `_`, a function's own `_` would shadow it (F402), or make
        # it local to the whole function (UnboundLocalError at the first `_("…")`)
        if node.value != "_" or node in self.translator_calls:
            return
        scope = self.get_metadata(ScopeProvider, node, None)
        if isinstance(scope, FunctionScope) and "_" in scope.assignments:
            self.rename.add(node)


class Convert(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider, ScopeProvider)

    def __init__(
        self, module: cst.Module, rel: str, found: Collect, known: dict, report: Report
    ) -> None:
        self.module = module
        self.rel = rel
        self.found = found
        self.known = known  # msgid → msgstr of the catalog (context None), grows as we go
        self.report = report
        self.context = rel.removesuffix(".py").replace("/", ".")
        self.in_fstring = 0
        self.converted_here = False
        self.converted_any = False
        self.used: set[str] = set()
        self.failed: set[FunctionScope] = set()  # functions with a local t() left as it was

    def visit_FormattedStringExpression(self, node: cst.FormattedStringExpression) -> None:
        self.in_fstring += 1

    def leave_FormattedStringExpression(
        self, original: cst.FormattedStringExpression, updated: cst.FormattedStringExpression
    ) -> cst.FormattedStringExpression:
        self.in_fstring -= 1
        return updated

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self.converted_here = False

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        # `# fmt: skip` kept a line of two languages laid out by hand; one language needs none
        comment = updated.trailing_whitespace.comment
        if self.converted_here and comment is not None and comment.value == "# fmt: skip":
            ws = updated.trailing_whitespace.with_changes(
                comment=None, whitespace=cst.SimpleWhitespace("")
            )
            return updated.with_changes(trailing_whitespace=ws)
        return updated

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        if original in self.found.rename:
            return updated.with_changes(value="_unused")
        if original in self.found.local_t:
            return updated.with_changes(value="_")
        return updated

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if original not in self.found.calls:
            return updated
        line = self.get_metadata(PositionProvider, original).start.line
        where = f"{self.rel}:{line}"
        args = original.args
        if original in self.found.local_calls and len(args) == 1 and not args[0].star:
            return updated  # t(english) already: once `t` is renamed, it is `_(english)`
        try:
            return self._convert(original, updated, where)
        except Unconvertible as exc:
            self.report.skipped.append(f"{where}: {exc}")
            if original in self.found.local_calls:
                self.failed.add(self.found.call_fn[original])
            return updated

    def _convert(self, original: cst.Call, updated: cst.Call, where: str) -> cst.BaseExpression:
        args = original.args
        if len(args) != 2 or any(a.keyword or a.star for a in args):
            raise Unconvertible("not t(zh, en)")
        names = Names(self.module)
        en, en_fields = _template(_pieces(args[1].value), names)
        zh, zh_fields = _template(_pieces(args[0].value), names)
        formatted = en_fields or zh_fields
        if not formatted:
            en, zh = _unescape_braces(en), _unescape_braces(zh)
        for word, better in TAIWAN.items():
            if word in zh:
                zh = zh.replace(word, better)
                self.report.reworded.append(f"{where}: {word} → {better}")
        if re.search(r"[\u3000-\u9fff\uff00-\uffef]", en):
            raise Unconvertible(f"the English text has CJK in it: {en!r}")
        local = original in self.found.local_calls
        context = None
        have = self.known.get((None, en))
        if have is not None and have and have != zh:
            if local:
                raise Unconvertible(f"{en!r} is {have!r} elsewhere, here {zh!r} (a local t)")
            context = self.context
            other = self.known.get((context, en))
            if other is not None and other and other != zh:
                raise Unconvertible(f"{en!r} is translated two ways in this module")
            self.report.conflicts.append(f"{where}: {en!r} is {have!r}, here {zh!r}")
        self.known.setdefault((context, en), zh)
        if not self.known[(context, en)]:
            self.known[(context, en)] = zh
        self.report.converted.append(Converted(en, zh, context, where))
        if self.get_metadata(ScopeProvider, original, None) is not None:
            scope = self.get_metadata(ScopeProvider, original)
            if _scope_function(scope) is None:
                self.report.import_time.append(f"{where}: {en!r} is translated at import")

        quote = _quote_of(args[1].value)
        if len(en) > SPLIT_AT and not self.in_fstring:
            lit = "\n".join(_literal(c, quote) for c in _chunks(en, SPLIT_AT))
        else:
            lit = _literal(en, quote)
        func = "_"
        call_args = lit
        if context is not None:
            func = "pgettext"
            call_args = f"{_literal(context, quote)}, {lit}"
        if not local:
            self.used.add(func)
        self.converted_any = True
        code = f"{func}(\n{call_args}\n)" if "\n" in lit else f"{func}({call_args})"
        if formatted:
            kwargs = ", ".join(
                f"{n}={self.module.code_for_node(e).strip()}" for n, e in names.exprs.items()
            )
            code = f"{code}.format({kwargs})"
        new = cst.parse_expression(code)
        self.converted_here = True
        return new.with_changes(lpar=updated.lpar, rpar=updated.rpar)


def _still_uses_t(module: cst.Module) -> bool:
    class Uses(cst.CSTVisitor):
        found = False

        def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
            return False

        def visit_Name(self, node: cst.Name) -> None:
            if node.value == "t":
                self.found = True

        def visit_SimpleString(self, node: cst.SimpleString) -> None:
            # `__all__ = [..., "t"]`: a module that re-exports the shim keeps it
            if node.value in ('"t"', "'t'"):
                self.found = True

    v = Uses()
    module.visit(v)
    return v.found


class FixImports(cst.CSTTransformer):
    def __init__(self, drop_t: bool, add: set[str]) -> None:
        self.drop_t = drop_t
        self.add = set(add)
        self.done = False

    def leave_ImportFrom(
        self, original: cst.ImportFrom, updated: cst.ImportFrom
    ) -> cst.ImportFrom | cst.RemovalSentinel:
        if isinstance(updated.names, cst.ImportStar):
            return updated
        names = list(updated.names)
        mod = cst.Module([]).code_for_node(updated.module) if updated.module else ""
        if self.drop_t:
            names = [a for a in names if not (isinstance(a.name, cst.Name) and a.name.value == "t")]
        if mod == IMPORT_FROM and not updated.relative:
            have = {a.name.value for a in names if isinstance(a.name, cst.Name)}
            names += [cst.ImportAlias(cst.Name(n)) for n in sorted(self.add - have)]
            self.done = True
        if not names:
            return cst.RemoveFromParent()
        names = [n.with_changes(comma=cst.MaybeSentinel.DEFAULT) for n in names]
        return updated.with_changes(names=names)

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        if self.done or not self.add:
            return updated
        stmt = cst.parse_statement(f"from {IMPORT_FROM} import {', '.join(sorted(self.add))}\n")
        body = list(updated.body)
        at = 0
        for i, s in enumerate(body):  # after the last top-level import
            if isinstance(s, cst.SimpleStatementLine) and isinstance(
                s.body[0], (cst.Import, cst.ImportFrom)
            ):
                at = i + 1
        body.insert(at, stmt)
        return updated.with_changes(body=body)


def convert_file(path: Path, known: dict, report: Report) -> str | None:
    source = path.read_text(encoding="utf-8")
    if not re.search(r"\bt\(", source):
        return None
    wrapper = MetadataWrapper(cst.parse_module(source))
    found = Collect()
    wrapper.visit(found)
    if not found.calls or not (found.imports_t or found.local_calls):
        return None
    if not found.imports_t:  # only a function's own `t`: leave the others alone
        found.calls &= found.local_calls
    rel = path.relative_to(ROOT).as_posix()
    # a function whose own t() cannot all be converted keeps all of them (its `t` must stay
    # bound): found on a first pass, then converted again without those functions
    saved = (dict(known), len(report.converted), len(report.import_time))
    conv = Convert(wrapper.module, rel, found, known, report)
    new = wrapper.visit(conv)
    if conv.failed:
        known.clear()
        known.update(saved[0])
        del report.converted[saved[1] :], report.import_time[saved[2] :]
        skipped = list(report.skipped)
        for fn in conv.failed:
            found.drop_function(fn)
        conv = Convert(wrapper.module, rel, found, known, report)
        new = wrapper.visit(conv)
        report.skipped[:] = skipped  # the first pass named what could not be converted
    if not conv.converted_any:
        return None
    for fn in found.local_functions:
        node = fn.node
        name = node.name.value if isinstance(node, cst.FunctionDef) else "lambda"
        report.local_t.append(f"{rel}: {name}()")
    if conv.used or found.imports_t:
        drop = found.imports_t and not _still_uses_t(new)
        new = new.visit(FixImports(drop_t=drop, add=conv.used))
    return new.code


def _catalog():
    with PO.open("rb") as f:
        return read_po(f, locale="zh_TW", domain="tits")


def merge_po(converted: list[Converted]) -> int:
    catalog = _catalog()
    added = 0
    for c in converted:
        have = catalog.get(c.msgid, context=c.context)
        if have is None:
            key = (c.msgid, c.context) if c.context else c.msgid
            kept = catalog.obsolete.pop(key, None)  # translation memory: the reviewed text
            catalog.add(
                c.msgid, kept.string if kept and kept.string else c.msgstr, context=c.context
            )
            added += 1
        elif not have.string:
            have.string = c.msgstr
            added += 1
        # a translation already there is kept, even one whose code is gone (it was reviewed)
    out = io.BytesIO()
    write_po(out, catalog, width=0, no_location=True, sort_output=True, ignore_obsolete=False)
    PO.write_bytes(out.getvalue())
    return added


def main(argv: list[str] | None = None) -> int:
    global ROOT, PO
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=DEFAULT_PATHS)
    ap.add_argument("--dry-run", action="store_true", help="report only; change no file")
    ap.add_argument("--root", type=Path, default=ROOT, help="the tree (for tests)")
    ap.add_argument("--po", type=Path, default=None, help="the zh_TW catalog (for tests)")
    opts = ap.parse_args(argv)
    ROOT = opts.root.resolve()
    PO = opts.po.resolve() if opts.po else ROOT / PO_IN_TREE
    files = []
    for p in opts.paths:
        path = (ROOT / p).resolve()
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    # what the code still uses: a translation whose text left the code (a file another branch
    # rewrote) is no conflict for a text that comes back with other Chinese
    sys.path.insert(0, str(Path(__file__).parent))
    from catalog import template

    folders = tuple(sorted(set(DEFAULT_PATHS) | {Path(p).parts[0] for p in opts.paths}))
    used = {(m.context, str(m.id)) for m in template(ROOT, folders) if m.id}
    known = {(m.context, m.id): m.string for m in _catalog() if m.id and (m.context, m.id) in used}
    report = Report()
    changed = []
    for path in files:
        if path.relative_to(ROOT).as_posix() in SKIP or ".venv" in path.parts:
            continue
        code = convert_file(path, known, report)
        if code is not None:
            changed.append(path)
            if not opts.dry_run:
                path.write_text(code, encoding="utf-8")
    added = 0 if opts.dry_run else merge_po(report.converted)
    if changed and not opts.dry_run:
        rels = [str(p) for p in changed]
        ruff = [sys.executable, "-m", "ruff"]
        subprocess.run([*ruff, "check", "--select", "I", "--fix", "-q", *rels], check=False)
        subprocess.run([*ruff, "format", "-q", *rels], check=False)
    print(
        f"{len(report.converted)} t() calls converted in {len(changed)} files; "
        f"{added} translations added to {PO}"
    )
    for title, items in (
        ("left as they are (convert by hand)", report.skipped),
        ("same English, other Chinese: pgettext() with the module as context", report.conflicts),
        ("translated at import (the language is fixed then)", report.import_time),
        ("Chinese reworded as Taiwan writes it", report.reworded),
        (
            "a function's own t renamed _: bind it to a one-argument gettext "
            "(e.g. tits.i18n.translator(lang).gettext) and fix its type",
            report.local_t,
        ),
    ):
        if items:
            print(f"\n{title}:")
            for item in items:
                print(f"  {item}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
