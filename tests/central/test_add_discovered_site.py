"""The operator's flow from discovery to a working site: a real central finds a real running
agent (`siteline agent run`) on loopback, by an address scan started and followed through the
API, or by its zeroconf advertisement, and the site is added with exactly what discovery
reported (address, port, scheme, certificate fingerprint) plus the agent's account. The site
then comes online with its devices, and discovery marks it as known.

The fingerprint discovery reports is the agent's real one: the same certificate's fingerprint
with one digit changed is refused on add (the pin is checked, not just stored)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from zeroconf.asyncio import AsyncZeroconf

from agent.config import AgentConfig
from agent.package_version import package_version
from central.site_browser import browse_sites
from shared.clock import SystemClock
from shared.tls_pinning import format_fingerprint, normalize_fingerprint
from tests.agent_process import AgentProcess, running_agent
from tests.central.api.agent_sites import (
    ADMIN_PASSWORD,
    agent_fingerprint,
    free_port,
    until_serving,
    write_agent_config,
)
from tests.central.api.central_calls import (
    assert_refused,
    closed_port,
    site_devices,
    wait_for_state,
)
from tests.central.central_fixture import RunningCentral, running_central

CAMERAS = ("cam-1", "cam-2")
SCAN_WAIT_S = 30.0
ZEROCONF_WAIT_S = 20.0
BROWSE_S = 2
POLL_S = 0.1


@dataclass
class _Agent:
    config: AgentConfig
    process: AgentProcess
    port: int
    fingerprint: str  # AB:CD:..., as the central shows fingerprints


@asynccontextmanager
async def _running_agent(directory: Path, *, advertise: bool) -> AsyncIterator[_Agent]:
    """A real agent serving its HTTPS API on a free loopback port, once it answers."""
    port = free_port()
    config = write_agent_config(directory, port, cameras=CAMERAS, advertise=advertise)
    fingerprint = format_fingerprint(normalize_fingerprint(await agent_fingerprint(config)))
    async with running_agent(config.file) as process:
        await until_serving(process, port, fingerprint)
        yield _Agent(config, process, port, fingerprint)


def _other_fingerprint(fingerprint: str) -> str:
    """The same fingerprint with its last hex digit changed."""
    last = fingerprint[-1]
    return fingerprint[:-1] + ("0" if last != "0" else "1")


def _add_body(found: dict[str, Any], *, fingerprint: str | None = None) -> dict[str, object]:
    """`POST /sites` with what discovery found, under the names it found them, and the
    agent's admin."""
    return {
        "address": found["address"],
        "port": found["port"],
        "scheme": found["scheme"],
        "fingerprint": found["fingerprint"] if fingerprint is None else fingerprint,
        "username": "admin",
        "password": ADMIN_PASSWORD,
    }


async def _scan(central: RunningCentral, address_range: str, ports: list[int]) -> dict[str, Any]:
    """Start a scan through the API and follow it, as a client would, until it ends."""
    status, job = await central.call(
        "POST", "/discovery/scans", json={"range": address_range, "ports": ports}
    )
    assert status == 202, job
    try:
        async with asyncio.timeout(SCAN_WAIT_S):
            while job["state"] == "running":
                await asyncio.sleep(POLL_S)
                status, job = await central.call("GET", f"/discovery/scans/{job['id']}")
                assert status == 200, job
    except TimeoutError:
        raise AssertionError(f"the scan did not end in {SCAN_WAIT_S} s: {job}") from None
    assert job["state"] == "finished", job
    result: dict[str, Any] = job
    return result


async def _add_and_check_online(
    central: RunningCentral, agent: _Agent, found: dict[str, Any]
) -> dict[str, Any]:
    """Refuse the found site with a wrong pin, add it with the found one, and check it comes
    online with the agent's devices; the added site's body."""
    wrong = _add_body(found, fingerprint=_other_fingerprint(found["fingerprint"]))
    reply = await central.call("POST", "/sites", json=wrong)
    message = assert_refused(reply, 422, "site_unusable", "fingerprint")
    assert agent.fingerprint in message  # the certificate it shows, to compare at the site
    assert await central.call("GET", "/sites") == (200, {"sites": []})

    status, added = await central.call("POST", "/sites", json=_add_body(found))
    assert status == 201, added
    assert added["remote_site_id"] == agent.config.site.id
    assert (added["address"], added["port"], added["scheme"]) == ("127.0.0.1", agent.port, "https")
    assert added["fingerprint"] == agent.fingerprint
    assert added["device_count"] == len(agent.config.device_ids())

    online = await wait_for_state(central, added["id"], "online")
    assert online["problem"] is None, online
    devices = await site_devices(central, added["id"])
    assert sorted(d["remote_device_id"] for d in devices) == sorted(agent.config.device_ids())
    status, every = await central.call("GET", "/devices")
    assert status == 200, every
    assert sorted(d["id"] for d in every["devices"]) == sorted(d["id"] for d in devices)
    assert {d["site_id"] for d in every["devices"]} == {added["id"]}
    site: dict[str, Any] = added
    return site


