"""`titsd backup DEST` and `titsd restore SRC`: an online, consistent copy of a broker's
mailbox and keys, and putting one back.

The mailbox is copied with SQLite's backup API in one step (one read transaction: the copy is
the database as it was at one commit, WAL included, while the broker keeps writing). The keys
(GnuPG home, CURVE key, broker.toml) and the topology are small files that change rarely,
copied as they are; agent sockets and ready.json are left out. A MANIFEST.json says what was
copied and when. Restore puts the files into an empty (or new) data directory; start `titsd`
on it and the broker comes back as itself (same id, same URL key) with every message that was
committed before the backup began. Never run the original and the restored copy at once: they
are the same broker to the cloud.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from tits.errors import ConfigError

MAILBOX = "mailbox.db"
MANIFEST = "MANIFEST.json"
SKIP = {"ready.json", "ready.tmp", "log", MAILBOX, f"{MAILBOX}-wal", f"{MAILBOX}-shm"}


def _running(data: Path) -> int | None:
    try:
        pid = int(json.loads((data / "ready.json").read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid


def _copy_tree(src: Path, dst: Path) -> list[str]:
    """Regular files only (sockets, fifos and the like are a running agent's, not state)."""
    copied = []
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        out = dst / rel
        out.mkdir(mode=0o700, exist_ok=True)
        for name in files:
            if rel == Path(".") and name in SKIP:
                continue
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:  # a temp file that went away while we walked
                continue
            if not stat.S_ISREG(mode):
                continue
            shutil.copy2(path, out / name)
            copied.append(str(rel / name))
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
    return copied


def backup(data: Path, dest: Path) -> dict[str, Any]:
    """Copy `data` into the new directory `dest` while the broker may be running."""
    db = data / MAILBOX
    if not db.exists():
        raise ConfigError(f"no broker data in {data} (no {MAILBOX})")
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"backup destination {dest} is not empty")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = time.time()
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    out = sqlite3.connect(dest / MAILBOX)
    try:
        src.backup(out)  # pages=-1: all of it under one read transaction, so consistent
        (rows,) = out.execute("SELECT count(*) FROM mail").fetchone()
        (seq,) = out.execute("SELECT coalesce(max(seq), 0) FROM mail").fetchone()
    finally:
        out.close()
        src.close()
    files = _copy_tree(data, dest)
    manifest = {
        "from": str(data.resolve()),
        "started": started,
        "took_s": round(time.time() - started, 3),
        "mail_rows": rows,
        "last_seq": seq,
        "files": sorted([MAILBOX, *files]),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def restore(src: Path, data: Path) -> dict[str, Any]:
    """Put a backup into `data` (new or empty; never over a running broker)."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{src} is not a titsd backup (no readable {MANIFEST})") from None
    if _running(data) is not None:
        raise ConfigError(f"a broker is running on {data}: stop it first")
    if data.exists() and any(p.name != "log" for p in data.iterdir()):
        raise ConfigError(f"{data} is not empty: restore into a new directory")
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    for rel in manifest["files"]:
        if rel == MAILBOX:
            continue
        target = data / rel
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    db = sqlite3.connect(src / MAILBOX)
    out = sqlite3.connect(data / MAILBOX)
    try:
        (ok,) = db.execute("PRAGMA integrity_check").fetchone()
        if ok != "ok":
            raise ConfigError(f"{src / MAILBOX} fails its integrity check: {ok}")
        db.backup(out)
    finally:
        out.close()
        db.close()
    return manifest
