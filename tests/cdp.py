"""Headless Chromium driven over the DevTools protocol, for tests that must act as a person does
(type in a search box, click a link, read the page as it updates itself) and measure what the
browser drew — things `--dump-dom` cannot do. Debian's chromium and aiohttp's WebSocket client;
no other browser tooling.

    async with Browser() as page:
        await page.goto(url)
        rows = await page.eval("document.querySelectorAll('#users tbody tr').length")
        await page.screenshot(path)

Every run has a fresh profile and $HOME, removed afterwards, and the browser is stopped.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
START_S = 30.0
STEP_S = 30.0  # one protocol call


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        self.width, self.height = width, height
        self._tmp = Path(tempfile.mkdtemp(prefix="tcdp"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    async def __aenter__(self) -> Browser:
        argv = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", "--remote-debugging-port=0",
            f"--user-data-dir={self._tmp / 'profile'}",
            f"--window-size={self.width},{self.height}", "about:blank",
        ]  # fmt: skip
        env = dict(os.environ, HOME=str(self._tmp), XDG_CONFIG_HOME=str(self._tmp),
                   XDG_CACHE_HOME=str(self._tmp))  # fmt: skip
        self._proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        ws_url = await asyncio.to_thread(self._devtools_url)
        port = int(re.search(r":(\d+)/", ws_url).group(1))  # type: ignore[union-attr]
        self._http = aiohttp.ClientSession()
        deadline = time.monotonic() + START_S
        while True:
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                pages = [t for t in await resp.json() if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        if not pages:
            raise BrowserError("chromium has no page")
        self._ws = await self._http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        return self

    def _devtools_url(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        deadline = time.monotonic() + START_S
        seen = []
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline().decode(errors="replace")
            if not line and self._proc.poll() is not None:
                break
            seen.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                return m.group(1)
        raise BrowserError("chromium did not start: " + "".join(seen)[-2000:])

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        n = next(self._ids)
        await self._ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        deadline = time.monotonic() + STEP_S
        while True:
            msg = await self._ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"{method}: the browser went away ({msg.type})")
            doc = json.loads(msg.data)
            if doc.get("id") == n:
                if "error" in doc:
                    raise BrowserError(f"{method}: {doc['error']}")
                return dict(doc.get("result", {}))
            if "method" in doc:
                self._events.append(doc)

    async def goto(self, url: str) -> None:
        self._events.clear()
        await self.call("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def wait_event(self, name: str, timeout: float = STEP_S) -> dict[str, Any]:
        assert self._ws is not None
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == name:
                    return self._events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no {name} within {timeout} s")
            msg = await self._ws.receive(timeout=left)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"the browser went away ({msg.type})")
            self._events.append(json.loads(msg.data))

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def until(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll `expression` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout} s waiting for {expression[:120]}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> bytes:
        """The whole page (beyond the window), as a PNG at `path`."""
        size = await self.eval(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = await self.call(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
        )  # fmt: skip
        data = base64.b64decode(shot["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data
