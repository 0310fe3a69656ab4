"""Pairing over a broker: both ends of `tits.pairing` carried as ordinary messages.

Neither end can use the account's own login for this: the new device has nothing yet, and
the linking device's own connection would take (and acknowledge) the account's mail. So each
end logs in with a **throwaway identity** made for this pairing (a GnuPG key and a device key
in a temporary home, sent with the login: the broker takes the key a client sends), and the
two talk as two strangers would. The broker learns that two fresh keys exchanged a handful of
messages; what they carry is `tits.pairing`'s business.

Blocking, by design: the CLI calls these directly, the app from a worker thread.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from .. import pairing as P
from .. import wire
from ..device import Certificate, DeviceKey, certify_key
from ..errors import ConfigError, IdentityError, KeyServerError, VerificationError
from ..home import Home
from ..identity import Identity
from .connection import Connection
from .history import (
    CHOICES,
    HistoryError,
    chunk_count,
    chunks,
    install,
    make_archive,
    read_chunk,
)
from .resume import Partial, Snapshots, chunk_hashes, expand

log = structlog.get_logger("tits.pairing")

ANSWER_S = 60.0  # how long the new device waits for each answer of the linking device
RESUME_S = 5.0  # no chunk for this long: ask again for those missing
SEND_BATCH = 8  # history chunks given to the broker at once (each waits for its ack)
SETTINGS = ("name", "email", "broker", "keyserver", "listed", "lang")

Ask = Callable[[str], bool]  # shown the short code, says whether the person accepts it


class Rendezvous:
    """A throwaway identity logged in at a broker: send to one peer, receive what comes."""

    def __init__(self, broker: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="tits-pair-"))
        self.identity = Identity(self._dir / "gnupg")
        try:
            self.fingerprint = self.identity.create_key("ω IM pairing", "pairing@tits.invalid")
            device = DeviceKey.generate()
            cert, sig = device.certify(self.identity, self.fingerprint, "pairing", 3600)
            self.conn = Connection(
                broker, self.identity, self.fingerprint, cert.to_bytes(), sig, listed=False
            )
            self.conn.login()
        except BaseException:
            self.close()
            raise

    def send(self, to: str, msgs: list[P.PairMsg], timeout: float = 30.0) -> None:
        if not msgs:
            return
        items = [
            (wire.Send(id=wire.new_msg_id(), sender=self.fingerprint, to=[to]), P.encode(m))
            for m in msgs
        ]
        self.conn.send_and_wait(items, timeout=timeout)

    def receive(self, timeout: float) -> list[tuple[str, bytes]]:
        got = []
        ids = []
        for item in self.conn.poll(timeout):
            if isinstance(item, wire.Error):
                continue
            ids.append(item.envelope.id)
            got.append((item.envelope.sender, item.body))
        if ids:
            self.conn.ack(ids)
        return got

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
        subprocess.run(
            ["gpgconf", "--homedir", str(self._dir / "gnupg"), "--kill", "gpg-agent"],
            check=False, capture_output=True, timeout=10,
        )  # fmt: skip
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Rendezvous:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Linked:
    device: str
    name: str
    sas: str
    seconds: float
    chunks_total: int = 0  # of the history archive
    chunks_sent: int = 0  # distinct chunks sent in this pairing
    chunks_skipped: int = 0  # held by the new device from an earlier one


def link(
    home: Home,
    ask: Ask,
    on_code: Callable[[P.Code], None],
    *,
    broker: str | None = None,
    keyserver: str | None = None,
    ttl_s: float = P.CODE_TTL_S,
    answer_s: float = ANSWER_S,
) -> Linked:
    """Show a code (`on_code`), wait for one new device to join, have the person compare the
    short code (`ask`), then hand over the identity, the new device's certificate and the
    history it asked for (the rest of an earlier pairing's, if it holds part of one)."""
    home.require()
    broker = broker or home.config.get("broker")
    keyserver = keyserver or home.config.get("keyserver") or ""
    if not broker:
        raise ConfigError("no broker to pair through: give --broker or `tits config set broker`")
    work = Snapshots(home.path).workdir()  # beside the snapshots: one rename keeps it
    try:
        with Rendezvous(str(broker)) as rv:
            code = P.new_code(home.fingerprint, rv.fingerprint, str(broker), str(keyserver), ttl_s)
            side = P.LinkSide(code)
            on_code(code)
            return _link(home, rv, side, ask, work, answer_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _link(
    home: Home, rv: Rendezvous, side: P.LinkSide, ask: Ask, work: Path, answer_s: float
) -> Linked:
    code = side.code
    t0 = time.monotonic()
    asked = False
    archive: Path | None = None
    sent_chunks = False
    snapshots = Snapshots(home.path)
    skip: set[int] = set()
    sent: set[int] = set()
    last = time.monotonic()
    while side.state != "done":
        if time.time() >= code.expires and side.state in ("waiting", "offered"):
            raise P.PairingError("nobody joined before the pairing code expired")
        got = rv.receive(0.05 if side.state == "sent" and not sent_chunks else 1.0)
        if got:
            last = time.monotonic()
        for sender, body in got:
            rv.send(sender, side.on_message(sender, body))
        if side.state == "keyed" and not asked:
            asked = True
            t0 = time.monotonic()
            if not ask(side.sas or ""):
                raise P.PairingError("the short codes did not match: nothing was sent")
            side.confirm()
        if side.state == "confirmed" and side.peer and side.device_key:
            archive, same = snapshots.archive_for(
                side.resume, side.history,
                lambda: make_archive(home.path, side.history, work, _public_keys(home)),
            )  # fmt: skip
            hashes = chunk_hashes(archive)
            if same and hashes:  # the new device holds part of this very archive
                skip = expand(side.have, chunk_count(archive.stat().st_size))
            rv.send(side.peer, [side.bundle(_bundle(home, side, archive, hashes))])
            last = time.monotonic()
        if side.state == "sent" and archive is not None and side.peer:
            if not sent_chunks:
                batch: list[P.PairMsg] = []
                for i, data in chunks(archive):
                    if i in skip:
                        continue
                    sent.add(i)
                    batch.append(side.seal_more(P.Chunk(i, data)))
                    if len(batch) == SEND_BATCH:
                        rv.send(side.peer, batch)
                        batch = []
                rv.send(side.peer, batch)
                sent_chunks = True
            again, side.wanted = side.wanted[:], []
            for i in again:
                if 0 <= i < chunk_count(archive.stat().st_size):
                    sent.add(i)
                    rv.send(side.peer, [side.seal_more(P.Chunk(i, read_chunk(archive, i)))])
        if side.state in ("keyed", "sent") and time.monotonic() - last > answer_s * 2:
            # the archive stays (resume.Snapshots): a join run again asks for the rest
            raise P.PairingError("the new device stopped answering")
    assert side.device_key is not None  # state "done" implies it
    dev = Certificate(home.fingerprint, side.device_key, side.device_name, 0, 0).device
    total = chunk_count(archive.stat().st_size) if archive is not None else 0
    if archive is not None:
        snapshots.drop(archive)  # taken in whole: nothing left to resume
    log.info("pairing.linked", device=dev, chunks=total, sent=len(sent), skipped=len(skip))
    return Linked(dev, side.device_name, side.sas or "", time.monotonic() - t0,
                  total, len(sent), len(skip))  # fmt: skip


def _public_keys(home: Home) -> str:
    """Everyone's public key this home holds but our own (that comes with the secret)."""
    fps = [k.fingerprint for k in home.identity.keys() if k.fingerprint != home.fingerprint]
    return str(home.identity.gpg.export_keys(fps, armor=True)) if fps else ""


def _bundle(home: Home, side: P.LinkSide, archive: Path, hashes: bytes) -> P.Bundle:
    assert side.device_key is not None
    size = archive.stat().st_size
    cert, sig = certify_key(home.identity, home.fingerprint, side.device_key, side.device_name)
    secret = home.identity.gpg.export_keys(home.fingerprint, secret=True, expect_passphrase=False)
    if "PRIVATE KEY BLOCK" not in secret:
        raise IdentityError("could not export the identity key (is it protected by a passphrase?)")
    settings = {k: home.config[k] for k in SETTINGS if isinstance(home.config.get(k), str | bool)}
    return P.Bundle(
        fingerprint=home.fingerprint,
        secret_key=secret,
        cert=cert.to_bytes(),
        cert_sig=sig,
        settings=settings,
        history_chunks=chunk_count(size),
        history_bytes=size,
        history_sha256=bytes.fromhex(archive.stem),  # a snapshot is named by its SHA-256
        history_chunk_sha=hashes,
    )


@dataclass
class Joined:
    fingerprint: str
    device: str
    sas: str
    published: bool
    messages: int = 0  # in the history taken in
    chunks_total: int = 0  # of the history archive
    chunks_resumed: int = 0  # already here, from an earlier pairing that broke off
    chunks_fetched: int = 0  # that came in this pairing


Progress = Callable[[int, int], None]  # (chunks had, chunks in all)


def join(
    home: Home,
    code_text: str,
    ask: Ask,
    device_name: str,
    answer_s: float = ANSWER_S,
    history: str = "all",
    progress: Progress | None = None,
) -> Joined:
    """Join the account the code names: answer at its rendezvous, have the person compare
    the short code, take the identity and the history in only once both open and check."""
    if home.initialised:
        raise ConfigError(
            f"{home.path} already holds identity {home.config['fingerprint']}; "
            "join from a new home (--home NEW)"
        )
    if history not in CHOICES:
        raise ConfigError(f"--history takes none, 30d or all, not {history!r}")
    code = P.Code.parse(code_text)
    device = DeviceKey.generate()
    Certificate.parse(Certificate(code.user, device.public_key, device_name, 0, 1).to_bytes())
    work = Path(tempfile.mkdtemp(prefix="tits-history-"))
    partial = Partial(home.path)  # what an earlier pairing that broke off left
    try:
        with Rendezvous(code.broker) as rv:
            side = P.JoinSide(code, rv.fingerprint, device.public_key, device_name)
            rv.send(code.rendezvous, [side.start()])
            resume = partial.offer(code.user)
            bundle = _await_bundle(rv, side, ask, answer_s, history, resume)
            got = _receive_history(rv, side, bundle, partial, answer_s, progress)
            published = _apply(home, code, device, bundle, work)
            messages = 0
            if got is not None:
                try:
                    messages = install(got.path, home.path, code.user, home.identity)
                finally:
                    partial.clear()
            rv.send(code.rendezvous, [side.done()])
            joined = Joined(code.user, device.id, side.sas or "", published, messages)
            if got is not None:
                joined.chunks_total, joined.chunks_resumed = got.total, got.resumed
                joined.chunks_fetched = got.total - got.resumed
            return joined
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _await_bundle(
    rv: Rendezvous, side: P.JoinSide, ask: Ask, answer_s: float, history: str,
    resume: tuple[bytes, list[tuple[int, int]]],
) -> P.Bundle:  # fmt: skip
    code = side.code
    deadline = time.monotonic() + answer_s
    while side.bundle is None:
        if time.monotonic() > deadline:
            raise P.PairingError(
                "the linking device did not answer (the code expired, was used, or "
                "`tits device link` stopped)"
            )
        for sender, body in rv.receive(1.0):
            rv.send(sender, side.on_message(sender, body))
        if side.state == "keyed":
            if not ask(side.sas or ""):
                raise P.PairingError("the short codes did not match: nothing was taken in")
            rv.send(code.rendezvous, [side.confirm(history, *resume)])
            deadline = time.monotonic() + answer_s * 2  # the other person confirms too
    return side.bundle


@dataclass
class _Got:
    path: Path
    total: int
    resumed: int


def _receive_history(
    rv: Rendezvous,
    side: P.JoinSide,
    bundle: P.Bundle,
    partial: Partial,
    answer_s: float,
    progress: Progress | None,
) -> _Got | None:
    """The chunks, in any order, asked for again when they stop coming; the archive once it
    matches the sealed bundle's SHA-256. Chunks an earlier pairing left whole are kept."""
    if bundle.history_chunks == 0:
        return None
    got, resumed = partial.receiver(
        side.code.user, bundle.history_chunks, bundle.history_bytes, bundle.history_sha256,
        bundle.history_chunk_sha,
    )  # fmt: skip
    if progress is not None and resumed:
        progress(len(got.have), got.total)
    last = time.monotonic()
    asked_at = last
    while not got.complete:
        for sender, body in rv.receive(1.0):
            side.on_message(sender, body)
        fresh = False
        for inner in side.extra:
            if isinstance(inner, P.Chunk):
                fresh |= got.add(inner.index, inner.data)
        side.extra.clear()
        now = time.monotonic()
        if fresh:
            last = now
            if progress is not None:
                progress(len(got.have), got.total)
        elif now - max(last, asked_at) > RESUME_S:
            rv.send(side.code.rendezvous, [side.seal(P.Want(got.missing[:1024]))])
            asked_at = now
        if now - last > answer_s * 2:
            raise P.PairingError(f"the history stopped coming ({len(got.have)} of {got.total})")
    try:
        return _Got(got.finish(), got.total, resumed)
    except HistoryError:
        partial.clear()  # the whole does not match: none of it is worth keeping
        raise


def _check_secret(bundle: P.Bundle, user: str, scratch: Path) -> None:
    """The bundle holds exactly the account's secret key, and it signed the certificate."""
    ident = Identity(scratch / "gnupg")
    try:
        result = ident.gpg.import_keys(bundle.secret_key)
        got = {str(f).upper() for f in result.fingerprints if f}
        if got != {user} or not any(k.fingerprint == user for k in ident.keys(secret=True)):
            raise P.PairingError("the bundle does not hold the account's own secret key")
        try:
            ident.verify_detached(bundle.cert, bundle.cert_sig, user)
        except VerificationError as exc:
            raise P.PairingError(f"the bundle's certificate: {exc.message}") from None
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(ident.home), "--kill", "gpg-agent"],
            check=False, capture_output=True, timeout=10,
        )  # fmt: skip


