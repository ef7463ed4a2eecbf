"""A client of the central's playback WebSocket, for tests: every text message, and the
media under each init segment (one run per init: at the start and at each LQ/HQ switch)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from shared.api_input import format_instant
from tests.central.central_fixture import RunningCentral


async def play(
    central: RunningCentral, device_id: str, start_ns: int, end_ns: int, *, wait_s: float
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Play [start_ns, end_ns) of the device to the end, bounded by `wait_s`."""
    texts: list[dict[str, Any]] = []
    runs: list[bytes] = []
    path = f"/devices/{device_id}/playback?start={format_instant(start_ns)}"
    path += f"&end={format_instant(end_ns)}"
    async with central.client.ws_connect(
        central.url(path), headers={"Authorization": f"Bearer {central.token}"}
    ) as socket:
        async with asyncio.timeout(wait_s):
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    texts.append(json.loads(message.data))
                    if texts[-1]["type"] == "init":
                        runs.append(b"")
                elif message.type == aiohttp.WSMsgType.BINARY:
                    runs[-1] += message.data
    return texts, runs
