"""`tits logs`: a recorded log of a real cloud run (keyd and three brokers, one of them
killed -9 and restarted; tests/data/logs/cloud/*/log, written by LocalCloud's --log-json
brokers) rendered as in the snapshot beside it; a growing file followed; repeated lines folded;
level, pattern and age filters; journald through journalctl; a file that is not JSON lines
refused in one line.

TITS_UPDATE_SNAPSHOTS=1 rewrites the snapshot (look at the diff before committing it)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"
LOGS = sorted((DATA / "cloud").glob("*/log"))
SNAPSHOT = DATA / "cloud.txt"
ENV = dict(os.environ, NO_COLOR="1", COLUMNS="100", TITS_LANG="en")


def tits_logs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tits.cli", "logs", *args],
        capture_output=True, text=True, timeout=60, env=env or ENV, check=False,
    )  # fmt: skip


def test_a_recorded_cloud_run_renders_as_its_snapshot() -> None:
    assert len(LOGS) == 4
    res = tits_logs(*map(str, LOGS))
    assert res.returncode == 0, res.stderr
    if os.environ.get("TITS_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(res.stdout)
    assert res.stdout == SNAPSHOT.read_text()
    lines = res.stdout.splitlines()
    # one tail in time order, each line naming its broker; peers named, keys shortened
    assert "broker2 INFO peer.up                peer=broker0 address=tcp://127.0.0.1:" in res.stdout
    words = [w for line in lines for w in line.replace("=", " ").replace("#", " ").split()]
    assert not any(len(w) >= 16 and all(c in "0123456789abcdefABCDEF" for c in w) for w in words)
    assert sum("broker.started" in line and "id=broker2" in line for line in lines) == 2


def test_filters_by_level_pattern_and_age(tmp_path: Path) -> None:
    res = tits_logs(*map(str, LOGS), "--grep", r"peer\.down", "--level", "info")
    assert res.returncode == 0 and res.stdout
    assert all("peer.down" in line for line in res.stdout.splitlines())
    assert tits_logs(*map(str, LOGS), "--level", "warning").stdout == ""
    assert tits_logs(*map(str, LOGS), "--since", "1s").stdout == ""  # recorded before
    bad = tits_logs(str(LOGS[0]), "--since", "soon")
    assert bad.returncode != 0 and "--since" in bad.stderr


def test_repeated_lines_fold_into_one_with_a_count(tmp_path: Path) -> None:
    log = tmp_path / "log"
    line = {"event": "peer.refused", "level": "warning", "peer": "AB" * 20, "reason": "bad proof"}
    rows = [dict(line, timestamp=f"2026-12-01T10:00:{s:02d}.000Z") for s in range(12)]
    rows.append({"event": "peer.up", "level": "info", "timestamp": "2026-12-01T10:00:13Z"})
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tits_logs(str(log)).stdout.splitlines()
    assert out == [
        "10:00:00.000 WARN peer.refused           peer=ABABABAB… reason=bad proof ×12",
        "10:00:13.000 INFO peer.up               ",
    ]


@pytest.mark.parametrize("text", ["hello, I am plain text\n", "[1, 2]\n", '{"no": "event"}\n'])
def test_a_file_that_is_not_json_lines_is_one_clear_line(tmp_path: Path, text: str) -> None:
    log = tmp_path / "plain.log"
    log.write_text(text + json.dumps({"event": "x", "level": "info"}) + "\n")
    res = tits_logs(str(log))
    assert res.returncode != 0 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"error: {log}:1: not a JSON log line "
        '(titsd writes them with --log-json or log_format = "json")'
    ]
    missing = tits_logs(str(tmp_path / "nope"))
    assert (
        missing.returncode != 0 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    )


def test_follow_shows_lines_as_the_file_grows(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(json.dumps({"event": "broker.started", "level": "info", "id": "C0" * 20}) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tits.cli", "logs", str(log), "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)

    def next_line() -> str:
        assert sel.select(timeout=30), "no line within 30 s"
        return proc.stdout.readline()  # type: ignore[union-attr]

    try:
        assert "broker.started" in next_line()
        with open(log, "a") as fh:
            fh.write('{"event": "peer.up", "level": "info", "pe')  # half a line: held back
            fh.flush()
            time.sleep(0.5)
            fh.write('er": "' + "C0" * 20 + '"}\n')
            for _ in range(3):  # three alike: folded once the file goes quiet
                fh.write('{"event": "peer.down", "level": "warning", "reason": "unreachable"}\n')
        assert next_line().rstrip().endswith(f"peer.up                peer={tmp_path.name}")
        assert next_line().rstrip().endswith("peer.down              reason=unreachable ×3")
        with open(log, "a") as fh:
            fh.write('{"event": "broker.stopped", "level": "info"}\n')
        assert "broker.stopped" in next_line()
        assert proc.poll() is None  # still following
    finally:
        sel.close()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode in (0, 130)


def _fake_journalctl(bindir: Path, records: Sequence[Mapping[str, object]]) -> None:
    bindir.mkdir()
    dump = bindir / "records.json"
    dump.write_text("".join(json.dumps(r) + "\n" for r in records))
    script = bindir / "journalctl"
    script.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(bindir / 'argv')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"sys.stdout.write(open({str(dump)!r}).read())\n"
    )
    script.chmod(0o755)


def test_unit_reads_journald_records(tmp_path: Path) -> None:
    """journalctl -o json, as a stand-in prints it (this container has no journal to write)."""
    titsd_line = json.dumps(
        {
            "event": "peer.up",
            "level": "info",
            "peer": "AA" * 20,
            "timestamp": "2026-12-01T10:00:01Z",
        }
    )
    records: list[dict[str, object]] = [
        {"MESSAGE": titsd_line, "_SYSTEMD_UNIT": "titsd@main.service", "PRIORITY": "6",
         "__REALTIME_TIMESTAMP": "1796119201000000"},
        {"MESSAGE": "Started titsd@main.service", "_SYSTEMD_UNIT": "titsd@main.service",
         "PRIORITY": "4", "__REALTIME_TIMESTAMP": "1796119202000000"},
        {"MESSAGE": list(b"caf\xc3\xa9 \xff"), "_SYSTEMD_UNIT": "titsd@main.service",
         "PRIORITY": "3", "__REALTIME_TIMESTAMP": "1796119203000000"},
    ]  # fmt: skip
    _fake_journalctl(tmp_path / "bin", records)
    env = dict(ENV, PATH=f"{tmp_path / 'bin'}:{ENV['PATH']}")
    res = tits_logs("--unit", "titsd@main", "--since", "1h", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "bin" / "argv").read_text() == (
        "-o json --no-pager -u titsd@main --since -1h"
    )
    assert res.stdout.splitlines() == [
        "10:00:01.000 INFO peer.up                peer=AAAAAAAA…",
        "10:00:02.000 WARN Started titsd@main.service",
        "10:00:03.000 ERRO café �",
    ]


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="no journalctl here")
def test_unit_with_the_real_journalctl_runs_and_ends() -> None:
    res = tits_logs("--unit", "tits-test-no-such-unit.service")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_unit_follow_folds_and_shows_lines_when_the_journal_goes_quiet(tmp_path: Path) -> None:
    line = json.dumps({"event": "peer.down", "level": "info", "reason": "unreachable"})
    rec = {"MESSAGE": line, "_SYSTEMD_UNIT": "titsd@a.service", "__REALTIME_TIMESTAMP": "1"}
    _fake_journalctl(tmp_path / "bin", [rec, rec, rec])
    script = tmp_path / "bin" / "journalctl"  # then stays open, as journalctl --follow does
    script.write_text(script.read_text() + "sys.stdout.flush()\nimport time\ntime.sleep(120)\n")
    env = dict(ENV, PATH=f"{tmp_path / 'bin'}:{ENV['PATH']}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tits.cli", "logs", "--unit", "titsd@a", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        assert sel.select(timeout=30), "nothing shown while the journal is quiet"
        assert (
            proc.stdout.readline().rstrip().endswith("peer.down              reason=unreachable ×3")
        )
        assert "--follow" in (tmp_path / "bin" / "argv").read_text()
    finally:
        sel.close()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
