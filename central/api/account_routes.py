"""Login, logout and who this central is."""

from __future__ import annotations

from aiohttp import web

from central.api.bodies import colon_fingerprint
from central.api.services import SERVICES
from central.api.web_app import PRINCIPAL, PUBLIC, TOKEN, ApiError, ApiRoute
from central.auth import Action, LoginRefused, LoginThrottled
from shared.api_input import format_instant, json_object, query_values, required_string

_AUTH_CHALLENGE = 'Bearer realm="siteline"'


def account_routes() -> list[ApiRoute]:
    return [
        ApiRoute("POST", "/auth/login", _login, PUBLIC),
        ApiRoute("POST", "/auth/logout", _logout, Action.VIEW),
        ApiRoute("GET", "/auth/me", _me, Action.VIEW),
        ApiRoute("GET", "/central", _central, Action.VIEW),
    ]


def no_query(request: web.Request) -> None:
    query_values(request.query.items(), required=())


async def _login(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(await request.read(), allowed=("username", "password"))
    username = required_string(body, "username")
    password = required_string(body, "password")
    accounts = request.app[SERVICES].accounts
    try:
        session = await accounts.login(username, password, request.remote or "")
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
    no_query(request)
    await request.app[SERVICES].accounts.logout(request[TOKEN])
    return web.Response(status=204)


async def _me(request: web.Request) -> web.Response:
    no_query(request)
    principal = request[PRINCIPAL]
    return web.json_response({"username": principal.username, "role": principal.role})


async def _central(request: web.Request) -> web.Response:
    no_query(request)
    info = request.app[SERVICES].info
    return web.json_response(
        {
            "id": info.central_id,
            "name": info.name,
            "version": info.version,
            "public_key": info.public_key.hex(),
            "fingerprint": colon_fingerprint(info.fingerprint),
        }
    )
