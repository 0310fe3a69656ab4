"""What the mailbox's retention took from a device before it came back for it.

A broker keeps delivered mail `keep_s` (for devices still to come) and anything at all
`max_age_s`; past that, `PRUNE_SQL` deletes the rows whether every device took them or not.
Just before, the rows about to go that a registered device has not acknowledged are counted
per device into `gaps`, so the device's next login can say what it missed (`wire.Gap` in the
welcome). A device that was away longer than `max_age_s` is told too, with what is known:
mail stored at another broker of the cloud may have gone there without being counted here.

    gaps(user, device, missed, oldest, newest)   undelivered rows pruned for that device,
                                                  and their times (Unix seconds)

The table is created beside schema 3 (`ensure`), not as a schema version: a mailbox without it
(an older broker's, a restored backup) is still a version-3 mailbox, and gets it at start.
"""

from __future__ import annotations

import sqlite3
import time

from tits import wire

SCHEMA = """
CREATE TABLE IF NOT EXISTS gaps (
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    missed INTEGER NOT NULL,
    oldest INTEGER NOT NULL,
    newest INTEGER NOT NULL,
    PRIMARY KEY (user, device)
) WITHOUT ROWID
"""

# before PRUNE_SQL, in its transaction: per registered device, the rows older than max_age_s
# past its cursor (not its own sends, which it is never delivered); relays ("@broker/…") are
# not people
COUNT_SQL = """
INSERT INTO gaps (user, device, missed, oldest, newest)
SELECT c.user, c.device, count(*), min(b.ts), max(b.ts)
FROM bodies b
JOIN entries e ON e.ref = b.ref
JOIN users u ON u.uid = e.uid
JOIN cursors c ON c.user = u.name AND e.seq > c.cursor AND e.skip != c.device
WHERE b.ts < ? AND substr(c.user, 1, 1) != '@'
GROUP BY c.user, c.device
ON CONFLICT(user, device) DO UPDATE SET missed = missed + excluded.missed,
    oldest = min(oldest, excluded.oldest), newest = max(newest, excluded.newest)
"""

# once told: what was counted up to then (a prune may have counted more since the read)
TOLD_SQL = "DELETE FROM gaps WHERE user = ? AND device = ? AND newest <= ?"


def ensure(db: sqlite3.Connection) -> None:
    try:
        db.execute(SCHEMA)
    except sqlite3.OperationalError:
        pass  # a read-only or full disk: the writer creates it once it can


def count(db: sqlite3.Connection, cutoff_s: int) -> None:
    """In the prune's transaction, before its DELETE."""
    db.execute(COUNT_SQL, (cutoff_s,))


def gap(db: sqlite3.Connection, user: str, device: str, max_age_s: float) -> wire.Gap | None:
    """What to tell this device at its login: None when it missed nothing we know of.
    Read before the login registers the device (which moves its `seen` to now)."""
    now = time.time()
    row = db.execute(
        "SELECT missed, oldest, newest FROM gaps WHERE user=? AND device=?", (user, device)
    ).fetchone()
    seen_row = db.execute(
        "SELECT seen FROM cursors WHERE user=? AND device=?", (user, device)
    ).fetchone()
    seen = int(seen_row[0]) if seen_row is not None else 0
    away = seen > 0 and now - seen > max_age_s
    if row is None and not away:
        return None
    missed, oldest, newest = (int(x) for x in row) if row is not None else (0, 0, 0)
    return wire.Gap(
        missed=missed, oldest=oldest, newest=newest, seen=seen, retention_s=int(max_age_s)
    )
