"""Real agents for the central's API tests: `siteline agent run` as a child process, with an
agent.toml that either dials the central in (enrolment) or waits to be dialled, and a pinned
client for its own API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp

from agent.config import AgentConfig, load_agent_config
from agent.site_tls import site_identity
from shared.clock import SystemClock
from tests.agent.site_config import small_camera, write_site_config
from tests.agent_process import AgentProcess
from tests.central.central_fixture import RunningCentral, pinned

LINK_READ_TIMEOUT_S = 3  # the agent's minimum
ADMIN_PASSWORD = "admin-pw"  # of write_site_config's admin account
WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def dial_in_toml(central: RunningCentral, token: str) -> str:
    """The [link] table of an agent that dials `central` in with enrolment `token`."""
    return (
        "[link]\n"
        f"read_timeout_s = {LINK_READ_TIMEOUT_S}\n"
        f'central_url = "{central.url("/sites/link")}"\n'
        f'enrolment_token = "{token}"\n'
        'account = "admin"\n'
        f'central_fingerprint = "{central.fingerprint}"\n'
    )


def write_agent_config(
    directory: Path,
    port: int,
    *,
    cameras: tuple[str, ...] = ("cam-1",),
    link_toml: str = "",
    advertise: bool = False,
) -> AgentConfig:
    """agent.toml in `directory`: small synthetic cameras, HTTPS API on loopback `port`,
    announced with zeroconf (on loopback) only if `advertise`."""
    api = f'[api]\nbind = "127.0.0.1"\nport = {port}\nadvertise = {str(advertise).lower()}\n'
    devices = "".join(small_camera(camera) for camera in cameras)
    path = write_site_config(directory, devices, extra_toml=api + link_toml)
    return load_agent_config(path)


def add_camera(config: AgentConfig, camera_id: str) -> AgentConfig:
    """The same agent.toml (same site id) with one more camera, read again."""
    text = config.file.read_text()
    config.file.write_text(text + small_camera(camera_id))
    return load_agent_config(config.file)


async def agent_fingerprint(config: AgentConfig) -> str:
    """The agent's certificate fingerprint (made now if needed, as `agent fingerprint` does)."""
    identity = await asyncio.to_thread(site_identity, config, SystemClock())
    return identity.fingerprint


async def wait_for_output(
    agent: AgentProcess, found: Callable[[str], bool], *, within_s: float = WAIT_S
) -> str:
    """The first line of the agent's output for which `found` holds (bounded poll)."""
    try:
        async with asyncio.timeout(within_s):
            while True:
                for line in list(agent.lines):
                    if found(line):
                        return line
                assert agent.process.returncode is None, agent.output
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"the agent never said so; its output:\n{agent.output}") from None


async def until_serving(agent: AgentProcess, port: int, fingerprint: str) -> None:
    """Wait until the agent's own API answers on `port` (its certificate pinned)."""
    connector = aiohttp.TCPConnector(ssl=pinned(fingerprint))
    async with aiohttp.ClientSession(connector=connector) as client:
        await agent.until_serving(client, f"https://127.0.0.1:{port}/api/v1/site")
