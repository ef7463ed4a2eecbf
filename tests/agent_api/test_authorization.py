"""Every route refuses callers without a valid token; per-device permissions hold on every
route that names a device, and a forbidden device answers exactly like an unknown one."""

from __future__ import annotations

import re

from aiohttp import web

from agent.web_api import API_PREFIX, LOGIN_ROUTE
from shared.clock import NS_PER_S
from tests.agent_api.api_site import TOKEN_TTL_S, ApiSite
from tests.store.store_chunks import T0_NS, ChunkFactory

# A valid-looking value for each path parameter of the app's routes.
PATH_VALUES = {"device_id": "cam-a", "hold_id": "1"}


def app_routes(app: web.Application) -> list[tuple[str, str, str | None]]:
    """(method, path with parameters filled in, route name) of every route of the app."""
    routes = []
    for route in app.router.routes():
        template = route.resource.canonical if route.resource is not None else ""
        path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], template)
        routes.append((route.method, path, route.name))
    return routes


async def test_every_route_but_login_needs_a_valid_token(api: ApiSite) -> None:
    routes = app_routes(api.app)
    assert len(routes) >= 10
    login = [r for r in routes if r[2] == LOGIN_ROUTE]
    assert login == [("POST", f"{API_PREFIX}/auth/login", LOGIN_ROUTE)]
    expired = await api.login()
    api.clock.advance(TOKEN_TTL_S + 1)
    logged_out = await api.login()
    assert (await api.call("POST", "/api/v1/auth/logout", token=logged_out))[0] == 204
    bad_credentials = {
        "no token": {},
        "garbage token": {"Authorization": "Bearer not-a-token"},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong scheme": {"Authorization": f"Basic {expired}"},
        "expired token": {"Authorization": f"Bearer {expired}"},
        "logged-out token": {"Authorization": f"Bearer {logged_out}"},
        "overlong token": {"Authorization": "Bearer " + "x" * 5000},
    }
    checked = 0
    for method, path, name in routes:
        if name == LOGIN_ROUTE:
            continue
        for what, headers in bad_credentials.items():
            status, data, answer_headers = await api.call(method, path, headers=headers, json={})
            assert status == 401, (method, path, what, data)
            assert data == {
                "error": {
                    "code": "unauthorized",
                    "message": "a valid bearer token is required (POST /api/v1/auth/login)",
                }
            }
            assert answer_headers["WWW-Authenticate"] == 'Bearer realm="siteline"'
            checked += 1
    assert checked == (len(routes) - 1) * len(bad_credentials)


async def test_unknown_paths_need_a_token_too_then_answer_404(api: ApiSite) -> None:
    assert (await api.call("GET", "/api/v1/cameras"))[0] == 401
    token = await api.login()
    status, data, _ = await api.call("GET", "/api/v1/cameras", token=token)
    assert (status, data) == (
        404,
        {"error": {"code": "not_found", "message": "no route /api/v1/cameras"}},
    )
    status, data, headers = await api.call("PUT", "/api/v1/site", token=token)
    assert status == 405
    assert isinstance(data, dict)
    assert data["error"]["code"] == "method_not_allowed"
    assert headers["Allow"] == "GET"


async def test_a_user_sees_only_the_devices_granted(api: ApiSite) -> None:
    clerk = await api.login("clerk")
    status, data, _ = await api.call("GET", "/api/v1/devices", token=clerk)
    assert status == 200
    assert isinstance(data, dict)
    assert [d["id"] for d in data["devices"]] == ["cam-a", "door"]
    nobody = await api.login("nobody")
    assert (await api.call("GET", "/api/v1/devices", token=nobody))[1] == {"devices": []}
    status, data, _ = await api.call("GET", "/api/v1/status", token=clerk)
    assert isinstance(data, dict)
    assert [c["id"] for c in data["cameras"]] == ["cam-a"]


