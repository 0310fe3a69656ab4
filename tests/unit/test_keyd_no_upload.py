"""No code path uploads a key to any server but our own keyd, and GnuPG homes name no key
server: the source tree is read here, so code that would is refused by this test."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tits.identity import GPG_CONF, Identity

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("tits", "keyd", "broker", "router", "cli", "scripts", "benchmarks", "configs")
# gpg/dirmngr operations that talk to key servers, in any spelling a program would use
KEYSERVER_OPS = re.compile(
    r"\b(send|recv|search|refresh)[-_]keys\b|--(send|recv|search|refresh|fetch|locate)-k"
)
UPLOAD_PATH = "/pks/add"
# the route itself; the client of our keyd; the benchmark that floods its own loopback keyd
# with malformed uploads (issue 15, hole 5)
UPLOAD_ALLOWED = {"keyd/http.py", "tits/keyclient.py", "benchmarks/keyd.py"}


def _files() -> Iterator[Path]:
    for d in CODE_DIRS:
        base = ROOT / d
        if base.is_dir():
            yield from (
                p for p in sorted(base.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
            )
    yield from sorted(ROOT.glob("*.py"))


def _code_strings(path: Path) -> Iterator[tuple[int, str]]:
    """Identifiers and string constants of a Python file, without docstrings and comments."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.lineno, node.value
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.lineno, node.name


def _other_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield n, code


def _scan() -> Iterator[tuple[str, int, str]]:
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        items = _code_strings(path) if path.suffix == ".py" else _other_lines(path)
        for lineno, text in items:
            yield rel, lineno, text


def test_no_code_sends_keys_to_key_servers() -> None:
    hits = [f"{rel}:{n}: {text[:80]!r}" for rel, n, text in _scan() if KEYSERVER_OPS.search(text)]
    assert hits == [], "code that talks to key servers through gpg:\n" + "\n".join(hits)


def test_only_the_keyd_client_posts_keys() -> None:
    hits = [rel for rel, _, text in _scan() if UPLOAD_PATH in text]
    assert set(hits) <= UPLOAD_ALLOWED, hits
    assert "tits/keyclient.py" in hits  # the test does look where it should


def test_the_fallback_only_reads() -> None:
    strings = [t for _, t in _code_strings(ROOT / "keyd" / "fallback.py")]
    assert "get" in strings and "/pks/lookup" in "".join(strings)
    for forbidden in ("post", "put", "POST", "PUT", "keytext", "request"):
        assert forbidden not in strings, forbidden


def test_scanner_catches_an_upload(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""Docs may say gpg --send-keys."""\nimport gnupg\ngnupg.GPG().send_keys("x")\n'
    )
    found = [t for _, t in _code_strings(bad) if KEYSERVER_OPS.search(t)]
    assert found == ["send_keys"]
    bad.write_text('import subprocess\nsubprocess.run(["gpg", "--send-keys", "X"])\n')
    assert [t for _, t in _code_strings(bad) if KEYSERVER_OPS.search(t)] == ["--send-keys"]


def test_client_gnupg_homes_name_no_key_server(tmp_path: Path) -> None:
    def directives(text: str) -> list[str]:
        return [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]

    assert "keyserver" not in directives(GPG_CONF)
    assert "no-auto-key-retrieve" in directives(GPG_CONF)
    Identity(tmp_path / "g")
    written = (tmp_path / "g" / "gpg.conf").read_text()
    assert "keyserver" not in directives(written)
    assert not (tmp_path / "g" / "dirmngr.conf").exists()
