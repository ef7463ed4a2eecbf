"""The site's local REST API (JSON over HTTPS) on top of `SiteService` and `Accounts`.

Every route lives under `/api/v1` and is described in `agent/openapi.json`. Two middlewares
wrap every request. The outer one turns every refusal into a JSON error,
``{"error": {"code": ..., "message": ...}}``, with a message that names the parameter at
fault. The inner one requires a valid bearer token on every route except login (unknown
paths included, so the API's shape is not probed anonymously) and puts the caller's
`Principal` on the request under `PRINCIPAL`, where routes added later (the link's
WebSocket) find it too. Request bodies are small and bounded by `CLIENT_MAX_SIZE`.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiohttp import web

from agent.accounts import Accounts, LoginRefused, LoginThrottled, Principal
from agent.api_bodies import (
    device_json,
    hold_json,
    range_json,
    site_info_json,
    status_json,
    timeline_json,
)
from agent.site_service import (
    DeviceNotFound,
    HoldNotFound,
    HoldRefused,
    InvalidInput,
    SiteService,
)
from shared.api_errors import Refusal, json_errors
from shared.api_input import (
    BadRequest,
    format_instant,
    json_object,
    member_string_list,
    optional_string,
    parse_instant,
    query_values,
    required_string,
)

__all__ = ["ACCOUNTS", "API_PREFIX", "PRINCIPAL", "SERVICE", "STOPPING", "TOKEN", "build_web_app"]

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
CLIENT_MAX_SIZE = 64 * 1024
LOGIN_ROUTE = "auth-login"
PRINCIPAL = web.RequestKey("principal", Principal)
"""Who the request acts for; set on every request that passed authentication."""
SERVICE = web.AppKey("site_service", SiteService)
ACCOUNTS = web.AppKey("accounts", Accounts)
STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set when the server starts to shut down: endless responses (event and live streams) end
on it instead of being cut off when the shutdown timeout runs out."""
_OPENAPI = web.AppKey("openapi_json", bytes)
TOKEN = web.RequestKey("bearer_token", str)
"""The bearer token the request came with, so long responses can tell when its session ends."""
_HOLD_ID = re.compile(r"[0-9]{1,18}")
_AUTH_CHALLENGE = 'Bearer realm="siteline"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A refusal with its HTTP status, error code and message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def build_web_app(
    service: SiteService,
    accounts: Accounts,
    *,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """The API application; more routes may be added (as `extra_routes` or on
    `app.router`) until it starts, and they get the same authentication and errors."""
    app = web.Application(
        middlewares=[_json_errors, _authenticate], client_max_size=CLIENT_MAX_SIZE
    )
    app[SERVICE] = service
    app[ACCOUNTS] = accounts
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_announce_stopping)
    app[_OPENAPI] = importlib.resources.files("agent").joinpath("openapi.json").read_bytes()
    p = API_PREFIX
    app.add_routes(
        [
            web.post(f"{p}/auth/login", _login, name=LOGIN_ROUTE),
            web.post(f"{p}/auth/logout", _logout),
            web.get(f"{p}/site", _site, allow_head=False),
            web.get(f"{p}/status", _status, allow_head=False),
            web.get(f"{p}/devices", _devices, allow_head=False),
            web.get(f"{p}/devices/{{device_id}}/timeline", _timeline, allow_head=False),
            web.get(f"{p}/holds", _list_holds, allow_head=False),
            web.post(f"{p}/holds", _place_hold),
            web.delete(f"{p}/holds/{{hold_id}}", _release_hold),
            web.get(f"{p}/openapi.json", _openapi, allow_head=False),
            *extra_routes,
        ]
    )
    return app


async def _announce_stopping(app: web.Application) -> None:
    app[STOPPING].set()


# -- middlewares -----------------------------------------------------------------------------


def _refusal(exc: Exception) -> Refusal | None:
    """What an exception raised by a route means to the client."""
    match exc:
        case ApiError():
            return Refusal(exc.status, exc.code, exc.message, exc.headers)
        case BadRequest() | InvalidInput():
            return Refusal(400, "bad_request", str(exc))
        case DeviceNotFound() | HoldNotFound():
            return Refusal(404, "not_found", str(exc))
        case HoldRefused():
            return Refusal(409, "hold_refused", str(exc))
    return None


