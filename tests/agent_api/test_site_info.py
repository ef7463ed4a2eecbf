"""Site info, devices, status and the OpenAPI document, through the real HTTPS API."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from shared.api_input import format_instant
from shared.clock import NS_PER_S
from tests.agent_api.api_site import ApiSite
from tests.store.store_chunks import T0_NS, ChunkFactory

REPO = Path(__file__).resolve().parents[2]


async def test_site_info_names_the_site_and_its_keys(api: ApiSite) -> None:
    token = await api.login("nobody")  # site info needs a login, not a device
    status, data, _ = await api.call("GET", "/api/v1/site", token=token)
    assert status == 200
    assert data == {
        "id": api.config.site.id,
        "name": "Test site",
        "product": "Siteline agent",
        "version": "9.9.9",
        "time_zone": "UTC",
        "fingerprint": api.identity.fingerprint,
        "public_key": api.signer.public_key.hex(),
    }


async def test_devices_list_kinds_streams_and_site_names(api: ApiSite) -> None:
    token = await api.login()
    status, data, _ = await api.call("GET", "/api/v1/devices", token=token)
    assert status == 200
    assert isinstance(data, dict)
    summary = [
        (d["id"], d["kind"], d["name"], d["parent"], [s["name"] for s in d["streams"]])
        for d in data["devices"]
    ]
    assert summary == [
        ("cam-a", "camera", "cam-a", None, ["hq", "lq"]),
        ("cam-a.mic", "microphone", "cam-a microphone", "cam-a", ["audio"]),
        ("cam-a.motion", "metadata", "cam-a motion", "cam-a", ["motion"]),
        ("cam-b", "camera", "cam-b", None, ["hq", "lq"]),
        ("cam-b.motion", "metadata", "cam-b motion", "cam-b", ["motion"]),
        ("door", "input", "Back door", None, ["state"]),
        ("siren", "output", "Siren", None, []),
        ("speaker", "speaker", "Shop floor", None, []),
    ]
    # Each stream's format as far as the site knows it: the synthetic cameras encode what
    # their configuration says (tests/agent/site_config.py); an input's state has none.
    streams = {(d["id"], s["name"]): s for d in data["devices"] for s in d["streams"]}
    assert streams["cam-a", "hq"] == {
        "name": "hq",
        "media": "video",
        "recording": "continuous",
        "codec": "h264",
        "width": 320,
        "height": 180,
        "frame_rate": 10,
    }
    assert [streams["cam-b", "lq"][k] for k in ("codec", "width", "height", "frame_rate")] == [
        "h264",
        160,
        90,
        5,
    ]
    assert [streams["cam-a.mic", "audio"][k] for k in ("codec", "width", "frame_rate")] == [
        "aac",
        None,
        None,
    ]
    unknown = {"codec": None, "width": None, "height": None, "frame_rate": None}
    assert streams["door", "state"].items() >= unknown.items()
    assert {d["id"] for d in data["devices"]} == set(api.config.device_ids())


async def test_status_reports_storage_streams_cameras_and_uptime(api: ApiSite) -> None:
    factory = ChunkFactory(api.signer, site_id=api.config.site.id)
    await api.put(factory.run(3, device_id="cam-a", stream="lq"))
    await api.put(factory.run(2, start_ns=T0_NS + 100 * NS_PER_S, device_id="cam-b"))
    api.clock.advance(5)
    token = await api.login()
    status, data, _ = await api.call("GET", "/api/v1/status", token=token)
    assert status == 200
    assert isinstance(data, dict)
    usage = api.store.usage()
    storage = data["storage"]
    assert storage["used_bytes"] == usage.live_bytes > 0
    assert storage["free_bytes"] == usage.quota_bytes - usage.live_bytes
    assert storage["chunk_count"] == 5
    assert storage["hold_budget_bytes"] == 64 * 1024
    assert storage["disk_free_bytes"] > 0
    assert data["uptime_s"] == 5.0
    assert data["now"] == format_instant(T0_NS + 5 * NS_PER_S)
    assert data["cameras_up"] == 1
    assert data["cameras"] == [
        {"id": "cam-a", "name": "cam-a", "up": True},
        {"id": "cam-b", "name": "cam-b", "up": False},
    ]
    assert [
        (s["device_id"], s["stream"], s["chunk_count"], s["oldest"], s["newest"])
        for s in data["streams"]
    ] == [
        ("cam-a", "lq", 3, "2023-11-14T22:13:20Z", "2023-11-14T22:13:26Z"),
        ("cam-b", "lq", 2, "2023-11-14T22:15:00Z", "2023-11-14T22:15:04Z"),
    ]
    api.cameras_up["cam-b"] = True
    clerk = await api.login("clerk")
    status, data, _ = await api.call("GET", "/api/v1/status", token=clerk)
    assert isinstance(data, dict)
    assert data["cameras"] == [{"id": "cam-a", "name": "cam-a", "up": True}]
    assert [s["device_id"] for s in data["streams"]] == ["cam-a"]


async def test_routes_without_parameters_refuse_query_parameters(api: ApiSite) -> None:
    token = await api.login()
    status, data, _ = await api.call("GET", "/api/v1/devices?kind=camera", token=token)
    assert status == 400
    assert isinstance(data, dict)
    assert data["error"]["message"].startswith("kind: unknown parameter")


async def test_the_openapi_document_describes_exactly_the_apps_routes(api: ApiSite) -> None:
    token = await api.login()
    status, served, _ = await api.call("GET", "/api/v1/openapi.json", token=token)
    assert status == 200
    document = json.loads((REPO / "agent" / "openapi.json").read_text())
    assert served == document
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    routes = {(method, path) for method, path, _ in _templates(api)}
    assert documented == routes
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            public = operation.get("security") == []
            assert public == (path == "/api/v1/auth/login"), (method, path)
            if not public:
                assert "401" in operation["responses"], (method, path)
            declared = {p["name"] for p in operation.get("parameters", [])}
            assert set(_path_parameters(path)) <= declared, (method, path)
    timeline = document["paths"]["/api/v1/devices/{device_id}/timeline"]["get"]
    assert {p["name"] for p in timeline["parameters"]} == {"device_id", "start", "end", "stream"}
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_openapi_document_is_installed_with_the_package() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "openapi.json" in pyproject["tool"]["setuptools"]["package-data"]["agent"]


def _templates(api: ApiSite) -> list[tuple[str, str, str | None]]:
    return [
        (route.method, route.resource.canonical, route.name)
        for route in api.app.router.routes()
        if route.resource is not None
    ]


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
