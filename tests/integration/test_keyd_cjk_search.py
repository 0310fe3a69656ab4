"""Issue 11: a Chinese name of one or two characters can be searched for (`林`, `小明`).

keyd refused every search under 3 characters, so `tits key fetch 林` and
`gpg --search-keys 林` could find nobody; most Chinese names are 2–3 ideographs. Now 1–2
CJK ideographs are a search (at most 20 keys answered, searches budgeted per client), while
short Latin text stays refused: it would only enumerate the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import keyd_fixtures as kf
from tests.conftest import kill_agent
from tests.keyd_fixtures import KeydProcess, StockGpg, short_tmpdir
from tits.keyd.fallback import Fallback
from tits.keyd.openpgp import mr_unescape
from tits.keyd.service import MAX_SHORT_RESULTS, KeydError, KeyService
from tits.keyd.store import Store
from tits.keyd.validate import KeyValidator

keyd = kf.keyd
TITS = [sys.executable, "-m", "tits.cli"]
ENV = {**os.environ, "TITS_LANG": "en"}


def tits(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TITS, "--home", str(home), *args], capture_output=True, text=True, timeout=60, env=ENV
    )


@dataclass
class World:
    server: KeydProcess
    gpg: StockGpg  # holds 王小明's key and searches with stock gpg
    wang: str
    lin: str  # 林美玲, a tits home that published with `tits key publish`
    bob: Path  # a tits home that fetches


@pytest.fixture(scope="module")
def world(keyd: KeydProcess) -> Iterator[World]:
    root = short_tmpdir("cjk")
    gpg = StockGpg()
    try:
        wang = gpg.gen("王小明 <ming@example.org>")
        gpg.run("--keyserver", f"hkp://127.0.0.1:{keyd.port}", "--send-keys", wang)
        fps = {}
        for who, name in (("lin", "林美玲"), ("bob", "Bob")):
            r = tits(root / who, "init", "--name", name, "--email", f"{who}@example.org",
                     "--keyserver", keyd.url, "--json")  # fmt: skip
            assert r.returncode == 0, r.stderr
            fps[who] = json.loads(r.stdout)["fingerprint"]
        r = tits(root / "lin", "key", "publish")
        assert r.returncode == 0, r.stderr
        yield World(keyd, gpg, wang, fps["lin"], root / "bob")
    finally:
        gpg.cleanup()
        for who in ("lin", "bob"):
            kill_agent(root / who / "gnupg")
        shutil.rmtree(root, ignore_errors=True)


def _search(world: World, query: str) -> tuple[int, list[tuple[str, list[str]]]]:
    """Stock gpg's machine-readable --search-keys: (rc, [(fingerprint, user ids)])."""
    r = world.gpg.run("--with-colons", "--keyserver", f"hkp://127.0.0.1:{world.server.port}",
                      "--search-keys", query, check=False)  # fmt: skip
    keys: list[tuple[str, list[str]]] = []
    for row in (line.split(":") for line in r.stdout.decode().splitlines()):
        if row[0] == "pub":
            keys.append((row[1], []))
        elif row[0] == "uid" and keys:
            keys[-1][1].append(mr_unescape(row[1]))
    return r.returncode, keys


@pytest.mark.parametrize(
    ("query", "who"), [("林", "lin"), ("美玲", "lin"), ("王", "wang"), ("小明", "wang")]
)
def test_stock_gpg_finds_a_one_or_two_character_chinese_name(
    world: World, query: str, who: str
) -> None:
    rc, keys = _search(world, query)
    fp = world.lin if who == "lin" else world.wang
    assert rc == 0 and [k[0] for k in keys] == [fp], keys
    assert any(query in uid for uid in keys[0][1])


def test_short_latin_searches_stay_refused(world: World) -> None:
    for query in ("Li", "ab", "あい"):
        status, body = world.server.lookup(op="index", options="mr", search=query)
        assert status == 400 and b"at least 3 characters" in body, (query, body)
        rc, keys = _search(world, query)
        assert rc != 0 and keys == []
    assert world.server.lookup(op="index", options="mr", search="陳")[0] == 404


def test_tits_key_fetch_by_one_chinese_character(world: World) -> None:
    r = tits(world.bob, "key", "fetch", "林", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fingerprint"] == world.lin
    r = tits(world.bob, "key", "fetch", "小明", "--as", "ming", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["fingerprint"], out["contact"]) == (world.wang, "ming")
    r = tits(world.bob, "key", "fetch", "Li")
    assert r.returncode != 0 and "3 characters" in r.stderr


def test_a_common_surname_answers_a_bounded_list(tmp_path: Path) -> None:
    store = Store(tmp_path / "keys.sqlite")
    n = MAX_SHORT_RESULTS + 15
    for i in range(n):
        fp, uid = f"{i:040X}", f"林美玲 {i} <lin{i}@example.org>"
        store.db.execute(
            "INSERT INTO keys VALUES (?, '', x'', 22, 255, 0, NULL, 0, ?, '', 'test', 0)",
            (fp, f"uid:{uid}:::\n"),
        )
        store.db.execute("INSERT INTO uids VALUES (?, ?, '', ?)", (fp, uid, uid.casefold()))

    async def run(query: str) -> int | str:
        fallback = Fallback([])
        try:
            service = KeyService(store, KeyValidator(tmp_path / "tmp"), fallback)
            return len(await service.index(query))
        except KeydError as exc:
            return exc.message
        finally:
            await fallback.close()

    try:
        assert asyncio.run(run("林")) == MAX_SHORT_RESULTS
        assert asyncio.run(run("林美")) == MAX_SHORT_RESULTS
        assert asyncio.run(run("林美玲")) == n  # three characters: the usual bound (100)
        assert "3 characters" in str(asyncio.run(run("林1")))  # not all ideographs
    finally:
        store.close()
