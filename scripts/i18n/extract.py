"""Babel extraction for ω IM: gettext calls, plus the texts Typer shows in `--help`.

`_()`, `N_()`, `pgettext()` and `ngettext()` are found in the syntax tree, inside f-strings too
(Babel's tokenizing extractor skips an f-string whole on Python 3.11). Typer
takes a command's help from `help=` arguments and from the command function's docstring; those
are English in the code and translated when the help is drawn (`tits.cli.helptext`), so they
are extracted here as they are looked up there: `inspect.cleandoc`-ed.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

HELP_KEYWORDS = ("help", "short_help", "epilog")
KEYWORDS = {"_": None, "N_": None, "pgettext": ((1, "c"), 2), "ngettext": (1, 2)}
ARITY = {"_": 1, "N_": 1, "pgettext": 2, "ngettext": 2}  # leading text arguments


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
