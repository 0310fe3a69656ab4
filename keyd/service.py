"""What keyd does, apart from HTTP: look keys up, accept uploads, keep device certificates.

Policy, decided here and documented for operators:

* Searches are exact: `0x` + 40-hex fingerprint, `0x` + 16-hex long key id (primary or subkey),
  or an email address (with or without `<>`, case-insensitive). `op=index` also takes a piece of
  a user id: at least 3 characters (shorter Latin text is enumeration), or 1–2 CJK ideographs,
  since most Chinese names are 2–3 of them (`林`, `王小明`); at most 100 keys answered, at most
  20 for a 1–2 ideograph search (a common surname matches many). Searches are budgeted per
  client (see below). Short key ids, wildcards (`*`),
  empty searches, searches over 256 characters and control characters are refused (400).
* Each client address (an IPv6 client: its /64) has a budget of uploads and of searches
  (`op=index`/`op=vindex`; `op=get` is free), token buckets set in the config; over it: 429
  with Retry-After. A malformed upload body (not UTF-8, multipart that does not parse) is 400.
* One key per upload: stock `gpg --send-keys` sends each key in its own request, so an upload
  holding several keys is refused (400) rather than half-accepted.
* Uploads are public keys only (a secret key is refused, 422), v4, within the size cap (413).
  Third-party certifications are dropped before GnuPG sees the key; everything else must carry
  a valid self-signature, or the upload is refused (422). An upload of a key already stored is
  merged by GnuPG: only that key's own new self-signatures, user ids, subkeys and revocations
  can be added; nothing is ever removed.
* Device certificates are accepted only with a detached signature by the identity they name,
  whose key keyd already holds, and with a proof of possession: the device key's signature
  over the certificate (`tits.device`), so nobody can certify someone else's device public
  key as their own (no proof: 400 `no-proof`; a wrong one: 403 `bad-proof`). Devices stored
  before proofs existed are served with `"proof": null` until their owner publishes again.
  A revocation is accepted only when signed by that identity, and is permanent: a revoked
  device stays revoked and is served marked so. A client may name the device that made it
  (`by`, with that device key's signature over the revocation): one made by a device already
  revoked is refused (409 `revoker-revoked`), so of two devices revoking each other, even at
  the same instant, the first in wins. `GET /tits/revocations?since=T` lists revocations by
  their signed date, for brokers that end revoked devices' sessions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import unicodedata
import weakref
from dataclasses import dataclass
from typing import Any

import structlog
from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import VerifyKey

from tits.device import PROOF_BYTES, REVOKE_BY_CONTEXT, Certificate, Revocation
from tits.errors import VerificationError
from tits.log import sanitise

from . import openpgp
from .fallback import Fallback
from .store import Store
from .validate import KeyValidator, ValidationError, email_of

MAX_SEARCH = 256
MIN_TEXT_SEARCH = 3
MAX_RESULTS = 100
MAX_SHORT_RESULTS = 20  # for a search of 1–2 CJK ideographs
MAX_DEVICES_PER_IDENTITY = 64
MAX_REVOCATIONS_PER_IDENTITY = 1024
MAX_REVOCATIONS_LISTED = 500
MAX_CERTIFICATE_BYTES = 1024
MAX_SIGNATURE_BYTES = 8192
CLOCK_SKEW = 300
PARSE_WORKERS = 2

_FPR_RE = re.compile(r"^(?:0[xX])?([0-9A-Fa-f]{40})\Z")
_KEYID_RE = re.compile(r"^(?:0[xX])?([0-9A-Fa-f]{16})\Z")
_SHORT_RE = re.compile(r"^(?:0[xX])([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32})\Z")
_EMAIL_RE = re.compile(r"^<?([^<>\s@]+@[^<>\s@]+)>?\Z")
_FP_PATH_RE = re.compile(r"^[0-9A-F]{40}\Z")

log = structlog.get_logger("keyd")


class KeydError(Exception):
    """A request keyd refuses: HTTP status, a short code and a message for the client;
    `retry_after` (seconds) for a client over its budget (429)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "bad-request",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Search:
    kind: str  # "fpr", "keyid", "email" or "text"
    value: str


