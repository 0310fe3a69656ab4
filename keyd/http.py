"""keyd's HTTP face: HKP (`/pks/lookup`, `/pks/add`) and the device-certificate JSON API.

    GET  /pks/lookup?op=get|index|vindex&search=…[&options=mr]   HKP, as stock gpg speaks it
    POST /pks/add            form field `keytext`: one ASCII-armored public key
    POST /tits/devices       {"certificate": base64, "signature": armored}
    GET  /tits/devices/<FP>  {"identity": FP, "devices": [{..., "revoked": bool}]}
    POST /tits/revocations   {"revocation": base64, "signature": armored}
    GET  /tits/status        counts, for operators and `tits cloud up`

Every refusal is a status code with one line of text (HKP) or `{"error", "message"}` (JSON);
nothing a client sends can stop the server. Unknown `op` → 501, nothing found → 404.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from tits.log import sanitise

from .service import KeydError, KeyService

MAX_JSON_BODY = 64 * 1024
SERVICE_KEY: web.AppKey[KeyService] = web.AppKey("service", KeyService)

log = structlog.get_logger("keyd.http")


def _error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    if request.path.startswith("/tits/"):
        return web.json_response({"error": code, "message": message}, status=status)
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


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
        return _error(request, exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status >= 400:
            reason = exc.reason or "error"
            log.info("request.refused", path=sanitise(request.path), status=exc.status)
            return _error(request, exc.status, reason.lower().replace(" ", "-"), reason)
        raise
    except Exception:
        log.exception("request.crashed", path=sanitise(request.path))
        return _error(request, 500, "internal", "internal server error")


def _service(request: web.Request) -> KeyService:
    return request.app[SERVICE_KEY]


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
        if mr:  # what gpg --search-keys reads; vindex adds nothing machine-readable
            rows = await service.index(search)
            text = f"info:1:{len(rows)}\n" + "".join(rows)
        else:
            text = "\n".join(await service.vindex(search))
        return web.Response(text=text, content_type="text/plain")
    raise KeydError(501, f"op {sanitise(op, 20)!r} is not implemented", "not-implemented")


async def add(request: web.Request) -> web.Response:
    form = await request.post()  # over the size cap: aiohttp answers 413
    keytext = form.get("keytext")
    if keytext is not None and not isinstance(keytext, str):
        raise KeydError(400, "keytext must be a form field, not a file")
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


async def status(request: web.Request) -> web.Response:
    return web.json_response({"server": "tits-keyd", **_service(request).store.stats()})


async def root(request: web.Request) -> web.Response:
    return web.Response(
        text="ω IM key server (tits-keyd): HKP at /pks/lookup and /pks/add; devices at /tits/\n",
        content_type="text/plain",
    )


def make_app(service: KeyService, max_upload: int) -> web.Application:
    app = web.Application(client_max_size=max_upload, middlewares=[_errors])
    app[SERVICE_KEY] = service
    app.router.add_get("/", root)
    app.router.add_get("/pks/lookup", lookup)
    app.router.add_post("/pks/add", add)
    app.router.add_post("/tits/devices", publish_device)
    app.router.add_get("/tits/devices/{fp}", devices)
    app.router.add_post("/tits/revocations", revoke_device)
    app.router.add_get("/tits/status", status)
    return app