_json_errors = json_errors(_refusal, max_body_bytes=CLIENT_MAX_SIZE, log=_log, who="the agent")


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name == LOGIN_ROUTE:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    principal = None
    if scheme.lower() == "bearer" and token:
        principal = request.app[ACCOUNTS].authenticate(token)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            f"a valid bearer token is required (POST {API_PREFIX}/auth/login)",
            {"WWW-Authenticate": _AUTH_CHALLENGE},
        )
    request[PRINCIPAL] = principal
    request[TOKEN] = token
    return await handler(request)


# -- routes ----------------------------------------------------------------------------------


async def _login(request: web.Request) -> web.Response:
    _no_query(request)
    body = json_object(await request.read(), allowed=("username", "password"))
    username = required_string(body, "username")
    password = required_string(body, "password")
    try:
        session = await request.app[ACCOUNTS].login(username, password, request.remote or "")
    except LoginThrottled as exc:
        raise ApiError(
            429, "too_many_attempts", str(exc), {"Retry-After": str(round(exc.retry_after_s))}
        ) from exc
    except LoginRefused as exc:
        raise ApiError(
            401, "login_refused", str(exc), {"WWW-Authenticate": _AUTH_CHALLENGE}
        ) from exc
    return web.json_response(
        {"token": session.token, "expires_at": format_instant(session.expires_at_ns)}
    )


async def _logout(request: web.Request) -> web.Response:
    _no_query(request)
    request.app[ACCOUNTS].logout(request[TOKEN])
    return web.Response(status=204)


async def _site(request: web.Request) -> web.Response:
    _no_query(request)
    return web.json_response(site_info_json(request.app[SERVICE].site_info()))


async def _status(request: web.Request) -> web.Response:
    _no_query(request)
    return web.json_response(status_json(await request.app[SERVICE].status(request[PRINCIPAL])))


async def _devices(request: web.Request) -> web.Response:
    _no_query(request)
    devices = request.app[SERVICE].devices(request[PRINCIPAL])
    return web.json_response({"devices": [device_json(d) for d in devices]})


async def _timeline(request: web.Request) -> web.Response:
    query = query_values(request.query.items(), required=("start", "end"), optional=("stream",))
    start_ns = parse_instant("start", query["start"])
    end_ns = parse_instant("end", query["end"])
    device_id = request.match_info["device_id"]
    timelines = await request.app[SERVICE].timeline(
        request[PRINCIPAL], device_id, start_ns, end_ns, query.get("stream")
    )
    return web.json_response(
        {
            "device_id": device_id,
            **range_json(start_ns, end_ns),
            "streams": [timeline_json(t) for t in timelines],
        }
    )


async def _list_holds(request: web.Request) -> web.Response:
    _no_query(request)
    holds = await request.app[SERVICE].list_holds(request[PRINCIPAL])
    return web.json_response({"holds": [hold_json(h) for h in holds]})


async def _place_hold(request: web.Request) -> web.Response:
    _no_query(request)
    body = json_object(
        await request.read(), allowed=("device", "stream", "streams", "start", "end", "expires")
    )
    device_id = required_string(body, "device")
    streams: list[str] | None = None
    one = optional_string(body, "stream")
    several = body.get("streams")
    if one is not None and several is not None:
        raise BadRequest("streams", "give either stream or streams, not both")
    if one is not None:
        streams = [one]
    elif several is not None:
        streams = member_string_list(body, "streams")
    start_ns = parse_instant("start", required_string(body, "start"))
    end_ns = parse_instant("end", required_string(body, "end"))
    expires_ns = parse_instant("expires", required_string(body, "expires"))
    try:
        holds = await request.app[SERVICE].place_hold(
            request[PRINCIPAL],
            device_id,
            streams=streams,
            start_ns=start_ns,
            end_ns=end_ns,
            expires_ns=expires_ns,
        )
    except InvalidInput as exc:
        if exc.parameter == "streams" and one is not None:
            raise BadRequest("stream", exc.problem) from exc  # name it as the caller did
        raise
    return web.json_response({"holds": [hold_json(h) for h in holds]}, status=201)


async def _release_hold(request: web.Request) -> web.Response:
    _no_query(request)
    text = request.match_info["hold_id"]
    if not _HOLD_ID.fullmatch(text):
        shown = text if len(text) <= 32 else text[:32] + "..."
        raise BadRequest("hold_id", f"not a hold id (a whole number): {shown!r}")
    await request.app[SERVICE].release_hold(request[PRINCIPAL], int(text))
    return web.Response(status=204)


async def _openapi(request: web.Request) -> web.Response:
    _no_query(request)
    return web.Response(body=request.app[_OPENAPI], content_type="application/json")


# -- input ---------------------------------------------------------------------------------


def _no_query(request: web.Request) -> None:
    query_values(request.query.items(), required=())
