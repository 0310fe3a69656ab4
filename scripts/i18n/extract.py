"""Babel extraction for ω IM: gettext calls, plus the texts Typer shows in `--help`.

`_()`, `N_()`, `pgettext()` and `ngettext()` are found in the syntax tree, inside f-strings too
(Babel's tokenizing extractor skips an f-string whole on Python 3.11). Typer
takes a command's help from `help=` arguments and from the command function's docstring; those
are English in the code and translated when the help is drawn (`tits.cli.helptext`), so they
are extracted here as they are looked up there: `inspect.cleandoc`-ed.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

HELP_KEYWORDS = ("help", "short_help", "epilog", "description")
KEYWORDS = {
    "_": None,
    "N_": None,
    "NC_": ((1, "c"), 2),
    "pgettext": ((1, "c"), 2),
    "ngettext": (1, 2),
}
ARITY = {"_": 1, "N_": 1, "NC_": 2, "pgettext": 2, "ngettext": 2}  # leading text arguments


def _is_typer(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "typer"
        for n in ast.walk(node)
    )


def _is_command(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function Typer shows: decorated as a command or callback, or taking Typer
    parameters (a `typer.Context`, an `Annotated[..., typer.Option(...)]`)."""
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr in ("command", "callback"):
            return True
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    return any(a.annotation is not None and _is_typer(a.annotation) for a in args)


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def gettext_calls(source: str | bytes) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if name not in ARITY or len(node.args) < ARITY[name]:
            continue
        texts = [_text(a) for a in node.args[: ARITY[name]]]
        if all(t is not None for t in texts):
            yield node.lineno, name, tuple(t for t in texts if t is not None)


ERROR_CONTEXT = "error"  # tits.i18n.ERROR_CONTEXT
ERROR_FOLDERS = ("cli", "tits")  # the client's; the servers' errors are for their logs
_WRAPPERS = {"safe", "str", "repr", "escape", "int", "float", "abs", "round"}
_CONVERSIONS = {115: "!s", 114: "!r", 97: "!a"}
_BUILTIN = set(dir(builtins))  # ValueError & co. are caught and reworded, never shown as such


def _field_name(expr: ast.expr) -> str:
    """As scripts/i18n/convert.py names a placeholder: by the expression's last part."""
    if isinstance(expr, ast.Name):
        return expr.id.strip("_") or "value"
    if isinstance(expr, ast.Attribute):
        return expr.attr.strip("_") or "value"
    if isinstance(expr, ast.Subscript):
        key = expr.slice
        if isinstance(key, ast.Constant) and str(key.value).isidentifier():
            return str(key.value)
        return _field_name(expr.value)
    if isinstance(expr, ast.Call):
        func = expr.func.id if isinstance(expr.func, ast.Name) else None
        if func == "len" and expr.args:
            return "n_" + _field_name(expr.args[0])
        if func in _WRAPPERS and expr.args:
            return _field_name(expr.args[0])
        return _field_name(expr.func)
    if isinstance(expr, ast.BinOp):
        return _field_name(expr.left)
    return "value"


def error_template(node: ast.expr) -> str | None:
    """An error's text with `{name}` fields where its f-string had expressions, the form
    `tits.i18n.error_text` matches the shown message against."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if not isinstance(node, ast.JoinedStr):
        return None
    out: list[str] = []
    seen: dict[str, str] = {}
    for part in node.values:
        if isinstance(part, ast.Constant):
            out.append(str(part.value).replace("{", "{{").replace("}", "}}"))
            continue
        assert isinstance(part, ast.FormattedValue)
        code = ast.unparse(part.value)
        name = seen.get(code)
        if name is None:
            base = name = _field_name(part.value)
            i = 2
            while name in seen.values():
                name, i = f"{base}_{i}", i + 1
            seen[code] = name
        spec = ""
        if isinstance(part.format_spec, ast.JoinedStr):
            if not all(isinstance(v, ast.Constant) for v in part.format_spec.values):
                return None
            spec = ":" + "".join(str(v.value) for v in part.format_spec.values)  # type: ignore[attr-defined]
        out.append("{" + name + _CONVERSIONS.get(part.conversion, "") + spec + "}")
    return "".join(out)


def error_texts(source: str | bytes) -> Iterator[tuple[int, str]]:
    """`raise SomeError("…")` / `raise SomeError(f"…")`: shown by the CLI after 錯誤:."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call):
            continue
        func = node.exc.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if not name.endswith("Error") or name in _BUILTIN or not node.exc.args:
            continue
        text = error_template(node.exc.args[0])
        if text and text.strip() and re.search(r"[A-Za-z]{2}", text):
            yield node.lineno, text


def help_texts(source: str | bytes) -> Iterator[tuple[int, str]]:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if (
                    kw.arg in HELP_KEYWORDS
                    and isinstance(kw.value, ast.Constant)
                    and isinstance(kw.value.value, str)
                    and kw.value.value.strip()
                ):
                    yield kw.value.lineno, inspect.cleandoc(kw.value.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_command(node):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield node.body[0].lineno, doc


def extract(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any],
    comment_tags: Collection[str],
    options: dict[str, Any],
) -> Iterator[tuple[int, str | None, Any, list[str]]]:
    source = fileobj.read()
    for lineno, name, texts in gettext_calls(source):
        yield lineno, name, texts, []
    for lineno, text in help_texts(source):
        yield lineno, None, (text,), ["--help"]
    if options.get("errors"):
        for lineno, text in error_texts(source):
            yield lineno, "pgettext", (ERROR_CONTEXT, text), []
