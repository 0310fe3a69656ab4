"""A small synchronous client for the ω IM key server (tits-keyd), on the standard library.

    kc = KeyClient("http://127.0.0.1:11371", timeout=10)
    kc.get_key(fp) -> str                    ASCII-armored key; checked to be exactly `fp`
    kc.search(query) -> list[dict]           {"fingerprint", "uids", "algo", "bits", "created",
                                              "expires", "revoked", "expired"}; [] if none
    kc.publish_key(armored) -> dict          {"fingerprint", "status", "stripped"}
    kc.publish_device(cert_bytes, signature, proof) -> dict    proof: `DeviceKey.prove(cert)`
    kc.devices(fp) -> list[dict]             each {"device", "name", "certificate" (base64),
                                              "signature", "proof", "revoked", "created",
                                              "expires", ...}: only devices of `fp` whose
                                              proof of possession checks (or revoked ones)
    kc.revoke_device(rev_bytes, signature) -> dict
    kc.revocations(since) -> (list[dict], more)   revocations dated `since` (Unix s) or later:
                                              {"identity", "device", "revocation" (base64),
                                              "signature", "revoked_at"}; unchecked

It only ever talks to the one server it was given (our own keyd); it has no code path that
uploads anywhere else. Every failure is a `KeyServerError` with a readable message.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .device import Certificate
from .errors import KeyServerError, VerificationError
from .identity import normalise_fingerprint

DEFAULT_TIMEOUT = 10.0
MAX_RESPONSE = 4 * 1024 * 1024


def _parse_mr_index(text: str) -> list[dict[str, Any]]:
    from tits.keyd.openpgp import mr_unescape  # the same escaping keyd writes

    keys: list[dict[str, Any]] = []
    for line in text.splitlines():
        f = line.split(":")
        if f[0] == "pub" and len(f) >= 7:
            fp = f[1].upper()
            keys.append(
                {
                    "fingerprint": fp,
                    "algo": int(f[2]) if f[2].isdigit() else None,
                    "bits": int(f[3]) if f[3].isdigit() else None,
                    "created": int(f[4]) if f[4].isdigit() else None,
                    "expires": int(f[5]) if f[5].isdigit() else None,
                    "revoked": "r" in f[6],
                    "expired": "e" in f[6],
                    "uids": [],
                }
            )
        elif f[0] == "uid" and len(f) >= 2 and keys:
            keys[-1]["uids"].append(mr_unescape(f[1]))
    return keys


class KeyClient:
    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(base_url.strip())
        scheme = {"hkp": "http", "hkps": "https"}.get(parts.scheme, parts.scheme)
        if scheme not in ("http", "https") or not parts.netloc:
            raise KeyServerError(f"not a key server URL: {base_url!r} (try http://host:11371)")
        netloc = parts.netloc if parts.port or parts.scheme != "hkp" else parts.netloc + ":11371"
        self.base_url = f"{scheme}://{netloc}{parts.path.rstrip('/')}"
        self.timeout = timeout

    # -- transport ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        not_found_ok: bool = False,
    ) -> tuple[int, bytes]:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"}
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read(MAX_RESPONSE)
        except urllib.error.HTTPError as exc:
            detail = self._detail(exc)
            if exc.code == 404 and not_found_ok:
                return 404, b""
            raise KeyServerError(
                f"key server {self.base_url} refused ({exc.code}): {detail}",
                code=f"http-{exc.code}",
            ) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KeyServerError(f"cannot reach key server {self.base_url}: {reason}") from None

    @staticmethod
    def _detail(exc: urllib.error.HTTPError) -> str:
        try:
            raw = exc.read(4096)
        except OSError:
            return exc.reason or ""
        try:
            obj = json.loads(raw)
            if isinstance(obj, dict) and "message" in obj:
                return str(obj["message"])
        except ValueError:
            pass
        text = raw.decode("utf-8", "replace").strip().splitlines()
        return text[0][:200] if text else str(exc.reason)

    def _json(self, method: str, path: str, payload: Any | None = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        ctype = "application/json" if body is not None else None
        _, data = self._request(method, path, body=body, content_type=ctype)
        try:
            return json.loads(data)
        except ValueError:
            raise KeyServerError(
                f"key server {self.base_url} sent something that is not JSON"
            ) from None

    # -- keys --------------------------------------------------------------------------------

    def get_key(self, fingerprint: str) -> str:
        """The ASCII-armored public key `fingerprint`; refuses an answer holding any other key."""
        from tits.keyd.openpgp import PacketError, parse_armored_keys

        fp = normalise_fingerprint(fingerprint)
        status, data = self._request(
            "GET",
            "/pks/lookup",
            {"op": "get", "options": "mr", "search": "0x" + fp},
            not_found_ok=True,
        )
        if status == 404:
            raise KeyServerError(f"key {fp} is not on key server {self.base_url}", code="not-found")
        text = data.decode("utf-8", "replace")
        try:
            keys = parse_armored_keys(text)
        except PacketError as exc:
            raise KeyServerError(f"key server sent an unusable key for {fp}: {exc}") from None
        if [k.fingerprint for k in keys] != [fp]:
            raise KeyServerError(f"key server answered a search for {fp} with a different key")
        return text

    def search(self, query: str) -> list[dict[str, Any]]:
        """Keys matching a fingerprint, long key id, email or part of a user id; [] if none."""
        status, data = self._request(
            "GET",
            "/pks/lookup",
            {"op": "index", "options": "mr", "search": query},
            not_found_ok=True,
        )
        if status == 404:
            return []
        return _parse_mr_index(data.decode("utf-8", "replace"))

    def publish_key(self, armored: str) -> dict[str, Any]:
        body = urllib.parse.urlencode({"keytext": armored}).encode()
        _, data = self._request(
            "POST", "/pks/add", body=body, content_type="application/x-www-form-urlencoded"
        )
        try:
            return dict(json.loads(data))
        except (ValueError, TypeError):  # a plain HKP server answers text
            return {"status": data.decode("utf-8", "replace").strip()}

    # -- device certificates -------------------------------------------------------------------

    def publish_device(self, cert_bytes: bytes, signature: str, proof: bytes) -> dict[str, Any]:
        """Publish a device certificate with its proof of possession (`DeviceKey.prove`)."""
        payload = {
            "certificate": base64.b64encode(cert_bytes).decode(),
            "signature": signature,
            "proof": base64.b64encode(proof).decode(),
        }
        return dict(self._json("POST", "/tits/devices", payload))

    def devices(self, fingerprint: str) -> list[dict[str, Any]]:
        """`fingerprint`'s devices as the server lists them, less any whose certificate names
        someone else or whose proof of possession does not check (a server that kept one
        from before proofs, or lies): the identity's signature is still the caller's to
        check. Revoked devices are kept, so the caller learns they are revoked."""
        fp = normalise_fingerprint(fingerprint)
        result = self._json("GET", f"/tits/devices/{fp}")
        devices = result.get("devices") if isinstance(result, dict) else None
        if not isinstance(devices, list):
            raise KeyServerError(f"key server {self.base_url} sent a malformed device list")
        return [d for d in devices if isinstance(d, dict) and (_proven(d, fp) or d.get("revoked"))]

    def revoke_device(
        self, rev_bytes: bytes, signature: str, by: str | None = None, by_proof: bytes = b""
    ) -> dict[str, Any]:
        """`by`: the device making it, with its signature `by_proof` (`REVOKE_BY_CONTEXT`):
        keyd then refuses it if that device was revoked first (two revoking each other)."""
        payload = {"revocation": base64.b64encode(rev_bytes).decode(), "signature": signature}
        if by is not None:
            payload |= {"by": by, "by_proof": base64.b64encode(by_proof).decode()}
        return dict(self._json("POST", "/tits/revocations", payload))

    def revocations(self, since: int) -> tuple[list[dict[str, Any]], bool]:
        result = self._json("GET", f"/tits/revocations?since={int(since)}")
        items = result.get("revocations") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise KeyServerError(f"key server {self.base_url} sent a malformed revocation list")
        return [d for d in items if isinstance(d, dict)], bool(result.get("more"))


def _proven(entry: dict[str, Any], fingerprint: str) -> bool:
    try:
        cert = Certificate.parse(base64.b64decode(entry["certificate"], validate=True))
        if cert.identity != fingerprint or cert.device != entry.get("device"):
            return False
        cert.check_proof(base64.b64decode(entry["proof"] or "", validate=True))
    except (KeyError, TypeError, ValueError, VerificationError):
        return False
    return True
