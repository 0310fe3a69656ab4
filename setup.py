"""Build hook: compile the gettext catalogs (tits/locale/*/LC_MESSAGES/*.po) into the `.mo`
files the package ships. Everything else is declared in pyproject.toml."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class build_py_with_catalogs(build_py):  # noqa: N801 — setuptools' command naming
    def run(self) -> None:
        super().run()
        # tits/pofile.py uses the standard library only; loaded by path, since nothing of
        # the package (or its dependencies) is importable while it is being built
        spec = importlib.util.spec_from_file_location("_tits_pofile", HERE / "tits" / "pofile.py")
        assert spec is not None and spec.loader is not None
        pofile = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = pofile  # dataclasses look their module up there
        spec.loader.exec_module(pofile)
        for po in sorted((HERE / "tits" / "locale").glob("*/LC_MESSAGES/*.po")):
            mo = Path(self.build_lib) / po.relative_to(HERE).with_suffix(".mo")
            mo.parent.mkdir(parents=True, exist_ok=True)
            mo.write_bytes(pofile.compile_po(po.read_text(encoding="utf-8")))


setup(cmdclass={"build_py": build_py_with_catalogs})