def _apply(home: Home, code: P.Code, device: DeviceKey, bundle: P.Bundle, work: Path) -> bool:
    """Check everything in the bundle, then write the home; True if the key server took the
    new device's certificate."""
    try:
        cert = Certificate.parse(bundle.cert)
    except VerificationError as exc:
        raise P.PairingError(f"the bundle's certificate is unusable: {exc.message}") from None
    if cert.identity != code.user or cert.public_key != device.public_key:
        raise P.PairingError("the bundle certifies another device or account")
    _check_secret(bundle, code.user, work / "check")  # in a scratch home: the new one
    home.path.mkdir(parents=True, exist_ok=True)  # gets nothing from a bundle that fails
    home.path.chmod(0o700)
    result = home.identity.gpg.import_keys(bundle.secret_key)
    if {str(f).upper() for f in result.fingerprints if f} != {code.user}:
        raise P.PairingError("the account's key did not go into this home")
    device.save(home.path / "device.key")
    (home.path / "device.cert").write_bytes(bundle.cert)
    (home.path / "device.sig").write_text(bundle.cert_sig)
    settings = {k: v for k, v in bundle.settings.items() if k in SETTINGS}
    settings.setdefault("broker", code.broker)
    if code.keyserver:
        settings.setdefault("keyserver", code.keyserver)
    home.save_config(fingerprint=code.user, device_name=cert.name, **settings)
    if not code.keyserver:
        return False
    from ..keyclient import KeyClient

    try:
        KeyClient(code.keyserver).publish_device(
            bundle.cert, bundle.cert_sig, device.prove(bundle.cert)
        )
    except KeyServerError as exc:
        log.warning("pairing.publish_failed", why=exc.message[:200])
        return False
    return True
