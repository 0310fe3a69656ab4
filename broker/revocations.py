"""Ending the session of a device its owner revokes while it is logged in here.

Logins check keyd (`LoginVerifier._check_revoked`), but a device that is already logged in
would keep its session, and with it the user's mail and the groups' new keys. So a thread asks
keyd every `POLL_S` for the revocations dated since it last looked (`GET /tits/revocations`),
checks with gpg only those of devices with a session here, and hands them to the loop, which
refuses the session (`login-refused`) and logs it out; the next login is refused too.

A revocation is found by the date its owner signed into it, looked for with `OVERLAP_S` of
slack: one published more than that after it was signed ends no session (the next login is
still refused). A key server that cannot be reached is asked again at the next poll.
"""

from __future__ import annotations

import base64
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from tits.errors import KeyServerError, TitsError

from .login import LoginVerifier

if TYPE_CHECKING:
    from tits.keyclient import KeyClient

POLL_S = 5.0
OVERLAP_S = 600
MAX_PAGES = 20  # revocations read per poll: MAX_PAGES × keyd's page

log = structlog.get_logger("titsd.revocations")


class RevocationWatch:
    def __init__(
        self,
        keyserver: str,
        verifier: LoginVerifier,
        is_live: Callable[[str, str], bool],
        wake: Callable[[], None],
        poll_s: float = POLL_S,
    ) -> None:
        self.keyserver, self.verifier, self.is_live, self.wake = keyserver, verifier, is_live, wake
        self.poll_s = poll_s
        self.found: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._since = int(time.time()) - OVERLAP_S
        self._seen: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="titsd-revocations", daemon=True)

    def start(self) -> RevocationWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def take(self) -> list[tuple[str, str]]:
        """(identity, device) of sessions to end, checked; for the loop thread."""
        out = []
        while True:
            try:
                out.append(self.found.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        from tits.keyclient import KeyClient

        kc = KeyClient(self.keyserver, timeout=5.0)
        while not self._stop.wait(self.poll_s):
            try:
                self.poll(kc)
            except KeyServerError as exc:
                log.info("revocations.unreachable", why=exc.message[:120])
            except Exception as exc:  # noqa: BLE001 - the watch must outlive a bad answer
                log.warning("revocations.failed", error=repr(exc)[:200])

    def poll(self, kc: KeyClient) -> None:
        newest = self._since
        since = self._since
        for _ in range(MAX_PAGES):
            items, more = kc.revocations(since)
            for d in items:
                self._one(d)
                if isinstance(d.get("revoked_at"), int):
                    newest = max(newest, d["revoked_at"])
            if not more or newest == since:
                break
            since = newest
        self._since = max(self._since, min(newest, int(time.time())) - OVERLAP_S)
        cut = self._since
        self._seen = {k: t for k, t in self._seen.items() if t >= cut}

    def _one(self, d: dict[str, object]) -> None:
        identity, device, at = d.get("identity"), d.get("device"), d.get("revoked_at")
        if not isinstance(identity, str) or not isinstance(device, str):
            return
        key = (identity, device)
        if key in self._seen or not self.is_live(identity, device):
            return
        try:
            data = base64.b64decode(str(d.get("revocation")), validate=True)
            got = self.verifier.take_revocation(data, str(d.get("signature")))
        except (TitsError, ValueError):
            return  # one that does not check is not a revocation
        self._seen[key] = at if isinstance(at, int) else int(time.time())
        if got == key:
            log.info("revocations.session_ended", device=device)
            self.found.put(key)
            self.wake()
