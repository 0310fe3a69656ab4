"""keyd's HTTP face: HKP (`/pks/lookup`, `/pks/add`) and the device-certificate JSON API.

    GET  /pks/lookup?op=get|index|vindex&search=…[&options=mr]   HKP, as stock gpg speaks it
    POST /pks/add            form field `keytext`: one ASCII-armored public key
    POST /tits/devices       {"certificate": base64, "signature": armored, "proof": base64}
    GET  /tits/devices/<FP>  {"identity": FP, "devices": [{..., "revoked": bool}]}
    POST /tits/revocations   {"revocation": base64, "signature": armored}
    GET  /tits/revocations?since=T   {"revocations": [...dated T or later], "more": bool}
    GET  /tits/status        counts, for operators and `tits cloud up`
    GET  /metrics            the same and more in the Prometheus text format (keyd/metrics.py)

Every refusal is a status code with one line of text (HKP) or `{"error", "message"}` (JSON);
nothing a client sends can stop the server. Unknown `op` → 501, nothing found → 404, a client
over its budget of uploads or searches (keyd/limits.py) → 429 with Retry-After.

An upload's body is read on the event loop (it is I/O) but decoded, form-parsed and
dearmored in a worker thread, at most `UPLOAD_WORKERS` at once: a malformed or 1 MiB body
costs lookups nothing. A form that is not UTF-8 or a multipart body that does not parse is a
400, answered at once.
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
import json
import math
import traceback
import urllib.parse
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from tits.log import sanitise

from .limits import RateLimiter, client_address, client_key
from .metrics import CONTENT_TYPE, KeydMetrics
from .service import KeydError, KeyService

MAX_JSON_BODY = 64 * 1024
MAX_FORM_FIELDS = 16
UPLOAD_WORKERS = 2


@dataclass
class Limits:
    uploads: RateLimiter
    searches: RateLimiter
    upload_slots: asyncio.Semaphore
    trusted_proxies: frozenset[str] = frozenset()


SERVICE_KEY: web.AppKey[KeyService] = web.AppKey("service", KeyService)
LIMITS_KEY: web.AppKey[Limits] = web.AppKey("limits", Limits)

log = structlog.get_logger("keyd.http")


def _error(
    request: web.Request, status: int, code: str, message: str, retry_after: float | None = None
) -> web.Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    if request.path.startswith("/tits/"):
        return web.json_response(
            {"error": code, "message": message}, status=status, headers=headers
        )
    return web.Response(
        status=status, text=message + "\n", content_type="text/plain", headers=headers
    )


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except KeydError as exc:
        (log.debug if exc.status == 404 else log.info)(
            "request.refused",
            path=sanitise(request.path),
            status=exc.status,
            reason=sanitise(exc.message, 120),
        )
        return _error(request, exc.status, exc.code, exc.message, exc.retry_after)
    except web.HTTPException as exc:
        if exc.status >= 400:
            reason = exc.reason or "error"
            log.info("request.refused", path=sanitise(request.path), status=exc.status)
            return _error(request, exc.status, reason.lower().replace(" ", "-"), reason)
        raise
    except Exception as exc:
        # one line, not a rendered traceback: rendering one took ~0.1–0.4 s of the loop
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        log.error(
            "request.crashed",
            path=sanitise(request.path),
            error=sanitise(repr(exc), 200),
            at=f"{frame.filename}:{frame.lineno}",
        )
        return _error(request, 500, "internal", "internal server error")


def _service(request: web.Request) -> KeyService:
    return request.app[SERVICE_KEY]


def _spend(request: web.Request, limiter: RateLimiter, what: str) -> None:
    trusted = request.app[LIMITS_KEY].trusted_proxies
    address = client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
    wait = limiter.take(client_key(address))
    if wait:
        raise KeydError(
            429, f"too many {what} from your address; retry in {math.ceil(wait)} s",
            "rate-limited", retry_after=wait,
        )  # fmt: skip


async def lookup(request: web.Request) -> web.Response:
    q = request.query
    op = q.get("op")
    if op is None:
        raise KeydError(400, "missing op parameter")
    mr = "mr" in q.get("options", "").split(",")
    service = _service(request)
    search = q.get("search")
    if op == "get":
        armored = await service.get(search)
        return web.Response(text=armored, content_type="application/pgp-keys")
    if op in ("index", "vindex"):
        _spend(request, request.app[LIMITS_KEY].searches, "searches")
        if mr:  # what gpg --search-keys reads; vindex adds nothing machine-readable
            rows = await service.index(search)
            text = f"info:1:{len(rows)}\n" + "".join(rows)
        else:
            text = "\n".join(await service.vindex(search))
        return web.Response(text=text, content_type="text/plain")
    raise KeydError(501, f"op {sanitise(op, 20)!r} is not implemented", "not-implemented")


def _multipart_keytext(content_type: str, body: bytes) -> str | None:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = msg.get_payload() if msg.is_multipart() else None
    if not isinstance(parts, list) or not parts or msg.defects:
        raise KeydError(400, "malformed multipart body")
    if len(parts) > MAX_FORM_FIELDS:
        raise KeydError(400, f"more than {MAX_FORM_FIELDS} form fields")
    for part in parts:
        if not isinstance(part, email.message.Message):
            raise KeydError(400, "malformed multipart body")
        if part.get_param("name", header="content-disposition") != "keytext":
            continue
        if part.get_filename() is not None:
            raise KeydError(400, "keytext must be a form field, not a file")
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            raise KeydError(400, "malformed multipart body")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeydError(400, "keytext is not UTF-8") from None
    return None


def _form_keytext(content_type: str, raw_type: str, body: bytes) -> str | None:
    """The `keytext` field of an upload body (run in a worker thread)."""
    if content_type == "multipart/form-data":
        return _multipart_keytext(raw_type, body)
    if content_type not in ("application/x-www-form-urlencoded", "application/octet-stream"):
        raise KeydError(
            415, "send the key as a form (application/x-www-form-urlencoded)", "bad-type"
        )
    try:
        fields = urllib.parse.parse_qs(
            body.decode("utf-8"), keep_blank_values=True, errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )  # fmt: skip
    except UnicodeDecodeError:
        raise KeydError(400, "form body is not UTF-8 (or not percent-encoded)") from None
    except ValueError:
        raise KeydError(400, f"more than {MAX_FORM_FIELDS} form fields") from None
    values = fields.get("keytext")
    return values[0] if values else None


async def add(request: web.Request) -> web.Response:
    limits = request.app[LIMITS_KEY]
    _spend(request, limits.uploads, "uploads")
    body = await request.read()  # over the size cap: aiohttp answers 413
    async with limits.upload_slots:
        keytext = await asyncio.to_thread(
            _form_keytext, request.content_type,
            request.headers.get("Content-Type", ""), body,
        )  # fmt: skip
    del body
    fp, status, stripped = await _service(request).add(keytext)
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"fingerprint": fp, "status": status, "stripped": stripped})
    return web.Response(text=f"key {fp} {status}\n", content_type="text/plain")


async def _json_body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise KeydError(413, "request body too large", "too-large")
    body = await request.content.read(MAX_JSON_BODY + 1)
    if len(body) > MAX_JSON_BODY:
        raise KeydError(413, "request body too large", "too-large")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise KeydError(400, "request body is not JSON") from None


async def publish_device(request: web.Request) -> web.Response:
    result = await _service(request).publish_device(await _json_body(request))
    return web.json_response(result, status=201)


async def revoke_device(request: web.Request) -> web.Response:
    result = await _service(request).revoke_device(await _json_body(request))
    return web.json_response(result, status=201)


async def devices(request: web.Request) -> web.Response:
    return web.json_response(_service(request).devices(request.match_info["fp"]))


async def revocations(request: web.Request) -> web.Response:
    return web.json_response(_service(request).revocations(request.query.get("since")))


async def status(request: web.Request) -> web.Response:
    return web.json_response({"server": "tits-keyd", **_service(request).store.stats()})


async def root(request: web.Request) -> web.Response:
    return web.Response(
        text="ω IM key server (tits-keyd): HKP at /pks/lookup and /pks/add; devices at /tits/\n",
        content_type="text/plain",
    )


def make_app(
    service: KeyService,
    max_upload: int,
    uploads: RateLimiter | None = None,
    searches: RateLimiter | None = None,
    trusted_proxies: frozenset[str] = frozenset(),
) -> web.Application:
    metrics = KeydMetrics(service)
    app = web.Application(client_max_size=max_upload, middlewares=[metrics.middleware, _errors])
    app[SERVICE_KEY] = service
    app[LIMITS_KEY] = Limits(
        RateLimiter(1.0, 60) if uploads is None else uploads,
        RateLimiter(5.0, 60) if searches is None else searches,
        asyncio.Semaphore(UPLOAD_WORKERS),
        trusted_proxies,
    )
    app.router.add_get("/", root)
    app.router.add_get("/pks/lookup", lookup)
    app.router.add_post("/pks/add", add)
    app.router.add_post("/tits/devices", publish_device)
    app.router.add_get("/tits/devices/{fp}", devices)
    app.router.add_post("/tits/revocations", revoke_device)
    app.router.add_get("/tits/revocations", revocations)
    app.router.add_get("/tits/status", status)

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", serve_metrics)
    return app
