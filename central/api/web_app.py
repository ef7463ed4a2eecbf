"""The central's API application: every route, its access policy, errors as JSON.

Every route is declared with `ApiRoute`, which names the `Action` it performs; the
application refuses to build with a route that names none, so no route is ever reachable
without a policy. Two middlewares wrap every request. The outer one turns every refusal into
``{"error": {"code": ..., "message": ..., "field": ...}}`` with a 4xx status whose message
names what was wrong (a 500 says only that the central's log has the details, never a
traceback). The inner one requires a valid bearer token (except on the routes marked
public: login, and the link sites dial in on, which checks its own enrolment token) and
asks `AccessPolicy.allows(principal, action, device_id)`; unknown paths need a token too,
so the API's shape is not probed anonymously. Request bodies are bounded by
`CLIENT_MAX_SIZE`.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

from central.api.services import SERVICES, CentralServices
from central.auth import Action, Principal
from central.catalog.errors import Conflict, InvalidRecord, NotFound
from central.site_management import SiteOffline
from central.site_probe import SiteProbeError
from shared.api_errors import Refusal, json_errors
from shared.api_input import BadRequest

__all__ = [
    "API_PREFIX",
    "PRINCIPAL",
    "STOPPING",
    "TOKEN",
    "ApiError",
    "ApiRoute",
    "build_central_app",
]

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
CLIENT_MAX_SIZE = 64 * 1024
PRINCIPAL = web.RequestKey("principal", Principal)
TOKEN = web.RequestKey("bearer_token", str)
STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set when the server starts to shut down: endless responses end on it."""
_POLICIES = web.AppKey("route_policies", dict)
_OPENAPI = web.AppKey("openapi_json", bytes)
_AUTH_CHALLENGE = 'Bearer realm="siteline"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = "public"
"""The policy of a route that checks its caller itself (login, the dial-in link)."""


class ApiError(Exception):
    """A refusal with its HTTP status, error code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.field = field


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str  # below API_PREFIX
    handler: Handler
    action: Action | str  # an Action, or PUBLIC


def build_central_app(services: CentralServices, routes: Iterable[ApiRoute]) -> web.Application:
    """The application serving `routes` with the central's authentication and errors."""
    app = web.Application(
        middlewares=[_json_errors, _authenticate], client_max_size=CLIENT_MAX_SIZE
    )
    app[SERVICES] = services
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_announce_stopping)
    app[_OPENAPI] = importlib.resources.files("central.api").joinpath("openapi.json").read_bytes()
    policies: dict[str, Action | str] = {}
    for index, route in enumerate(
        [ApiRoute("GET", "/openapi.json", _openapi, Action.VIEW), *routes]
    ):
        if not isinstance(route.action, Action) and route.action != PUBLIC:
            raise ValueError(f"{route.method} {route.path}: a route must name its action")
        name = f"r{index}-{route.method.lower()}"
        policies[name] = route.action
        app.router.add_route(route.method, API_PREFIX + route.path, route.handler, name=name)
    app[_POLICIES] = policies
    return app


async def _announce_stopping(app: web.Application) -> None:
    app[STOPPING].set()


def principal_may(request: web.Request, action: Action, device_id: str | None = None) -> bool:
    """Whether the caller may take `action` (on `device_id`): for routes that filter lists."""
    return request.app[SERVICES].policy.allows(request[PRINCIPAL], action, device_id)


# -- middlewares -----------------------------------------------------------------------------


def _refusal(exc: Exception) -> Refusal | None:
    """What an exception raised by a route means to the client."""
    match exc:
        case ApiError():
            return Refusal(exc.status, exc.code, exc.message, exc.headers, exc.field)
        case BadRequest():
            return Refusal(400, "bad_request", str(exc), field=exc.parameter)
        case InvalidRecord():
            return Refusal(400, "bad_request", str(exc), field=exc.field)
        case SiteProbeError():
            return Refusal(422, "site_unusable", exc.message, field=exc.field)
        case NotFound():
            return Refusal(404, "not_found", str(exc))
        case Conflict():
            return Refusal(409, "conflict", str(exc))
        case SiteOffline():
            return Refusal(409, "site_offline", str(exc))
    return None


_json_errors = json_errors(_refusal, max_body_bytes=CLIENT_MAX_SIZE, log=_log, who="the central")


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_name = request.match_info.route.name
    action = request.app[_POLICIES].get(route_name) if route_name else None
    if action == PUBLIC:
        return await handler(request)
    services = request.app[SERVICES]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if not scheme and request.headers.get("Upgrade", "").lower() == "websocket":
        # Browsers cannot set headers on a WebSocket: they give the token in the query.
        scheme, token = "bearer", request.query.get("token", "")
    principal = None
    if scheme.lower() == "bearer" and token:
        principal = services.accounts.authenticate(token)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            f"a valid bearer token is required (POST {API_PREFIX}/auth/login)",
            {"WWW-Authenticate": _AUTH_CHALLENGE},
        )
    request[PRINCIPAL] = principal
    request[TOKEN] = token
    if action is None:  # no such route (404 or 405 follows): authenticated callers only
        return await handler(request)
    if not services.policy.allows(principal, action):
        raise ApiError(403, "forbidden", f"the role {principal.role!r} may not {action.value}")
    device_id = request.match_info.get("device_id")
    if device_id is not None and not services.policy.allows(principal, action, device_id):
        # A device the caller may not use looks like one that does not exist.
        raise ApiError(404, "not_found", f"device {device_id!r} does not exist")
    return await handler(request)


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_OPENAPI], content_type="application/json")
