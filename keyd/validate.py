"""GnuPG as the judge of an upload: each check runs in a throwaway GnuPG home.

`KeyValidator.validate` takes one key already pre-filtered by `openpgp.split_keys` (third-party
signatures gone) plus the stored copy of that key, if any, and lets gpg merge and check them:

    gpg --import --import-options import-clean,self-sigs-only   (stored + upload, one stream)
    gpg --export FPR                                            (the merged, verified key)
    gpg --with-colons --list-sigs FPR                           (dates, flags, user ids)

Three gpg calls per upload, none per lookup: the results become the rows that lookups serve.
Every user id and subkey in an upload must survive gpg's self-signature check; an upload with
one that does not (say, a user id Mallory "added" to Alice's key) is refused whole.

`verify_signed` checks a device certificate or revocation against a stored identity key with
`tits.identity.Identity.verify_detached`, which also checks who signed it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tits.identity import GPG_CONF, Identity
from tits.log import sanitise

from . import openpgp

GPG_TIMEOUT = 20.0
ALGORITHMS = {
    1: "rsa", 2: "rsa", 3: "rsa", 16: "elg", 17: "dsa", 18: "ecdh", 19: "ecdsa", 22: "eddsa"
}  # fmt: skip
_BASE_ARGS = ["--batch", "--no-options", "--no-autostart", "--no-greeting", "--quiet"]
_EMAIL_RE = re.compile(r"<([^<>\s]+@[^<>\s]+)>\s*\Z")
_BARE_EMAIL_RE = re.compile(r"^\s*([^<>\s]+@[^<>\s]+)\s*\Z")


class ValidationError(Exception):
    """An upload GnuPG does not accept; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def email_of(uid: str) -> str:
    m = _EMAIL_RE.search(uid) or _BARE_EMAIL_RE.match(uid)
    return m.group(1).lower() if m else ""


def _colon_unescape(field: str) -> str:
    """Undo gpg's escaping of colon-listing fields (\\x3a, \\n, \\\\ ...)."""
    if "\\" not in field:
        return field
    raw = bytearray()
    data = field.encode("utf-8")
    i = 0
    simple = {ord("n"): 10, ord("r"): 13, ord("f"): 12, ord("v"): 11, ord("b"): 8, ord("0"): 0}
    while i < len(data):
        b = data[i]
        if b == 0x5C and i + 1 < len(data):
            nxt = data[i + 1]
            if nxt == ord("x") and i + 4 <= len(data):
                try:
                    raw.append(int(data[i + 2 : i + 4], 16))
                    i += 4
                    continue
                except ValueError:
                    pass
            if nxt in simple:
                raw.append(simple[nxt])
                i += 2
                continue
            raw.append(nxt)
            i += 2
            continue
        raw.append(b)
        i += 1
    return raw.decode("utf-8", "replace")


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class UserId:
    uid: str
    email: str  # lower case, "" when the user id holds none
    created: int | None
    expires: int | None
    revoked: bool


@dataclass(frozen=True)
class ValidatedKey:
    fingerprint: str
    binary: bytes
    armored: str
    keyids: tuple[str, ...]  # primary and subkey long key ids
    algo: int
    bits: int
    created: int
    expires: int | None
    revoked: bool
    uids: tuple[UserId, ...]
    uid_rows: str  # the `uid:` lines of an `op=index&options=mr` answer
    vindex: str  # a human-readable listing for `op=vindex`
    stripped: int  # third-party signatures dropped from the upload

    def index_rows(self, now: float | None = None) -> str:
        return pub_row(self.fingerprint, self.algo, self.bits, self.created, self.expires,
                       self.revoked, now) + self.uid_rows  # fmt: skip


def pub_row(
    fp: str,
    algo: int,
    bits: int,
    created: int | None,
    expires: int | None,
    revoked: bool,
    now: float | None = None,
) -> str:
    now = time.time() if now is None else now
    flags = ("r" if revoked else "") + ("e" if expires and expires <= now else "")
    return f"pub:{fp}:{algo}:{bits}:{created or ''}:{expires or ''}:{flags}\n"


def _uid_row(u: UserId) -> str:
    flags = "r" if u.revoked else ""
    return f"uid:{openpgp.mr_escape(u.uid)}:{u.created or ''}:{u.expires or ''}:{flags}\n"