def parse_search(raw: str | None, exact: bool) -> Search:
    """Classify an HKP `search=`; `exact` (op=get) refuses user-id fragments."""
    if raw is None:
        raise KeydError(400, "missing search parameter")
    if len(raw) > MAX_SEARCH:
        raise KeydError(400, f"search longer than {MAX_SEARCH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise KeydError(400, "control characters in search")
    text = raw.strip()
    if not text:
        raise KeydError(400, "empty search")
    if "*" in text or "?" in text or text in ("%", "_"):
        raise KeydError(400, "wildcard searches are not supported")
    if m := _FPR_RE.match(text):
        return Search("fpr", m.group(1).upper())
    if m := _KEYID_RE.match(text):
        return Search("keyid", m.group(1).upper())
    if _SHORT_RE.match(text):
        raise KeydError(400, "short key ids and v3 fingerprints are not accepted; use 0x<fpr>")
    if m := _EMAIL_RE.match(text):
        return Search("email", m.group(1).lower())
    if exact:
        raise KeydError(400, "op=get takes a fingerprint, a long key id or an email address")
    if len(text) < MIN_TEXT_SEARCH and not all(is_ideograph(c) for c in text):
        raise KeydError(
            400, f"search at least {MIN_TEXT_SEARCH} characters of a user id (or a Chinese name)"
        )
    return Search("text", text)


def is_ideograph(char: str) -> bool:
    """A CJK (unified or compatibility) ideograph: 林, 王, 𠀋 — not kana, hangul or punctuation."""
    return unicodedata.name(char, "").startswith(
        ("CJK UNIFIED IDEOGRAPH-", "CJK COMPATIBILITY IDEOGRAPH-")
    )


def parse_fingerprint(value: str) -> str:
    fp = value.upper().removeprefix("0X")
    if not _FP_PATH_RE.match(fp):
        raise KeydError(400, "not a 40-hex fingerprint")
    return fp


def _b64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 2:
        raise KeydError(400, f"{what} must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeydError(400, f"{what} is not valid base64") from None
    if len(data) > limit:
        raise KeydError(400, f"{what} is too large")
    return data


def _signature(value: Any) -> str:
    if (
        not isinstance(value, str)
        or len(value) > MAX_SIGNATURE_BYTES
        or "-----BEGIN PGP SIGNATURE-----" not in value
    ):
        raise KeydError(400, "signature must be an ASCII-armored detached OpenPGP signature")
    return value


class KeyService:
    def __init__(self, store: Store, validator: KeyValidator, fallback: Fallback) -> None:
        self.store = store
        self.validator = validator
        self.fallback = fallback
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._parsing = asyncio.Semaphore(PARSE_WORKERS)  # dearmoring threads at once

    def _lock(self, fp: str) -> asyncio.Lock:
        lock = self._locks.get(fp)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[fp] = lock
        return lock

    # -- lookups -----------------------------------------------------------------------------

    def _find(self, search: Search) -> list[str]:
        if search.kind == "fpr":
            return [search.value] if self.store.armored(search.value) is not None else []
        if search.kind == "keyid":
            return self.store.by_keyid(search.value)
        if search.kind == "email":
            return self.store.by_email(search.value, MAX_RESULTS)
        short = len(search.value) < MIN_TEXT_SEARCH
        return self.store.by_text(search.value, MAX_SHORT_RESULTS if short else MAX_RESULTS)

    async def find(self, search: Search) -> list[str]:
        found = self._find(search)
        if not found and search.kind != "text" and self.fallback.enabled:
            await self._ask_fallback(search)
            found = self._find(search)
        return found

    async def get(self, raw: str | None) -> str:
        """op=get: ASCII armor of every key matching an exact search."""
        search = parse_search(raw, exact=True)
        if search.kind == "fpr":  # the hot path: one primary-key read, no gpg, no parsing
            armored = self.store.armored(search.value)
            if armored is not None:
                return armored
        found = await self.find(search)
        if not found:
            raise KeydError(404, "no key found", "not-found")
        if len(found) == 1:
            return self.store.armored(found[0]) or ""
        blobs = [self.store.binary(fp) or b"" for fp in found]
        return openpgp.armor(b"".join(blobs))

    async def index(self, raw: str | None) -> list[str]:
        """op=index / op=vindex: the `pub:`/`uid:` rows of every matching key."""
        found = await self.find(parse_search(raw, exact=False))
        if not found:
            raise KeydError(404, "no key found", "not-found")
        return self.store.index_rows(found)

    async def vindex(self, raw: str | None) -> list[str]:
        found = await self.find(parse_search(raw, exact=False))
        if not found:
            raise KeydError(404, "no key found", "not-found")
        return [self.store.vindex(fp) or "" for fp in found]

    async def _ask_fallback(self, search: Search) -> None:
        query = search.value if search.kind == "email" else "0x" + search.value
        for key in (await self.fallback.get(query))[:5]:
            if search.kind == "fpr" and key.fingerprint != search.value:
                continue
            if search.kind == "keyid" and search.value not in (
                key.keyid,
                *(s[-16:] for s in key.subkeys),
            ):
                continue
            if search.kind == "email" and not any(
                email_of(uid.decode("utf-8", "replace")) == search.value for uid in key.user_ids
            ):
                continue
            try:
                fp, status, _ = await self._accept(key, source="fallback")
            except KeydError as exc:
                log.warning("fallback.rejected", fingerprint=key.fingerprint, error=exc.message)
                continue
            log.info("fallback.cached", fingerprint=fp, status=status)

    # -- uploads -----------------------------------------------------------------------------

    async def add(self, keytext: str | None) -> tuple[str, str, int]:
        """POST /pks/add: (fingerprint, "created" | "updated" | "unchanged", signatures dropped)."""
        if not keytext:
            raise KeydError(400, "missing keytext field")
        try:
            async with self._parsing:  # 0.28 s a MiB of pure Python: never on the loop
                keys = await asyncio.to_thread(openpgp.parse_armored_keys, keytext)
        except openpgp.SecretKeyError as exc:
            raise KeydError(422, str(exc), "secret-key") from None
        except openpgp.PacketError as exc:
            raise KeydError(400, str(exc), "bad-key") from None
        if not keys:
            raise KeydError(400, "no public key in the upload", "bad-key")
        if len(keys) > 1:
            raise KeydError(
                400, f"one key per upload, please; this one holds {len(keys)}", "too-many-keys"
            )
        return await self._accept(keys[0], source="upload")

    async def _accept(self, key: openpgp.KeyBlock, source: str) -> tuple[str, str, int]:
        fp = key.fingerprint
        async with self._lock(fp):
            stored = self.store.binary(fp)
            t0 = time.perf_counter()
            try:
                valid = await self.validator.validate(key, stored)
            except ValidationError as exc:
                raise KeydError(exc.status, str(exc), "invalid-key") from None
            if stored is None:
                status = "created"
            else:
                status = "unchanged" if valid.binary == stored else "updated"
            if status != "unchanged":
                self.store.put_key(valid, source)
            log.info(
                "key.accepted",
                fingerprint=fp,
                status=status,
                source=source,
                stripped=key.stripped,
                ms=round((time.perf_counter() - t0) * 1000, 1),
            )
            return fp, status, key.stripped

    # -- device certificates -----------------------------------------------------------------

    def _identity_key(self, fp: str) -> str:
        armored = self.store.armored(fp)
        if armored is None:
            raise KeydError(
                404, f"no key {fp} on this server; publish the identity key first", "no-key"
            )
        return armored

    async def publish_device(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise KeydError(400, "expected a JSON object")
        data = _b64(body.get("certificate"), "certificate", MAX_CERTIFICATE_BYTES)
        signature = _signature(body.get("signature"))
        if body.get("proof") is None:
            raise KeydError(
                400,
                "a device certificate needs a proof of possession (the device key's signature "
                "over it); upgrade the client and publish again",
                "no-proof",
            )
        proof = _b64(body.get("proof"), "proof", PROOF_BYTES)
        try:
            cert = Certificate.parse(data)
        except VerificationError as exc:
            raise KeydError(400, exc.message, "bad-certificate") from None
        now = time.time()
        if cert.expires <= now:
            raise KeydError(422, "device certificate has expired", "expired")
        if cert.created > now + CLOCK_SKEW or cert.expires <= cert.created:
            raise KeydError(422, "device certificate dates are impossible", "bad-certificate")
        try:
            cert.check_proof(proof)  # before gpg: it costs ~50 µs
        except VerificationError as exc:
            log.warning("device.unproven", identity=cert.identity, device=cert.device)
            raise KeydError(
                403,
                f"{exc.message}: only the holder of a device key can publish it",
                "bad-proof",
            ) from None
        armored = self._identity_key(cert.identity)
        try:
            await self.validator.verify_signed(armored, data, signature, cert.identity)
        except VerificationError as exc:
            log.warning("device.forged", identity=cert.identity, error=sanitise(exc.message))
            raise KeydError(
                403, f"certificate is not signed by {cert.identity}: {exc.message}", "forged"
            ) from None
        async with self._lock("dev:" + cert.identity):
            known = self.store.device_created(cert.identity, cert.device)
            if known is None and self.store.device_count(cert.identity) >= MAX_DEVICES_PER_IDENTITY:
                raise KeydError(422, "too many devices for this identity", "too-many-devices")
            if known is not None and known > cert.created:
                raise KeydError(409, "a newer certificate for this device is stored", "stale")
            self.store.put_device(
                cert.identity, cert.device, data, signature, cert.name, cert.created,
                cert.expires, proof,
            )  # fmt: skip
        log.info("device.published", identity=cert.identity, device=cert.device)
        revoked = self.store.is_revoked(cert.identity, cert.device)
        return {"identity": cert.identity, "device": cert.device, "revoked": revoked}

    async def revoke_device(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise KeydError(400, "expected a JSON object")
        data = _b64(body.get("revocation"), "revocation", MAX_CERTIFICATE_BYTES)
        signature = _signature(body.get("signature"))
        try:
            rev = Revocation.parse(data)
        except VerificationError as exc:
            raise KeydError(400, exc.message, "bad-revocation") from None
        armored = self._identity_key(rev.identity)
        try:
            await self.validator.verify_signed(armored, data, signature, rev.identity)
        except VerificationError as exc:
            log.warning("revocation.forged", identity=rev.identity, error=sanitise(exc.message))
            raise KeydError(
                403, f"revocation is not signed by {rev.identity}: {exc.message}", "forged"
            ) from None
        by = self._revoker(rev, data, body)
        async with self._lock("dev:" + rev.identity):
            if by is not None and self.store.is_revoked(rev.identity, by):
                # two devices revoking each other: the first one in wins, the other is told
                raise KeydError(
                    409, f"device {by}, which made this revocation, was itself revoked",
                    "revoker-revoked",
                )  # fmt: skip
            if self.store.revocation_count(rev.identity) >= MAX_REVOCATIONS_PER_IDENTITY:
                raise KeydError(422, "too many revocations for this identity", "too-many")
            self.store.put_revocation(rev.identity, rev.device, data, signature, rev.revoked)
        log.info("device.revoked", identity=rev.identity, device=rev.device)
        return {"identity": rev.identity, "device": rev.device, "revoked": True}

    def _revoker(self, rev: Revocation, data: bytes, body: dict[str, Any]) -> str | None:
        """The device that made a revocation, when the client names it (`by`, with that
        device key's signature over it, `by_proof`); None for a client that does not."""
        by = body.get("by")
        if by is None:
            return None
        if not isinstance(by, str) or not re.fullmatch(r"[0-9a-f]{16}", by):
            raise KeydError(400, "by must be a 16-hex device id")
        proof = _b64(body.get("by_proof"), "by_proof", PROOF_BYTES)
        row = next((d for d in self.store.devices(rev.identity) if d.device == by), None)
        if row is None:
            raise KeydError(404, f"no device {by} of {rev.identity} here", "no-device")
        try:
            VerifyKey(Certificate.parse(row.certificate).public_key).verify(
                REVOKE_BY_CONTEXT + data, proof
            )
        except (BadSignatureError, NaclValueError, VerificationError, TypeError, ValueError):
            raise KeydError(
                403, f"the revocation is not signed by device {by}", "bad-proof"
            ) from None
        return by

    def revocations(self, since_text: str | None) -> dict[str, Any]:
        """GET /tits/revocations?since=T: revocations dated T or later (at most
        MAX_REVOCATIONS_LISTED), each with the identity's signature for the reader to check."""
        try:
            since = int(since_text or "0")
        except ValueError:
            raise KeydError(400, "since must be Unix seconds") from None
        rows = self.store.revocations_since(since, MAX_REVOCATIONS_LISTED)
        return {
            "revocations": [
                {
                    "identity": i,
                    "device": d,
                    "revoked_at": r,
                    "signature": sig,
                    "revocation": base64.b64encode(data).decode("ascii"),
                }
                for i, d, data, sig, r in rows
            ],  # fmt: skip
            "more": len(rows) == MAX_REVOCATIONS_LISTED,
        }

    def devices(self, fp_text: str) -> dict[str, Any]:
        fp = parse_fingerprint(fp_text)
        out = []
        for d in self.store.devices(fp):
            out.append(
                {
                    "device": d.device,
                    "name": d.name,
                    "created": d.created,
                    "expires": d.expires,
                    "certificate": base64.b64encode(d.certificate).decode("ascii"),
                    "signature": d.signature,
                    "proof": base64.b64encode(d.proof).decode("ascii") if d.proof else None,
                    "revoked": d.revocation is not None,
                    "revocation": (
                        base64.b64encode(d.revocation).decode("ascii") if d.revocation else None
                    ),
                    "revocation_signature": d.revocation_signature,
                    "revoked_at": d.revoked_at,
                }
            )
        return {"identity": fp, "devices": out}
