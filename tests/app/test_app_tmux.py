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

    def flags(self) -> dict[str, str]:
        """The terminal modes the program left: alternate screen, mouse reporting, keypad."""
        fmt = " ".join(f"{k}=#{{{k}}}" for k in ("alternate_on", "mouse_any_flag", "keypad_flag"))
        r = subprocess.run([*self.base, "display-message", "-p", "-t", "0", fmt],
                           capture_output=True, text=True, check=True)  # fmt: skip
        return dict(kv.split("=", 1) for kv in r.stdout.split())

    def wait_ended(self, timeout: float = 30.0) -> None:
        """Until the program in the pane has exited. Read from /proc, not from tmux: a detached
        tmux server at times does not reap its pane's process for good (it stays a zombie, all
        its threads gone, and the pane never shows as dead), so `pane_dead` cannot be waited on."""
        r = subprocess.run([*self.base, "display-message", "-p", "-t", "0", "#{pane_pid}"],
                           capture_output=True, text=True, check=True)  # fmt: skip
        stat = Path(f"/proc/{int(r.stdout)}/stat")
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = stat.read_text().rpartition(")")[2].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                return  # reaped
            if state in ("Z", "X"):
                return  # exited, not yet reaped
            if time.monotonic() > deadline:
                raise AssertionError(f"the program still runs {timeout}s after it was told to quit")
            time.sleep(0.1)

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
        # Ctrl+Q: the app ends, without a traceback, and gives the terminal back as it was
        t.keys("C-q")
        t.wait_ended()
        assert "Traceback" not in t.capture()
        assert t.flags() == {"alternate_on": "0", "mouse_any_flag": "0", "keypad_flag": "0"}
    finally:
        bob.close()


def night_market_photo(where: Path) -> Path:
    """A 640×480 PNG of colour bands (a photo's size, so the sender makes a thumbnail)."""
    from PIL import Image

    img = Image.new("RGB", (640, 480))
    for x in range(640):
        for y in range(0, 480, 8):
            img.putpixel((x, y), (x % 256, y % 256, 128))
    path = where / "night-market.png"
    img.save(path)
    return path


def test_two_people_on_two_brokers_text_a_sticker_a_reply_and_an_unsend(
    people: People, tmux_factory: list[Tmux], tmp_path: Path
) -> None:
    """Both in the real app, each at their own broker of one cloud: Chinese typed, a sticker
    by its shortcode, a picture by /file (both drawn in half blocks), a /reply, an /unsend;
    every screen on the way (and each app's log) kept in tmp_path."""
    from tests.integration.test_cloud_brokers import publish
    from tests.proc_cloud import ProcCloud
    from tits.contacts import Contacts

    cloud = ProcCloud(2)
    try:
        publish(people, cloud.local.keyserver)
        alice, bob = people.alice, people.bob
        for me, other, broker in ((alice, bob, 0), (bob, alice, 1)):
            me.save_config(broker=cloud.url(broker), keyserver=cloud.local.keyserver)
            Contacts(me.path).add(other.path.name, other.fingerprint)
        seed = Messenger(bob, broker=cloud.url(1), keyserver=cloud.local.keyserver)
        try:
            seed.send_text([alice.fingerprint], "在嗎？")
        finally:
            seed.close()
        env = {"TITS_LANG": "zh_TW.UTF-8", "LANG": "C.UTF-8", "TERM": "xterm-256color"}
        a = Tmux([TITS, "--home", str(alice.path)], env)
        b = Tmux([TITS, "--home", str(bob.path)], env)
        tmux_factory += [a, b]
        shots = 0

        def shot(t: Tmux, text: str) -> str:
            nonlocal shots
            screen = t.wait_for(text, timeout=90)
            shots += 1
            (tmp_path / f"{shots:02d}-{'alice' if t is a else 'bob'}.txt").write_text(screen)
            return screen

        shot(a, "在嗎？")
        shot(a, "已連線")
        a.keys("Enter")
        shot(a, "輸入訊息")
        a.keys("在！週末去夜市嗎？", literal=True)
        a.keys("Enter")
        shot(a, "已傳送")
        shot(b, "週末去夜市嗎")  # in Bob's chat list, at the other broker
        shot(b, "已連線")
        b.keys("Enter")
        shot(b, "輸入訊息")
        b.keys("(love)", literal=True)  # a shortcode alone: the sticker
        b.keys("Enter")
        screen = shot(a, "(♥‿♥)")  # drawn from Alice's own copy of the built-in pack
        assert screen.count("▀" * 12) >= 4  # its picture, in half blocks
        b.keys("幾點？", literal=True)
        b.keys("Enter")
        shot(a, "幾點？")  # what comes after a sticker shows too
        b.keys(f"/file {night_market_photo(tmp_path)}", literal=True)
        b.keys("Enter")
        screen = shot(a, "[圖片] night-market.png")
        assert screen.count("▀" * 24) >= 6  # a preview of the thumbnail Bob signed
        b.keys("這張", literal=True)
        b.keys("Enter")
        shot(a, "這張")  # and what comes after a picture
        a.keys("C-o")  # the picture on the whole screen, fetched from Bob's broker
        screen = shot(a, "bob：night-market.png")
        deadline = time.monotonic() + 60
        while "下載中" in screen or "縮圖" in screen or screen.count("▀") < 400:
            assert time.monotonic() < deadline, screen  # the signed thumbnail, until it came
            time.sleep(0.2)
            screen = a.capture()
        assert "不是圖片" not in screen
        (tmp_path / f"{shots:02d}-alice-picture.txt").write_text(screen)
        a.keys("Escape")
        shot(a, "這張")
        a.keys("/reply 好啊，七點見", literal=True)
        shot(a, "/reply 好啊")
        a.keys("Enter")
        shot(a, "↩ bob")  # quoted above her answer
        screen = shot(b, "好啊，七點見")
        assert "↩" in screen  # the answer quotes what it answers
        a.keys("/unsend", literal=True)
        a.keys("Enter")
        shot(b, "已收回訊息")
        assert shots == 17
        for t in (a, b):
            t.keys("C-q")
        for t in (a, b):
            t.wait_ended()
            assert t.flags()["alternate_on"] == "0"
        assert all("Traceback" not in p.read_text() for p in tmp_path.glob("*.txt"))
    finally:
        for who in (people.alice, people.bob):
            log = who.path / "app.log"
            if log.exists():
                shutil.copy(log, tmp_path / f"{who.path.name}-app.log")
        cloud.close()
