"""`siteline agent run` end to end: the real command serves the API and the link over HTTPS
with the certificate `siteline agent fingerprint` printed, advertises itself, and stops
cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from agent.discovery import SERVICE_TYPE
from shared.clock import SystemClock
from shared.link_io.dialing import connect_to_site
from shared.transfer_acceptance import AcceptedChunk, TransferCursor, TransferExpectation
from tests.agent_api.api_site import api_config

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _siteline(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.command_line",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def _agent(config_file: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """The running agent and the lines of its output so far; killed if the test fails."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.command_line",
        "agent",
        "run",
        "--config",
        str(config_file),
        "--status-interval",
        "1",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []

    async def collect() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            lines.append(line.decode().rstrip("\n"))

    collecting = asyncio.create_task(collect())
    try:
        yield process, lines
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await collecting


async def _until_serving(client: aiohttp.ClientSession, url: str, lines: list[str]) -> None:
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            try:
                async with client.get(url) as reply:
                    assert reply.status == 401
                    return
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.2)
            assert not any("Traceback" in line for line in lines), "\n".join(lines)


async def test_the_agent_serves_its_api_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = api_config(tmp_path, api_toml=f'bind = "127.0.0.1"\nport = {port}\nadvertise = true')
    code, fingerprint, err = await _siteline("agent", "fingerprint", "--config", str(config.file))
    assert code == 0, err
    fingerprint = fingerprint.strip()
    base = f"https://127.0.0.1:{port}/api/v1"
    pin = aiohttp.Fingerprint(bytes.fromhex(fingerprint.replace(":", "")))
    connector = aiohttp.TCPConnector(ssl=pin)
    async with (
        _agent(config.file) as (process, lines),
        aiohttp.ClientSession(connector=connector) as client,
        AsyncZeroconf(interfaces=["127.0.0.1"]) as browser,
    ):
        await _until_serving(client, f"{base}/site", lines)
        async with client.post(
            f"{base}/auth/login", json={"username": "admin", "password": "admin-pw"}
        ) as reply:
            assert reply.status == 200
            token = (await reply.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with client.get(f"{base}/devices", headers=headers) as reply:
            assert reply.status == 200
            devices = (await reply.json())["devices"]
        assert [d["id"] for d in devices] == config.device_ids()
        async with client.get(f"{base}/site", headers=headers) as reply:
            site = await reply.json()
        assert (site["id"], site["fingerprint"]) == (config.site.id, fingerprint)
        # The synthetic cameras come up, and the status says so.
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                async with client.get(f"{base}/status", headers=headers) as reply:
                    status = await reply.json()
                if status["cameras_up"] == 2:
                    break
                await asyncio.sleep(0.2)
        # The link: a transfer of what the command recorded, verified chunk by chunk.
        async with connect_to_site(
            client,
            f"https://127.0.0.1:{port}",
            username="admin",
            password="admin-pw",
            fingerprint=fingerprint,
            clock=SystemClock(),
            software="test-central",
        ) as link:
            public_key = bytes.fromhex((await link.site_info())["public_key"])
            committed: list[int] = []

            async def commit(accepted: AcceptedChunk) -> None:
                committed.append(accepted.chunk.header.seq)

            expectation = TransferExpectation(config.site.id, "cam-a", "lq", public_key)
            async with asyncio.timeout(START_TIMEOUT_S):
                cursor = TransferCursor()
                while len(committed) < 2:
                    outcome = await link.transfer(expectation, cursor, 0, 1 << 62, commit=commit)
                    cursor = outcome.cursor
                    await asyncio.sleep(0.5)
            assert committed == sorted(set(committed))
        # Zeroconf on loopback carries the same fingerprint.
        info = AsyncServiceInfo(SERVICE_TYPE, f"siteline-{config.site.id}.{SERVICE_TYPE}")
        assert await info.async_request(browser.zeroconf, round(START_TIMEOUT_S * 1000))
        assert info.decoded_properties["fingerprint"] == fingerprint
        assert info.decoded_properties["port"] == str(port)

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT_S):
            code = await process.wait()
    output = "\n".join(lines)
    assert code == 0, output
    assert f"site API:    https://127.0.0.1:{port}/api/v1" in output
    assert f"SHA-256 {fingerprint}" in output
    assert "zeroconf:    advertised as _siteline._tcp" in output
    assert output.splitlines()[-1] == "siteline: stopped cleanly"
