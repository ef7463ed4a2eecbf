"""A site behind NAT dials the central in: a token made at the central, written into the
agent's configuration, and the real `siteline agent run` enrols with it. The token binds the
site: after a restart it is the same site; an unknown token adds nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.agent_process import running_agent
from tests.central.api.agent_sites import (
    dial_in_toml,
    free_port,
    wait_for_output,
    write_agent_config,
)
from tests.central.api.central_calls import site_devices, wait_for_state
from tests.central.central_fixture import RunningCentral, running_central

WAIT_S = 30.0


async def _only_site(central: RunningCentral, *, within_s: float = WAIT_S) -> dict[str, Any]:
    """The one site of the catalog, once there is one (bounded poll)."""
    async with asyncio.timeout(within_s):
        while True:
            status, body = await central.call("GET", "/sites")
            assert status == 200, body
            if body["sites"]:
                [site] = body["sites"]
                found: dict[str, Any] = site
                return found
            await asyncio.sleep(0.1)


async def test_a_site_enrols_by_dialling_in_and_stays_the_same_site(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central") as central:
        status, issued = await central.call("POST", "/enrolments", json={"label": "harbour"})
        assert status == 201, issued
        assert issued["link_path"] == "/api/v1/sites/link"
        config = write_agent_config(
            tmp_path / "site",
            free_port(),
            cameras=("cam-1", "cam-2"),
            link_toml=dial_in_toml(central, issued["token"]),
        )
        async with running_agent(config.file) as agent:
            site = await _only_site(central)
            site_id = site["id"]
            assert (site["dial"], site["remote_site_id"]) == ("site", config.site.id)
            assert (site["address"], site["port"], site["username"]) == (None, None, None)
            await wait_for_state(central, site_id, "online")
            devices = await site_devices(central, site_id)
            assert sorted(d["remote_device_id"] for d in devices) == sorted(config.device_ids())
            assert {d["kind"] for d in devices} == {"camera", "metadata"}
            await wait_for_output(agent, lambda line: "open" in line and "link to" in line)
        # Killed (running_agent kills what still runs): the site is offline, and waited for.
        offline = await wait_for_state(central, site_id, "offline")
        assert offline["retry_at"] is None  # the central cannot dial a site that dials in
        _, tokens = await central.call("GET", "/enrolments")
        [token] = tokens["enrolments"]
        assert (token["label"], token["used_by_site_id"]) == ("harbour", site_id)

        async with running_agent(config.file):
            await wait_for_state(central, site_id, "online")
            _, listed = await central.call("GET", "/sites")
            assert [s["id"] for s in listed["sites"]] == [site_id]
            assert len(await site_devices(central, site_id)) == len(devices)


async def test_an_unknown_token_is_refused_and_adds_nothing(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central") as central:
        config = write_agent_config(
            tmp_path / "site",
            free_port(),
            link_toml=dial_in_toml(central, "not-a-token-the-central-made"),
        )
        async with running_agent(config.file) as agent:
            line = await wait_for_output(agent, lambda text: "refused the link" in text)
            assert "HTTP 401" in line
            # The agent records on, and tries again later.
            assert agent.process.returncode is None
        assert await central.call("GET", "/sites") == (200, {"sites": []})
        assert await central.call("GET", "/devices") == (200, {"devices": []})
        assert await central.call("GET", "/enrolments") == (200, {"enrolments": []})


async def test_a_copied_token_cannot_push_the_enrolled_site_off(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central") as central:
        _, issued = await central.call("POST", "/enrolments", json={})
        link_toml = dial_in_toml(central, issued["token"])
        enrolled = write_agent_config(tmp_path / "enrolled", free_port(), link_toml=link_toml)
        other = write_agent_config(tmp_path / "other", free_port(), link_toml=link_toml)
        async with running_agent(enrolled.file) as enrolled_agent:
            site_id = (await _only_site(central))["id"]
            online = await wait_for_state(central, site_id, "online")
            async with running_agent(other.file) as other_agent:
                # Its link is refused, and refused again when it tries a second time.
                refusals = 0
                async with asyncio.timeout(WAIT_S):
                    while refusals < 2:
                        refusals = sum("link ended" in line for line in other_agent.lines)
                        await asyncio.sleep(0.1)
                assert any(enrolled.site.id in line for line in other_agent.lines)
            # The enrolled site kept its link all along, and the other site was not added.
            assert not any("dialled in again" in line for line in enrolled_agent.lines)
            assert (await wait_for_state(central, site_id, "online"))["since"] == online["since"]
            _, listed = await central.call("GET", "/sites")
            assert [s["remote_site_id"] for s in listed["sites"]] == [enrolled.site.id]
