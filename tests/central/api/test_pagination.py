"""Paged site and device lists: `limit` and `after` walk the complete list in its own order,
page by page, with every filter; the default answer stays complete (and has no `next`); bad
paging parameters are refused naming the parameter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from central.catalog.records import NewDevice, NewSite, StreamInfo
from shared.media import MediaKind
from tests.central.api.central_calls import closed_port
from tests.central.central_fixture import RunningCentral, running_central

SITE_COUNT = 7
VIDEO = (StreamInfo("lq", MediaKind.VIDEO),)


def _write_sites(central: RunningCentral) -> list[str]:
    """Sites the central would dial at closed ports, with 1 to 3 cameras each, the first
    camera of every third site no longer present (blocking: run in a thread)."""
    catalog = central.node.catalog
    port = closed_port()
    site_ids = []
    for index in range(SITE_COUNT):
        cameras = [
            NewDevice(f"cam-{n}", "camera", f"Camera {n} of {index}", VIDEO)
            for n in range(1 + index % 3)
        ]
        site, _ = catalog.add_site(
            NewSite(
                name=f"Site {index}",
                dial="central",
                address=f"127.0.0.{index + 2}",
                port=port,
                scheme="http",
                username="u",
            ),
            "pw-of-the-site",
            cameras,
        )
        if index % 3 == 0:
            catalog.apply_hardware(site.site_id, cameras[1:])
        site_ids.append(site.site_id)
    return site_ids


async def _walk(central: RunningCentral, path: str, key: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a paged list, page after page; each page at most `limit` long."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    separator = "&" if "?" in path else "?"
    for _ in range(100):
        page_path = f"{path}{separator}limit={limit}" + (f"&after={after}" if after else "")
        status, body = await central.call("GET", page_path)
        assert status == 200, body
        assert len(body[key]) <= limit
        items += body[key]
        after = body["next"]
        if after is None:
            return items
        assert body[key], "a page before the last one is empty"
        assert after == body[key][-1]["id"]
    raise AssertionError(f"{path} did not end in 100 pages")


async def test_device_pages_walk_the_complete_list_in_its_order(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        site_ids = await asyncio.to_thread(_write_sites, central)
        for path in ("/devices", "/devices?present=true", f"/devices?site={site_ids[2]}"):
            status, complete = await central.call("GET", path)
            assert status == 200, complete
            assert "next" not in complete
            for limit in (1, 2, 5, 1000):
                assert await _walk(central, path, "devices", limit) == complete["devices"], (
                    path,
                    limit,
                )
        status, everything = await central.call("GET", "/devices")
        assert len(everything["devices"]) == sum(1 + i % 3 for i in range(SITE_COUNT))


async def test_site_pages_walk_the_complete_list_in_its_order(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        await asyncio.to_thread(_write_sites, central)
        status, complete = await central.call("GET", "/sites")
        assert status == 200, complete
        assert "next" not in complete
        assert len(complete["sites"]) == SITE_COUNT
        assert {s["device_count"] for s in complete["sites"]} == {0, 2, 3}
        for limit in (1, 3, 7, 8):
            assert await _walk(central, "/sites", "sites", limit) == complete["sites"], limit


async def test_a_page_limit_alone_is_the_first_page_and_after_alone_pages_by_100(
    tmp_path: Path,
) -> None:
    async with running_central(tmp_path) as central:
        site_ids = await asyncio.to_thread(_write_sites, central)
        status, first = await central.call("GET", "/sites?limit=2")
        assert status == 200, first
        assert [s["id"] for s in first["sites"]] == site_ids[:2]
        assert first["next"] == site_ids[1]
        status, rest = await central.call("GET", f"/sites?after={site_ids[1]}")
        assert status == 200, rest
        assert [s["id"] for s in rest["sites"]] == site_ids[2:]
        assert rest["next"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("after=", "after"),
        ("after=nothing-like-it", "after"),
        ("limit=2&limit=3", "limit"),
        ("page=2", "page"),
    ],
)
async def test_bad_paging_is_refused_naming_the_parameter(
    tmp_path: Path, query: str, field: str
) -> None:
    async with running_central(tmp_path) as central:
        site_ids = await asyncio.to_thread(_write_sites, central)
        for path in ("/sites", "/devices"):
            status, body = await central.call("GET", f"{path}?{query}")
            assert status == 400, (path, body)
            assert body["error"]["field"] == field, (path, body)
        # a device of another site is not a place in this site's list
        status, devices = await central.call("GET", f"/devices?site={site_ids[1]}")
        assert status == 200, devices
        status, body = await central.call(
            "GET", f"/devices?site={site_ids[2]}&limit=1&after={devices['devices'][0]['id']}"
        )
        assert status == 400, body
        assert body["error"]["field"] == "after"
