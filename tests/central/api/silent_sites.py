"""Loopback listeners that take TCP connections and never answer: the worst kind of
unreachable site, where nothing fails fast."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.central.api.agent_sites import free_port


class SilentSites:
    """TCP listeners on many loopback addresses (one port) that accept and never answer."""

    def __init__(self, count: int) -> None:
        self.port = free_port()
        self.addresses = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]
        self.accepted = 0
        self._accepting = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []
        self._closing = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, self.addresses, self.port)

    async def close(self) -> None:
        self._closing.set()
        for writer in self._held:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def until_accepted(self, count: int) -> None:
        async with self._accepting:
            await self._accepting.wait_for(lambda: self.accepted >= count)

    async def _hold(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        async with self._accepting:
            self.accepted += 1
            self._accepting.notify_all()
        await self._closing.wait()


@contextlib.asynccontextmanager
async def silent_sites(count: int) -> AsyncIterator[SilentSites]:
    """`count` silent listeners on one port, closed (every connection cut) at the end."""
    sites = SilentSites(count)
    await sites.start()
    try:
        yield sites
    finally:
        await sites.close()
