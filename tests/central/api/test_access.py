"""Who may call what: every route of the running central's application wants a valid token
(except login, and the dial-in link, which wants an enrolment token instead); a viewer may
look but not change; every route is documented in openapi.json and every documented path
is served; logout ends the token."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from central.api.web_app import API_PREFIX
from shared.passwords import hash_password
from tests.central.api.central_calls import assert_refused
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central

_PARAMETER = re.compile(r"\{[^}]+\}")
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")
PUBLIC_ROUTES = {("POST", "/auth/login"), ("GET", "/sites/link")}
VIEWER_PASSWORD = "viewer-pw-1"


def _served_routes(central: RunningCentral) -> set[tuple[str, str]]:
    """(method, path below the API prefix) of every route the running application serves."""
    app = central.node.web_app
    assert app is not None
    routes = set()
    for resource in app.router.resources():
        path = resource.canonical
        assert path.startswith(API_PREFIX), path
        for route in resource:
            if route.method != "HEAD":
                routes.add((route.method, path.removeprefix(API_PREFIX)))
    return routes


async def _documented_routes(central: RunningCentral) -> set[tuple[str, str]]:
    status, document = await central.call("GET", "/openapi.json")
    assert status == 200
    routes = set()
    for path, item in document["paths"].items():
        for method in item:
            if method in _HTTP_METHODS:
                routes.add((method.upper(), path))
    return routes


def _concrete(path: str) -> str:
    """`path` with its parameters filled in with an id that exists nowhere."""
    return _PARAMETER.sub("x-unknown", path)


async def test_every_route_but_the_public_ones_wants_a_valid_token(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        routes = _served_routes(central)
        assert len(routes) >= 15, routes
        assert routes >= PUBLIC_ROUTES
        for method, path in sorted(routes - PUBLIC_ROUTES):
            for token in (None, "not-a-token", "x" * 500):
                reply = await central.call(method, _concrete(path), token=token, json={})
                assert_refused(reply, 401, "unauthorized", None)
        # Unknown paths do not tell anonymous callers what exists, either.
        assert_refused(await central.call("GET", "/nowhere", token=None), 401, "unauthorized", None)
        assert_refused(await central.call("GET", "/nowhere"), 404, "not_found", None)


async def test_the_public_routes_check_their_callers_themselves(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        # The dial-in link wants an enrolment token, and a session token is not one.
        for token in (None, "not-an-enrolment-token", central.token):
            reply = await central.call("GET", "/sites/link", token=token)
            assert_refused(reply, 401, "enrolment_refused", None)
        # Login needs no token, and refuses a wrong password without saying more.
        reply = await central.call(
            "POST", "/auth/login", token=None, json={"username": "admin", "password": "wrong"}
        )
        message = assert_refused(reply, 401, "login_refused", None)
        assert message == "wrong username or password"
        reply = await central.call(
            "POST", "/auth/login", token=None, json={"username": "nobody", "password": "wrong"}
        )
        assert assert_refused(reply, 401, "login_refused", None) == message


async def _add_viewer(central: RunningCentral) -> str:
    password_hash = await asyncio.to_thread(hash_password, VIEWER_PASSWORD)
    await asyncio.to_thread(central.node.catalog.add_user, "vera", password_hash, "viewer")
    return await central.login("vera", VIEWER_PASSWORD)


async def test_a_viewer_looks_but_may_not_change_anything(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        viewer = await _add_viewer(central)
        assert await central.call("GET", "/auth/me", token=viewer) == (
            200,
            {"username": "vera", "role": "viewer"},
        )
        for path in ("/sites", "/devices", "/notifications", "/central"):
            status, _ = await central.call("GET", path, token=viewer)
            assert status == 200, path
        refused: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/sites", {"address": "127.0.0.1", "username": "u", "password": "p"}),
            ("PATCH", "/devices/d-anything", {"name": "renamed"}),
            ("DELETE", "/sites/s-anything", {}),
            ("POST", "/enrolments", {}),
            ("GET", "/enrolments", {}),
            ("PATCH", "/sites/s-anything", {"name": "renamed"}),
            ("POST", "/sites/s-anything/hardware", {}),
        ]
        for method, path, body in refused:
            reply = await central.call(method, path, token=viewer, json=body)
            message = assert_refused(reply, 403, "forbidden", None)
            assert "viewer" in message, message
        # The admin is still allowed what the viewer is not.
        status, _ = await central.call("POST", "/enrolments", json={})
        assert status == 201


async def test_every_route_is_documented_and_every_documented_path_is_served(
    tmp_path: Path,
) -> None:
    async with running_central(tmp_path) as central:
        served = _served_routes(central)
        documented = await _documented_routes(central)
    assert served - documented == set(), "served but not in openapi.json"
    assert documented - served == set(), "in openapi.json but not served"


async def test_logout_ends_the_token_and_only_that_one(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        second = await central.login("admin", ADMIN_PASSWORD)
        assert (await central.call("GET", "/auth/me", token=second))[0] == 200
        assert (await central.call("POST", "/auth/logout", token=second)) == (204, None)
        assert_refused(
            await central.call("GET", "/auth/me", token=second), 401, "unauthorized", None
        )
        assert_refused(
            await central.call("POST", "/auth/logout", token=second), 401, "unauthorized", None
        )
        # The other session of the same user goes on.
        assert (await central.call("GET", "/auth/me"))[0] == 200
