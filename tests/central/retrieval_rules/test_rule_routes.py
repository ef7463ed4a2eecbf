"""The retrieval rule routes, on a running central (real catalog, accounts and tokens):
make, list, read, change and remove rules; every bad member refused naming it; unknown
devices and rules answered 404; a viewer may read, not change; the paths are documented.

Until `central_node.py` serves these routes (see the wiring in the report of issue 5's
rules), the test serves them beside the central on an application of their own, built
with the central's own services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from central.api.retrieval_rule_routes import retrieval_rule_routes
from central.api.web_app import API_PREFIX, build_central_app
from central.catalog import DeviceRecord
from central.retrieval.event_rules import EventRetrieval
from central.retrieval.schedule_rules import ScheduleRetrieval
from shared.passwords import hash_password
from tests.central.api.central_calls import assert_refused
from tests.central.catalog.catalog_parts import camera, dial_in_site
from tests.central.central_fixture import RunningCentral, running_central

VIEWER_PASSWORD = "viewer-pw-1"


class RulesApi:
    """Calls to the rule routes as the central's admin (or with another token)."""

    def __init__(self, client: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._client = client
        self._base_url = base_url
        self.token = token

    async def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        url = f"{self._base_url}{API_PREFIX}{path}"
        async with self._client.request(method, url, headers=headers, **kwargs) as reply:
            body = await reply.json() if reply.content_type == "application/json" else None
            return reply.status, body


@asynccontextmanager
async def rules_api(central: RunningCentral) -> AsyncIterator[RulesApi]:
    services = central.node.services
    assert services is not None
    if central.node.web_app is not None and any(
        resource.canonical == f"{API_PREFIX}/retrieval-rules"
        for resource in central.node.web_app.router.resources()
    ):
        yield RulesApi(central.client, central.base_url, central.token)  # wired: the real one
        return
    for name, work in (
        ("event_retrieval", EventRetrieval(services.catalog, services.retrievals)),
        (
            "schedule_retrieval",
            ScheduleRetrieval(services.catalog, services.retrievals, clock=services.clock),
        ),
    ):
        if not hasattr(services, name):
            setattr(services, name, work)
    app: web.Application = build_central_app(services, retrieval_rule_routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as client:
            yield RulesApi(client, str(server.make_url("")).rstrip("/"), central.token)
    finally:
        await server.close()


async def _site_with_cameras(
    central: RunningCentral, name: str, remote: str
) -> tuple[str, list[DeviceRecord]]:
    site, devices = await asyncio.to_thread(
        central.node.catalog.add_site,
        dial_in_site(name, remote_site_id=remote),
        None,
        [camera("cam-a"), camera("cam-b")],
    )
    return site.site_id, devices


async def test_rules_are_made_listed_read_changed_and_removed(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central, rules_api(central) as api:
        site_id, (cam_a, cam_b) = await _site_with_cameras(central, "Depot", "site-depot")
        status, made = await api.call(
            "POST",
            "/retrieval-rules",
            json={
                "name": "Yard motion",
                "kind": "event",
                "device_ids": [cam_a.device_id, cam_b.device_id],
                "events": ["motion_started"],
                "sources": [cam_a.device_id],
                "before_s": 120,
                "after_s": 300,
            },
        )
        assert status == 201, made
        assert made["id"].startswith("r-")
        assert made["site_id"] == site_id
        assert made["quality"] == "hq"
        assert made["enabled"] is True
        assert made["daily"] is None
        assert made["last_queued_end"] is None
        status, daily = await api.call(
            "POST",
            "/retrieval-rules",
            json={
                "name": "Opening hours",
                "kind": "schedule",
                "device_ids": [cam_b.device_id],
                "daily": "07:00-22:00",
                "quality": "lq",
            },
        )
        assert status == 201, daily
        assert daily["events"] == daily["sources"] == []
        status, listed = await api.call("GET", "/retrieval-rules")
        assert status == 200
        assert [_set_by_operator(r) for r in listed["rules"]] == [
            _set_by_operator(made),
            _set_by_operator(daily),
        ]
        status, of_site = await api.call("GET", f"/retrieval-rules?site={site_id}")
        assert status == 200
        assert [r["id"] for r in of_site["rules"]] == [made["id"], daily["id"]]
        assert await api.call("GET", f"/retrieval-rules/{made['id']}") == (200, made)
        status, changed = await api.call(
            "PATCH",
            f"/retrieval-rules/{made['id']}",
            json={"enabled": False, "after_s": 60, "sources": [], "name": "Yard"},
        )
        assert status == 200, changed
        assert {k: changed[k] for k in ("enabled", "after_s", "sources", "name")} == {
            "enabled": False,
            "after_s": 60,
            "sources": [],
            "name": "Yard",
        }
        assert changed["before_s"] == 120
        assert await api.call("GET", f"/retrieval-rules/{made['id']}") == (200, changed)
        assert await api.call("DELETE", f"/retrieval-rules/{made['id']}") == (204, None)
        # The schedule rule's catch-up may have queued its past intervals meanwhile (the
        # central runs its schedule work): compare what the operator set.
        status, left = await api.call("GET", "/retrieval-rules")
        assert status == 200
        assert [_set_by_operator(r) for r in left["rules"]] == [_set_by_operator(daily)]
        reply = await api.call("GET", f"/retrieval-rules/{made['id']}")
        assert_refused(reply, 404, "not_found", None)


async def test_bad_members_unknown_devices_and_other_sites_are_refused(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central, rules_api(central) as api:
        _, (cam_a, _) = await _site_with_cameras(central, "Depot", "site-depot")
        _, (other, _) = await _site_with_cameras(central, "Shop", "site-shop")
        good: dict[str, Any] = {
            "name": "Yard",
            "kind": "event",
            "device_ids": [cam_a.device_id],
            "events": ["motion_started"],
            "after_s": 60,
        }
        refused: list[tuple[dict[str, Any], str]] = [
            ({"name": None}, "name"),
            ({"kind": "sometimes"}, "kind"),
            ({"device_ids": "d-1"}, "device_ids"),
            ({"device_ids": []}, "device_ids"),
            ({"device_ids": [cam_a.device_id, other.device_id]}, "device_ids"),
            ({"events": ["doorbell"]}, "events"),
            ({"events": "motion_started"}, "events"),
            ({"after_s": 3601}, "after_s"),
            ({"after_s": "60"}, "after_s"),
            ({"before_s": -1}, "before_s"),
            ({"enabled": "yes"}, "enabled"),
            ({"quality": "best"}, "quality"),
            ({"daily": "07:00-22:00"}, "daily"),
            ({"kind": "schedule", "daily": "7-22"}, "daily"),
            ({"sources": [other.device_id]}, "sources"),
            ({"colour": "red"}, "colour"),
        ]
        for changes, field in refused:
            reply = await api.call("POST", "/retrieval-rules", json={**good, **changes})
            assert_refused(reply, 400, "bad_request", field)
        reply = await api.call(
            "POST", "/retrieval-rules", json={**good, "device_ids": ["d-nothing"]}
        )
        assert "d-nothing" in assert_refused(reply, 404, "not_found", None)
        reply = await api.call("POST", "/retrieval-rules", data=b"{not json")
        assert_refused(reply, 400, "bad_request", "body")
        status, rule = await api.call("POST", "/retrieval-rules", json=good)
        assert status == 201, rule
        for patch, field in [
            ({"kind": "schedule"}, "kind"),
            ({"device_ids": [other.device_id]}, "device_ids"),
            ({"after_s": 0}, "after_s"),
            ({"name": ""}, "name"),
        ]:
            reply = await api.call("PATCH", f"/retrieval-rules/{rule['id']}", json=patch)
            assert_refused(reply, 400, "bad_request", field)
        reply = await api.call(
            "PATCH", f"/retrieval-rules/{rule['id']}", json={"sources": ["d-nothing"]}
        )
        assert_refused(reply, 404, "not_found", None)
        for method in ("GET", "PATCH", "DELETE"):
            reply = await api.call(method, "/retrieval-rules/r-nothing", json={})
            assert_refused(reply, 404, "not_found", None)
        assert_refused(
            await api.call("GET", "/retrieval-rules?site=s-nothing"), 400, "bad_request", "site"
        )
        assert await api.call("GET", f"/retrieval-rules/{rule['id']}") == (200, rule)


async def test_a_viewer_may_read_rules_but_not_change_them(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central, rules_api(central) as api:
        _, (cam_a, _) = await _site_with_cameras(central, "Depot", "site-depot")
        hashed = await asyncio.to_thread(hash_password, VIEWER_PASSWORD)
        await asyncio.to_thread(central.node.catalog.add_user, "vera", hashed, "viewer")
        viewer = await central.login("vera", VIEWER_PASSWORD)
        body = {
            "name": "Night",
            "kind": "schedule",
            "device_ids": [cam_a.device_id],
            "daily": "22:00-06:00",
        }
        reply = await api.call("POST", "/retrieval-rules", token=viewer, json=body)
        assert_refused(reply, 403, "forbidden", None)
        status, rule = await api.call("POST", "/retrieval-rules", json=body)
        assert status == 201
        assert await api.call("GET", "/retrieval-rules", token=viewer) == (200, {"rules": [rule]})
        for method in ("PATCH", "DELETE"):
            reply = await api.call(
                method, f"/retrieval-rules/{rule['id']}", token=viewer, json={"enabled": False}
            )
            assert_refused(reply, 403, "forbidden", None)


async def test_the_rule_routes_are_documented(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central, rules_api(central) as api:
        status, document = await api.call("GET", "/openapi.json")
        assert status == 200
        documented = {
            (method.upper(), path)
            for path, item in document["paths"].items()
            if path.startswith("/retrieval-rules")
            for method in item
        }
        served = {(route.method, route.path) for route in retrieval_rule_routes()}
        assert documented == served
        assert "RetrievalRule" in document["components"]["schemas"]


def _set_by_operator(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule without what the central's schedule work moves by itself."""
    return {k: v for k, v in rule.items() if k not in ("last_queued_end", "updated")}