async def test_a_site_found_by_an_address_scan_is_added_with_what_the_scan_found(
    tmp_path: Path,
) -> None:
    async with (
        _running_agent(tmp_path / "site", advertise=False) as agent,
        running_central(tmp_path / "central") as central,
    ):
        ports = [closed_port(), agent.port]
        job = await _scan(central, "127.0.0.1-127.0.0.3", ports)
        assert (job["done"], job["total"]) == (3, 3)
        [found] = job["found"]  # one agent, on one address and one of the ports
        assert found == {
            "address": "127.0.0.1",
            "addresses": ["127.0.0.1"],
            "port": agent.port,
            "scheme": "https",
            "fingerprint": agent.fingerprint,
            "source": "scan",
            "remote_site_id": None,
            "name": None,
            "version": None,
            "known_site_id": None,
        }

        added = await _add_and_check_online(central, agent, found)

        again = await _scan(central, "127.0.0.1", [agent.port])
        [known] = again["found"]
        assert known["known_site_id"] == added["id"]


async def _browse_until_found(central: RunningCentral, site_id: str) -> dict[str, Any] | None:
    """The agent's entry in `GET /discovery/zeroconf`, browsing again until it shows up
    (its announcement starts after its API); None if it never does."""
    try:
        async with asyncio.timeout(ZEROCONF_WAIT_S):
            while True:
                status, body = await central.call("GET", f"/discovery/zeroconf?wait_s={BROWSE_S}")
                assert status == 200, body
                ours = [f for f in body["sites"] if f["remote_site_id"] == site_id]
                if ours:
                    [found] = ours
                    entry: dict[str, Any] = found
                    return entry
    except TimeoutError:
        return None


async def _seen_on_loopback(site_id: str) -> bool:
    """Whether a browser of its own, on loopback only, hears the agent's announcement."""
    listener = AsyncZeroconf(interfaces=["127.0.0.1"])
    try:
        found = await browse_sites(listener, float(BROWSE_S * 2), SystemClock())
    finally:
        await listener.async_close()
    return any(site.site_id == site_id for site in found)


async def test_a_site_found_by_zeroconf_is_added_with_what_its_advertisement_said(
    tmp_path: Path,
) -> None:
    async with (
        _running_agent(tmp_path / "site", advertise=True) as agent,
        running_central(tmp_path / "central") as central,
    ):
        found = await _browse_until_found(central, agent.config.site.id)
        if found is None:
            _skip_if_the_agent_could_not_advertise(agent)
            if not await _seen_on_loopback(agent.config.site.id):
                pytest.skip("multicast on loopback does not carry zeroconf on this machine")
            raise AssertionError("the agent is heard on loopback, but not by the central's API")
        assert found == {
            "address": "127.0.0.1",
            "addresses": ["127.0.0.1"],
            "port": agent.port,
            "scheme": "https",
            "fingerprint": agent.fingerprint,
            "source": "zeroconf",
            "remote_site_id": agent.config.site.id,
            "name": agent.config.site.name,
            "version": package_version(),
            "known_site_id": None,
        }

        added = await _add_and_check_online(central, agent, found)
        assert added["name"] == found["name"]

        again = await _browse_until_found(central, agent.config.site.id)
        assert again is not None
        assert again["known_site_id"] == added["id"]


def _skip_if_the_agent_could_not_advertise(agent: _Agent) -> None:
    """Skip, quoting the agent, when the agent itself could not advertise."""
    for line in agent.process.lines:
        if "zeroconf" in line and ("cannot start" in line or "failed" in line):
            pytest.skip(f"the agent could not advertise here: {line.strip()}")
