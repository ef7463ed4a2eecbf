"""Hundreds of sites that cannot be reached do not hold the central up: each one's address
accepts TCP connections and never answers (the worst kind of unreachable: nothing fails
fast), and login, the site and device lists still answer, every site shown as not online.
Hundreds that refuse at once (the busiest kind: every connector dials, fails and retries)
each get their offline notification, all due at the same moment, while the API answers.
The event-loop guard of tests/conftest.py fails the test if any of it blocks the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from central.catalog.records import NewDevice, NewSite, StreamInfo
from central.site_connector import SITE_OFFLINE
from shared.media import MediaKind
from tests.agent_api.api_site import PASSWORDS
from tests.central.api.central_calls import closed_port, wait_for_state
from tests.central.api.silent_sites import SilentSites, silent_sites
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central
from tests.link_io.link_site import running_link_site

SITE_COUNT = 300
HANG_GUARD_S = 10.0  # only against a hang; no answer's time is asserted
REACHABLE_WITHIN_S = 5.0  # a reachable site on loopback is online in well under a second


def _add_unreachable_sites(central: RunningCentral, addresses: list[str], port: int) -> list[str]:
    """Write the sites straight into the catalog, each with a camera (blocking: a thread)."""
    site_ids = []
    for index, address in enumerate(addresses):
        site, _ = central.node.catalog.add_site(
            NewSite(
                name=f"Far site {index}",
                dial="central",
                address=address,
                port=port,
                scheme="http",
                username="u",
            ),
            "pw",
            [
                NewDevice(
                    remote_device_id="cam",
                    kind="camera",
                    original_name=f"Camera {index}",
                    streams=(StreamInfo("lq", MediaKind.VIDEO),),
                )
            ],
        )
        site_ids.append(site.site_id)
    return site_ids


async def _start_connectors(central: RunningCentral, silent: SilentSites) -> list[str]:
    site_ids = await _added(central, silent.addresses, silent.port)
    # Let the dials reach the silent listeners before asking anything.
    async with asyncio.timeout(HANG_GUARD_S):
        await silent.until_accepted(50)
    return site_ids


async def _added(central: RunningCentral, addresses: list[str], port: int) -> list[str]:
    """The sites written into the catalog, their connectors started (each dials at once)."""
    site_ids = await asyncio.to_thread(_add_unreachable_sites, central, addresses, port)
    registry = central.node.registry
    assert registry is not None
    for site_id in site_ids:
        registry.site_added(site_id)
    return site_ids


async def test_hundreds_of_silent_sites_do_not_hold_the_api_up(tmp_path: Path) -> None:
    async with (
        silent_sites(SITE_COUNT) as silent,
        running_central(tmp_path) as central,
    ):
        site_ids = await _start_connectors(central, silent)
        async with asyncio.timeout(HANG_GUARD_S):
            token = await central.login("admin", ADMIN_PASSWORD)
            status, listed = await central.call("GET", "/sites", token=token)
            assert status == 200
            assert sorted(s["id"] for s in listed["sites"]) == sorted(site_ids)
            assert {s["status"]["state"] for s in listed["sites"]} <= {"connecting", "offline"}
            status, devices = await central.call("GET", "/devices", token=token)
            assert status == 200
            assert len(devices["devices"]) == SITE_COUNT
            assert not any(d["online"] for d in devices["devices"])
            status, one = await central.call("GET", f"/sites/{site_ids[-1]}", token=token)
            assert (status, one["status"]["state"] != "online") == (200, True)
            status, _ = await central.call("GET", "/notifications", token=token)
            assert status == 200


async def test_a_reachable_site_still_comes_online_while_hundreds_hang(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        silent_sites(SITE_COUNT) as silent,
        running_central(tmp_path / "central") as central,
    ):
        await _start_connectors(central, silent)
        # Written as POST /sites would write it, without the probe (which would hang too).
        reachable, _ = await asyncio.to_thread(
            central.node.catalog.add_site,
            NewSite(
                name="Reachable",
                dial="central",
                address="127.0.0.1",
                port=site.port,
                scheme="https",
                username="admin",
                fingerprint=site.identity.fingerprint,
            ),
            PASSWORDS["admin"],
        )
        assert central.node.registry is not None
        central.node.registry.site_added(reachable.site_id)
        await wait_for_state(central, reachable.site_id, "online", within_s=REACHABLE_WITHIN_S)


async def test_hundreds_of_refusing_sites_are_each_notified_while_the_api_answers(
    tmp_path: Path,
) -> None:
    addresses = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(SITE_COUNT)]
    async with running_central(tmp_path, links_toml="offline_notice_after_s = 1") as central:
        site_ids = await _added(central, addresses, closed_port())
        notified: set[str] = set()
        async with asyncio.timeout(HANG_GUARD_S):
            while notified != set(site_ids):
                status, page = await central.call("GET", "/devices?limit=6")
                assert (status, len(page["devices"])) == (200, 6)
                status, found = await central.call("GET", f"/notifications?limit={SITE_COUNT}")
                assert status == 200
                notices = found["notifications"]
                notified = {n["site_id"] for n in notices if n["kind"] == SITE_OFFLINE}
                await asyncio.sleep(0.1)
        status, listed = await central.call("GET", "/sites")
        assert status == 200
        assert {s["status"]["state"] for s in listed["sites"]} <= {"connecting", "offline"}
