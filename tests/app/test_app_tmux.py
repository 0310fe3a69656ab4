"""End to end: the real `tits` binary (no subcommand) in a real terminal (tmux), a real broker:
the chat list draws with Bob's message, Alice opens it, types Chinese, Bob receives it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_fixtures import BrokerProc, People, broker_fixture, people_fixture  # noqa: F401
from tits.client.blocking import Message, Messenger

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed here")
TITS = str(Path(sys.executable).with_name("tits"))


class Tmux:
    """One tmux server of our own (its own socket), one 80×24 window."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        assert TMUX is not None
        self.socket = f"tits-app-{uuid.uuid4().hex[:8]}"
        self.base = [TMUX, "-L", self.socket, "-f", "/dev/null", "-u"]
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        subprocess.run(
            [*self.base, "new-session", "-d", "-x", "80", "-y", "24", *env_args,
             " ".join(command)],
            check=True, env={**os.environ, **env},
        )  # fmt: skip
        # keep the pane after the app exits, to read what it left and how it ended
        subprocess.run([*self.base, "set-option", "-t", "0", "remain-on-exit", "on"], check=True)

    def capture(self) -> str:
        out = subprocess.run([*self.base, "capture-pane", "-p", "-t", "0"], capture_output=True,
                             text=True, check=False)  # fmt: skip
        return out.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        args = ["-l"] if literal else []
        subprocess.run([*self.base, "send-keys", "-t", "0", *args, *keys], check=True)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen after {timeout}s:\n{screen}")
            time.sleep(0.2)

    def exit_status(self) -> int | None:
        """The app's exit status once it ended, else None."""
        r = subprocess.run([*self.base, "display-message", "-p", "-t", "0",
                            "#{pane_dead} #{pane_dead_status}"],
                           capture_output=True, text=True, check=False)  # fmt: skip
        dead, _, status = r.stdout.strip().partition(" ")
        return int(status) if dead == "1" and status else None

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux_factory() -> Iterator[list[Tmux]]:
    made: list[Tmux] = []
    yield made
    for t in made:
        t.kill()


def test_tits_alone_opens_the_app_in_a_terminal(broker: BrokerProc, people: People,
                                                tmux_factory: list[Tmux]) -> None:  # fmt: skip
    people.alice.save_config(broker=broker.url)
    bob = Messenger(people.bob, broker=broker.url)
    try:
        bob.send_text([people.alice.fingerprint], "嗨 Alice，收到請回 👋")
        env = {"TITS_LANG": "zh_TW.UTF-8", "LANG": "C.UTF-8", "TERM": "xterm-256color"}
        # `tits` with no subcommand, stdin and stdout a terminal: the app, not the help
        t = Tmux([TITS, "--home", str(people.alice.path)], env)
        tmux_factory.append(t)
        screen = t.wait_for("收到請回")
        assert "聊天" in screen and "好友" in screen and "Traceback" not in screen
        t.wait_for("已連線")
        t.keys("Enter")
        t.wait_for("輸入訊息")
        t.keys("收到，晚點打給你", literal=True)
        t.keys("Enter")
        t.wait_for("已傳送")
        got: list[Message] = []
        bob.receive(got.append, timeout=30, until=lambda: bool(got))
        assert [m.text for m in got] == ["收到，晚點打給你"]
        t.keys("Escape")
        t.wait_for("好友")
        t.keys("C-q")
        deadline = time.monotonic() + 30
        while t.exit_status() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert t.exit_status() == 0, t.capture()  # quit cleanly
        assert "Traceback" not in t.capture()
    finally:
        bob.close()