def _date(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts else "?"


async def _gpg(home: str, args: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "gpg", "--homedir", home, *_BASE_ARGS, *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), GPG_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ValidationError("GnuPG took too long on this key", status=503) from None
    return proc.returncode or 0, out, err


class KeyValidator:
    """Runs the gpg checks in throwaway homes under `workdir`, at most `concurrency` at once."""

    def __init__(self, workdir: Path, concurrency: int = 4) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self._slots = asyncio.Semaphore(concurrency)

    def _home(self) -> str:
        home = tempfile.mkdtemp(prefix="v", dir=self.workdir)
        os.chmod(home, 0o700)
        return home

    async def validate(self, key: openpgp.KeyBlock, stored: bytes | None) -> ValidatedKey:
        async with self._slots:
            home = self._home()
            try:
                return await self._validate(home, key, stored)
            finally:
                shutil.rmtree(home, ignore_errors=True)

    async def _validate(
        self, home: str, key: openpgp.KeyBlock, stored: bytes | None
    ) -> ValidatedKey:
        fp = key.fingerprint
        _, status, err = await _gpg(
            home,
            ["--status-fd", "1", "--import-options", "import-clean,self-sigs-only", "--import"],
            (stored or b"") + key.to_bytes(),
        )
        ok = [ln.split() for ln in status.decode("ascii", "replace").splitlines()]
        if not any(len(w) == 4 and w[1] == "IMPORT_OK" and w[3] == fp for w in ok):
            reason = _import_problem(status, err)
            raise ValidationError(f"GnuPG does not accept key {fp}: {reason}")
        rc, binary, err = await _gpg(home, ["--export", fp])
        if rc != 0 or not binary:
            raise ValidationError(f"GnuPG could not export key {fp}")
        rc, listing, _ = await _gpg(
            home, ["--with-colons", "--fixed-list-mode", "--trust-model", "always",
                   "--list-sigs", fp],
        )  # fmt: skip
        if rc != 0:
            raise ValidationError(f"GnuPG could not list key {fp}")
        merged = await asyncio.to_thread(openpgp.split_keys, binary)  # parsing: off the loop
        if len(merged) != 1 or merged[0].fingerprint != fp:
            raise ValidationError(f"GnuPG returned something other than key {fp}")
        kept_uids = set(merged[0].user_ids)
        for uid in key.user_ids:
            if uid not in kept_uids:
                text = sanitise(uid.decode("utf-8", "replace"))
                raise ValidationError(
                    f"user id {text!r} carries no valid self-signature by {fp}; "
                    "only the key's owner can add user ids"
                )
        for sub in key.subkeys:
            if sub not in merged[0].subkeys:
                raise ValidationError(
                    f"subkey {sub} is not bound to {fp} by a valid signature of that key"
                )
        return await asyncio.to_thread(
            _build, fp, binary, listing.decode("utf-8", "replace"), key.stripped
        )

    async def verify_signed(
        self, armored_key: str, data: bytes, signature: str, expected: str
    ) -> None:
        """Raise VerificationError unless `signature` over `data` is by key `expected`."""
        async with self._slots:
            await asyncio.to_thread(self._verify_signed, armored_key, data, signature, expected)

    def _verify_signed(self, armored_key: str, data: bytes, signature: str, expected: str) -> None:
        home = self._home()
        try:
            (Path(home) / "gpg.conf").write_text(GPG_CONF + "no-autostart\n")
            ident = Identity(home)
            ident.import_public(armored_key)
            ident.verify_detached(data, signature, expected)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def _import_problem(status: bytes, err: bytes) -> str:
    text = status.decode("utf-8", "replace")
    if "IMPORT_PROBLEM" in text:
        return "it is malformed or not self-signed"
    lines = [
        ln.removeprefix("gpg: ")
        for ln in err.decode("utf-8", "replace").splitlines()
        if ln.strip() and "Total number processed" not in ln
    ]
    return lines[0][:200] if lines else "no valid user id with a self-signature"


def _build(fp: str, binary: bytes, listing: str, stripped: int) -> ValidatedKey:
    algo = bits = created = 0
    expires: int | None = None
    revoked = False
    keyids: list[str] = []
    uids: list[UserId] = []
    lines_out: list[str] = []
    for line in listing.splitlines():
        f = line.split(":")
        kind = f[0]
        if kind in ("pub", "sub") and len(f) > 6:
            keyids.append(f[4].upper())
            curve = f[16] if len(f) > 16 and f[16] else ""
            name = curve or f"{ALGORITHMS.get(int(f[3] or 0), 'algo' + f[3])}{f[2]}"
            flags = " [revoked]" if f[1] == "r" else ""
            flags += f" [expires {_date(_int(f[6]))}]" if _int(f[6]) else ""
            lines_out.append(f"{kind}  {name}/{f[4].upper()} {_date(_int(f[5]))}{flags}")
            if kind == "pub":
                algo, bits = int(f[3] or 0), int(f[2] or 0)
                created, expires, revoked = _int(f[5]) or 0, _int(f[6]), f[1] == "r"
        elif kind == "fpr" and len(f) > 9 and len(lines_out) == 1:
            lines_out.append(f"     {f[9]}")
        elif kind == "uid" and len(f) > 9:
            text = _colon_unescape(f[9])
            u = UserId(text, email_of(text), _int(f[5]), _int(f[6]), f[1] == "r")
            uids.append(u)
            shown = "".join(c if c.isprintable() else "?" for c in text)
            lines_out.append(f"uid  {shown}{' [revoked]' if u.revoked else ''}")
        elif kind in ("sig", "rev") and len(f) > 5:
            what = "rev" if kind == "rev" else "sig"
            lines_out.append(f"{what}  {f[4].upper()} {_date(_int(f[5]))} (self, class {f[10]})")
    if not keyids or keyids[0] != fp[-16:]:
        raise ValidationError(f"GnuPG listed something other than key {fp}")
    return ValidatedKey(
        fingerprint=fp,
        binary=binary,
        armored=openpgp.armor(binary),
        keyids=tuple(dict.fromkeys(keyids)),
        algo=algo,
        bits=bits,
        created=created,
        expires=expires,
        revoked=revoked,
        uids=tuple(uids),
        uid_rows="".join(_uid_row(u) for u in uids),
        vindex="\n".join(lines_out) + "\n",
        stripped=stripped,
    )
