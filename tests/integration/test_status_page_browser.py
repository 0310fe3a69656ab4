"""The status page in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
installs) renders a live broker's `/` page while two users are logged in at two other brokers.
The DOM after rendering must list both users with their proxy broker, every broker, and an SVG
with one circle per broker and one curve per link; the screenshot is kept as evidence in
`test-artifacts/status-page.png` (git-ignored)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.broker_fixtures import (  # noqa: F401 - fixtures
    People,
    people_fixture,
    short_tmpdir,
    wait_for,
)
from tits.client.blocking import Messenger
from tits.keyclient import KeyClient
from tits.localcloud import LocalCloud, _status

CHROMIUM = Path("/usr/bin/chromium")
BROKERS = 4
BROWSER_TIMEOUT_S = 60
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "status-page.png"
MIN_PNG_BYTES = 20_000  # a blank 1400×1000 page is a few kB; the real page is far more

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (`apt-get install chromium`; "
        ".ci/run installs it on CI)",
    ),
]


class _Dom(HTMLParser):
    """What the test reads from the rendered DOM: table rows by table id, and the SVG's shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.titles: dict[str, list[list[str]]] = {}  # table id → per row, the title attrs
        self.circles: list[dict[str, str | None]] = []
        self.lines: list[dict[str, str | None]] = []
        self.scripts = 0
        self._table: str | None = None
        self._row: list[str] | None = None
        self._row_titles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
        elif tag == "tr" and self._table is not None:
            self._row, self._row_titles = [], []
        elif tag == "circle":
            self.circles.append(a)
        elif tag == "path" and "link" in (a.get("class") or ""):
            self.lines.append(a)
        elif tag == "script":
            self.scripts += 1
        if self._row is not None and a.get("title"):
            self._row_titles.append(str(a["title"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None and self._table is not None:
            self.rows.setdefault(self._table, []).append(" ".join(self._row))
            self.titles.setdefault(self._table, []).append(self._row_titles)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row.append(data)


def chromium(url: str, *mode: str) -> subprocess.CompletedProcess[bytes]:
    """One headless Chromium run on a fresh profile (and a fresh $HOME, so nothing is left)."""
    tmp = Path(tempfile.mkdtemp(prefix="tchrome"))
    try:
        argv = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
            "--window-size=1400,1000", *mode, url,
        ]  # fmt: skip
        env = dict(os.environ, HOME=str(tmp), XDG_CONFIG_HOME=str(tmp), XDG_CACHE_HOME=str(tmp))
        proc = subprocess.run(
            argv, capture_output=True, timeout=BROWSER_TIMEOUT_S, env=env, check=False
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
        return proc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(name="cloud")
def cloud_fixture():
    root = short_tmpdir("tw")
    cloud = LocalCloud(root, 0)
    try:
        cloud.start(BROKERS)
        cloud.wait_whole(timeout=45)
        yield cloud
    finally:
        cloud.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_status_page_renders_in_chromium(cloud: LocalCloud, people: People) -> None:
    keys = KeyClient(cloud.keyserver)
    for home in (people.alice, people.bob):
        keys.publish_key(home.identity.export_public(home.fingerprint))
        _, cert, sig = home.certificate
        keys.publish_device(cert, sig, home.device.prove(cert))
    page_broker, alice_at, bob_at = cloud.brokers[0], cloud.brokers[1], cloud.brokers[2]
    ids = {b["id"] for b in cloud.brokers}
    alice = Messenger(people.alice, broker=alice_at["url"], keyserver=cloud.keyserver)
    bob = Messenger(people.bob, broker=bob_at["url"], keyserver=cloud.keyserver)
    try:
        alice.connection()
        bob.connection()
        want = {people.alice.fingerprint: alice_at["id"], people.bob.fingerprint: bob_at["id"]}

        def ready() -> dict[str, Any] | None:
            st = _status(page_broker["http"])
            if st is None or {b["id"] for b in st["brokers"] if b["alive"]} != ids:
                return None
            where = {u["fingerprint"]: u["broker"] for u in st["users"]}
            return st if all(where.get(fp) == b for fp, b in want.items()) else None

        status = wait_for(ready, 20, "both users and all brokers on the status page")
        url = page_broker["http"] + "/?lang=zh-TW"

        dom = _Dom()
        dom.feed(chromium(url, "--dump-dom").stdout.decode())
        ARTIFACT.parent.mkdir(exist_ok=True)
        ARTIFACT.unlink(missing_ok=True)
        chromium(url, f"--screenshot={ARTIFACT}")
        after = _status(page_broker["http"]) or status
    finally:
        bob.close()
        alice.close()

    # users → proxy: each user's row carries the name, the fingerprint and the broker's id
    names = {people.alice.fingerprint: "Alice 陳", people.bob.fingerprint: "Bob 林"}
    user_rows = list(zip(dom.rows["users"][1:], dom.titles["users"][1:], strict=True))
    for fp, broker in want.items():
        row = [(text, titles) for text, titles in user_rows if fp in text]
        assert len(row) == 1, f"{fp} not listed once in {dom.rows['users']}"
        text, titles = row[0]
        assert names[fp] in text and broker in titles, (text, titles)
    # every broker is listed, with its state, and drawn as one circle
    broker_rows = dom.rows["brokers"][1:]
    row_ids = {titles[0] for titles in dom.titles["brokers"][1:] if titles}
    assert len(broker_rows) == BROKERS and row_ids == ids, dom.rows["brokers"]
    assert all("線上" in r for r in broker_rows), broker_rows
    assert sorted(c.get("data-id") or "" for c in dom.circles) == sorted(ids)
    # one line per link (the link set of the status read just before or just after rendering)
    drawn = sorted(
        tuple(sorted((ln.get("data-a") or "", ln.get("data-b") or ""))) for ln in dom.lines
    )
    link_sets = [
        sorted(tuple(sorted((k["a"], k["b"]))) for k in s["links"]) for s in (status, after)
    ]
    assert drawn in link_sets and len(drawn) >= BROKERS
    assert dom.scripts == 2  # the page's strings (JSON) and its static script

    data = ARTIFACT.read_bytes()
    assert png_size(data) == (1400, 1000)
    assert len(data) > MIN_PNG_BYTES, f"screenshot only {len(data)} bytes: a blank page?"
