"""A site the central dials, as the real `siteline agent run`, killed and started again: the
central says it is offline (and raises a notification after the notice time), finds it again
by itself without a restart (and clears the notification), and on the new link reads the
device list again, so a camera added at the site while it was down shows up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.agent_process import running_agent
from tests.central.api.agent_sites import (
    ADMIN_PASSWORD,
    add_camera,
    agent_fingerprint,
    free_port,
    until_serving,
    write_agent_config,
)
from tests.central.api.central_calls import site_devices, wait_for_state
from tests.central.central_fixture import RunningCentral, running_central

LINKS_TOML = "read_timeout_s = 3\noffline_notice_after_s = 1\nretry_max_s = 2"
WAIT_S = 30.0
NO_CHANGE: dict[str, list[str]] = {"added": [], "removed": [], "returned": [], "changed": []}


async def _notifications(central: RunningCentral, *, open_only: bool) -> list[dict[str, Any]]:
    status, body = await central.call(
        "GET", "/notifications", params={"open": "true" if open_only else "false"}
    )
    assert status == 200, body
    found: list[dict[str, Any]] = body["notifications"]
    return found


async def _wait_for_notification(
    central: RunningCentral, site_id: str, *, open_only: bool, is_open: bool
) -> dict[str, Any]:
    """The site's `site_offline` notification once it is open (or cleared); bounded poll."""
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                seen = await _notifications(central, open_only=open_only)
                for notification in seen:
                    if (notification["kind"], notification["site_id"]) == (
                        "site_offline",
                        site_id,
                    ) and notification["open"] is is_open:
                        return notification
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"no site_offline notification open={is_open}: {seen}") from None


async def _add_dialled_site(central: RunningCentral, port: int, fingerprint: str) -> str:
    status, body = await central.call(
        "POST",
        "/sites",
        json={
            "name": "Depot",
            "address": "127.0.0.1",
            "port": port,
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "fingerprint": fingerprint,
        },
    )
    assert status == 201, body
    site_id: str = body["id"]
    await wait_for_state(central, site_id, "online", within_s=WAIT_S)
    return site_id


async def test_a_killed_site_goes_offline_with_a_notice_and_comes_back_by_itself(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = write_agent_config(tmp_path / "site", port)
    fingerprint = await agent_fingerprint(config)
    async with running_central(tmp_path / "central", links_toml=LINKS_TOML) as central:
        async with running_agent(config.file) as agent:
            await until_serving(agent, port, fingerprint)
            site_id = await _add_dialled_site(central, port, fingerprint)
            assert await _notifications(central, open_only=True) == []
        # Killed: offline, and after the notice time a notification says so.
        status = await wait_for_state(central, site_id, "offline", within_s=WAIT_S)
        assert status["problem"], status
        raised = await _wait_for_notification(central, site_id, open_only=True, is_open=True)
        assert raised["device_id"] is None
        assert raised["message"].startswith("site offline")
        [listed] = [s for s in (await central.call("GET", "/sites"))[1]["sites"]]
        assert listed["status"]["state"] in ("offline", "connecting")
        devices = await site_devices(central, site_id)
        assert devices, "the devices stay known while the site is away"
        assert not any(d["online"] for d in devices)

        # Started again on the same port and folder: the central finds it by itself.
        async with running_agent(config.file):
            await wait_for_state(central, site_id, "online", within_s=WAIT_S)
            assert all(d["online"] for d in await site_devices(central, site_id))
            cleared = await _wait_for_notification(central, site_id, open_only=False, is_open=False)
            assert cleared["id"] == raised["id"]
            assert cleared["cleared"] is not None
            assert await _notifications(central, open_only=True) == []


async def test_a_camera_added_while_the_site_was_down_appears_on_reconnection(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = write_agent_config(tmp_path / "site", port)
    fingerprint = await agent_fingerprint(config)
    async with running_central(tmp_path / "central", links_toml=LINKS_TOML) as central:
        async with running_agent(config.file) as agent:
            await until_serving(agent, port, fingerprint)
            site_id = await _add_dialled_site(central, port, fingerprint)
            before = await site_devices(central, site_id)
            assert "cam-2" not in {d["remote_device_id"] for d in before}
            assert await agent.stop() == 0
        await wait_for_state(central, site_id, "offline", within_s=WAIT_S)
        config = add_camera(config, "cam-2")
        async with running_agent(config.file):
            await wait_for_state(central, site_id, "online", within_s=WAIT_S)
            # The device list is read again on every new link: cam-2 is there without
            # anyone asking.
            try:
                async with asyncio.timeout(WAIT_S):
                    while True:
                        devices = await site_devices(central, site_id)
                        if "cam-2" in {d["remote_device_id"] for d in devices}:
                            break
                        await asyncio.sleep(0.1)
            except TimeoutError:
                raise AssertionError(f"cam-2 never listed: {devices}") from None
            assert sorted(d["remote_device_id"] for d in devices) == sorted(config.device_ids())
            known = {d["id"]: d for d in before}
            for device in devices:
                if device["id"] in known:
                    assert device["name"] == known[device["id"]]["name"]
            [camera] = [d for d in devices if d["remote_device_id"] == "cam-2"]
            assert (camera["kind"], camera["online"]) == ("camera", True)
            # Update hardware reports what the reconnection added, once; then nothing.
            status, diff = await central.call("POST", f"/sites/{site_id}/hardware")
            assert status == 200, diff
            new_ids = sorted(d["id"] for d in devices if d["id"] not in known)
            assert {**diff, "added": sorted(diff["added"])} == {**NO_CHANGE, "added": new_ids}
            assert await central.call("POST", f"/sites/{site_id}/hardware") == (200, NO_CHANGE)
