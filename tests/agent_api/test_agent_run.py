"""`siteline agent run` end to end: the real command serves the API and the link over HTTPS
with the certificate `siteline agent fingerprint` printed, advertises itself, and stops
cleanly."""

from __future__ import annotations

import asyncio
import io
import socket
import sys
from pathlib import Path

import aiohttp
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from agent.discovery import SERVICE_TYPE
from shared.chunk_records import read_chunk_records
from shared.clock import SystemClock
from shared.link_io.dialing import connect_to_site
from shared.transfer_acceptance import AcceptedChunk, TransferCursor, TransferExpectation
from tests.agent_api.api_site import api_config
from tests.agent_process import REPO, START_TIMEOUT_S, running_agent


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
        running_agent(config.file) as agent,
        aiohttp.ClientSession(connector=connector) as client,
        AsyncZeroconf(interfaces=["127.0.0.1"]) as browser,
    ):
        await agent.until_serving(client, f"{base}/site")
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
        # The same recordings over the REST API, as signed chunk records.
        params = {"stream": "lq", "start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}
        async with client.get(
            f"{base}/devices/cam-a/chunks", headers=headers, params=params
        ) as reply:
            assert reply.status == 200, await reply.text()
            records = list(read_chunk_records(io.BytesIO(await reply.read())))
        assert [r.header.seq for r in records][: len(committed)] == committed
        # Zeroconf on loopback carries the same fingerprint.
        info = AsyncServiceInfo(SERVICE_TYPE, f"siteline-{config.site.id}.{SERVICE_TYPE}")
        assert await info.async_request(browser.zeroconf, round(START_TIMEOUT_S * 1000))
        assert info.decoded_properties["fingerprint"] == fingerprint
        assert info.decoded_properties["port"] == str(port)

        code = await agent.stop()
    output = agent.output
    assert code == 0, output
    assert f"site API:    https://127.0.0.1:{port}/api/v1" in output
    assert f"SHA-256 {fingerprint}" in output
    assert "zeroconf:    advertised as _siteline._tcp" in output
    assert output.splitlines()[-1] == "siteline: stopped cleanly"
