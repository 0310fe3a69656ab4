"""Groups on the command line: Alice makes one, invites Bob and Carol, they talk; Carol is
removed and reads nothing after; each log entry checks with plain `gpg --verify`."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from tests.broker_fixtures import BrokerProc
from tests.keyd_fixtures import KeydProcess
from tests.scenarios.test_chat_cli import cloud, tits  # noqa: F401 - the fixture


def _lines(r: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_a_group_on_the_command_line(cloud: tuple[Path, KeydProcess, BrokerProc]) -> None:  # noqa: F811
    root, keyd, broker = cloud
    homes, fps = {}, {}
    for who in ("alice", "bob", "carol"):
        homes[who] = root / who
        out = tits(
            homes[who], "init", "--name", who.title(), "--email", f"{who}@example.org",
            "--broker", broker.url, "--keyserver", keyd.url, "--json",
        )  # fmt: skip
        fps[who] = json.loads(out.stdout)["fingerprint"]
        tits(homes[who], "key", "publish")
    for who in ("bob", "carol"):
        tits(homes["alice"], "contact", "add", who, fps[who])
        tits(homes["alice"], "key", "fetch", fps[who])

    made = json.loads(tits(homes["alice"], "group", "create", "家人", "--json").stdout)
    gid = made["group"]
    r = tits(homes["alice"], "send", "#家人", "nobody here", ok=False)
    assert r.returncode != 0 and "invite someone first" in r.stderr
    ev = json.loads(
        tits(homes["alice"], "group", "invite", "#家人", "@bob", "@carol", "--json").stdout
    )
    assert ev["event"] == "invite" and sorted(ev["targets"]) == sorted([fps["bob"], fps["carol"]])
    tits(homes["alice"], "send", "#家人", "晚餐吃什麼？")

    for who in ("bob", "carol"):
        got = _lines(tits(homes[who], "recv", "--json"))
        kinds = [(g["kind"], g.get("event"), g.get("text")) for g in got]
        assert ("group", "invite", None) in kinds, got
        texts = [g for g in got if g["kind"] == "text"]
        assert [(g["text"], g["verified"], g["group"]) for g in texts] == [
            ("晚餐吃什麼？", True, gid)
        ]
        members = _lines(tits(homes[who], "group", "members", gid, "--json"))
        assert sorted(str(m["fingerprint"]) for m in members) == sorted(fps.values())

    # Bob answers; Alice's own earlier text is not shown to her again, his is
    tits(homes["bob"], "send", f"#{gid}", "火鍋！")
    got = _lines(tits(homes["alice"], "recv", "--json"))
    assert [(g["text"], g["from"]) for g in got if g["kind"] == "text"] == [("火鍋！", fps["bob"])]

    # Carol is removed: Bob learns it, and Carol reads nothing sent after
    tits(homes["alice"], "group", "remove", gid, "@carol")
    tits(homes["alice"], "send", f"#{gid}", "只給 Bob")
    got = _lines(tits(homes["bob"], "recv", "--json"))
    assert [g["text"] for g in got if g["kind"] == "text"] == ["只給 Bob"]
    assert any(g["kind"] == "group" and g["event"] == "remove" for g in got)
    got = _lines(tits(homes["carol"], "recv", "--json"))
    # what Bob said before the removal still reaches her; nothing after it does
    assert [g["text"] for g in got if g["kind"] == "text"] == ["火鍋！"]
    assert any(g["kind"] == "group" and g["event"] == "remove" for g in got)

    # the log: the same on every member's device, each entry checks with plain gpg
    logs = {w: _lines(tits(homes[w], "group", "log", gid, "--json")) for w in ("alice", "bob")}
    assert [e["hash"] for e in logs["alice"]] == [e["hash"] for e in logs["bob"]]
    assert [e["op"] for e in logs["alice"]] == ["create", "invite", "remove"]
    for i, e in enumerate(logs["bob"]):
        data, sig = root / f"entry{i}.json", root / f"entry{i}.json.asc"
        data.write_bytes(base64.b64decode(str(e["entry"])))
        sig.write_text(str(e["signature"]))
        v = subprocess.run(
            ["gpg", "--homedir", str(homes["bob"] / "gnupg"), "--verify", str(sig), str(data)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert v.returncode == 0, v.stderr

    # bad input: clear errors, exit non-zero, no traceback
    for args in (
        ("group", "create", "x" * 10_000),
        ("group", "create", "bad\x1b[2Kname"),
        ("send", "#nosuchgroup", "hi"),
    ):
        r = tits(homes["alice"], *args, ok=False)
        assert r.returncode != 0 and "Traceback" not in r.stderr and r.stderr.strip(), args