async def test_a_forbidden_device_answers_like_an_unknown_one(api: ApiSite) -> None:
    clerk = await api.login("clerk")
    query = {"start": "2023-11-14T22:00:00Z", "end": "2023-11-14T23:00:00Z"}

    async def timeline(device_id: str) -> tuple[int, object]:
        status, data, _ = await api.call(
            "GET", f"/api/v1/devices/{device_id}/timeline", token=clerk, params=query
        )
        return status, data

    async def hold(device_id: str) -> tuple[int, object]:
        body = {
            "device": device_id,
            "start": "2023-11-14T22:00:00Z",
            "end": "2023-11-14T23:00:00Z",
            "expires": "2023-11-15T22:00:00Z",
        }
        status, data, _ = await api.call("POST", "/api/v1/holds", token=clerk, json=body)
        return status, data

    async def chunks(device_id: str) -> tuple[int, object]:
        params = {**query, "stream": "hq"}
        path = f"/api/v1/devices/{device_id}/chunks"
        status, data, _ = await api.call("GET", path, token=clerk, params=params)
        return status, data

    async def live(device_id: str) -> tuple[int, object]:
        path = f"/api/v1/devices/{device_id}/live"
        status, data, _ = await api.call("GET", path, token=clerk, params={"stream": "hq"})
        return status, data

    async def events(device_id: str) -> tuple[int, object]:
        path = "/api/v1/events"
        status, data, _ = await api.call("GET", path, token=clerk, params={"device": device_id})
        return status, data

    assert (await timeline("cam-a"))[0] == 200
    assert (await chunks("cam-a"))[0] == 200
    for probe in (timeline, hold, chunks, live, events):
        forbidden = await probe("cam-b")
        unknown = await probe("cam-z")
        assert forbidden[0] == unknown[0] == 404
        assert forbidden[1] == {"error": {"code": "not_found", "message": "no device 'cam-b'"}}
        assert unknown[1] == {"error": {"code": "not_found", "message": "no device 'cam-z'"}}
        # Parts of a granted camera are devices of their own and are not granted with it.
        assert (await probe("cam-a.mic"))[0] == 404


async def test_holds_are_listed_and_released_only_on_granted_devices(api: ApiSite) -> None:
    factory = ChunkFactory(api.signer, site_id=api.config.site.id)
    for device_id in ("cam-a", "cam-b"):
        await api.put(factory.run(3, device_id=device_id, stream="hq", payload_size=1024))
    expires_ns = T0_NS + 3600 * NS_PER_S
    on_a = api.store.place_hold(
        "cam-a", "hq", T0_NS, T0_NS + 6 * NS_PER_S, expires_ns=expires_ns, owner="admin"
    )
    on_b = api.store.place_hold(
        "cam-b", "hq", T0_NS, T0_NS + 6 * NS_PER_S, expires_ns=expires_ns, owner="admin"
    )
    clerk = await api.login("clerk")
    status, data, _ = await api.call("GET", "/api/v1/holds", token=clerk)
    assert status == 200
    assert isinstance(data, dict)
    assert [h["id"] for h in data["holds"]] == [on_a.hold_id]
    forbidden = await api.call("DELETE", f"/api/v1/holds/{on_b.hold_id}", token=clerk)
    unknown = await api.call("DELETE", "/api/v1/holds/999", token=clerk)
    assert forbidden[0] == unknown[0] == 404
    assert forbidden[1] == {"error": {"code": "not_found", "message": f"no hold {on_b.hold_id}"}}
    assert unknown[1] == {"error": {"code": "not_found", "message": "no hold 999"}}
    assert {h.hold_id for h in api.store.list_holds()} == {on_a.hold_id, on_b.hold_id}
    assert (await api.call("DELETE", f"/api/v1/holds/{on_a.hold_id}", token=clerk))[0] == 204
    assert [h.hold_id for h in api.store.list_holds()] == [on_b.hold_id]
