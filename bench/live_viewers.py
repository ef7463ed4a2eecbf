"""Viewers of live video over WebSockets, for the benchmarks: each counts the packets it gets
and how late each one is.

Every replayed packet carries its wall-clock stamp (bench/wall_stamp.py), whatever the
framing (a fragmented MP4 media segment from the central, raw packet bytes from the plain
forwarder), so a viewer only looks for stamps in the binary messages it receives: each
stamp is one packet delivered, and arrival minus stamp is its latency (sender and viewers
run on the same machine, on the same wall clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from wall_stamp import stamps_in


@dataclass
class ViewerCounts:
    arrivals: list[tuple[int, int]] = field(default_factory=list)  # (stamp, arrival) ns
    texts: list[str] = field(default_factory=list)

    @property
    def packets(self) -> int:
        return len(self.arrivals)


class LiveViewer:
    """One WebSocket, read until closed; see the module docstring."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.url = url
        self._headers = dict(headers)
        self.counts = ViewerCounts()
        self.first_packet = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, session: aiohttp.ClientSession) -> None:
        self._task = asyncio.create_task(self._read(session), name=f"viewer {self.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def failed(self) -> BaseException | None:
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def _read(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(
            self.url, headers=self._headers, max_msg_size=0, heartbeat=None
        ) as socket:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.BINARY:
                    arrived_ns = time.time_ns()
                    stamps = stamps_in(message.data)
                    if stamps:
                        self.counts.arrivals += [(s, arrived_ns) for s in stamps]
                        self.first_packet.set()
                elif message.type == aiohttp.WSMsgType.TEXT:
                    self.counts.texts.append(message.data)
                else:
                    return


class ViewerGroup:
    """Many viewers on one client session (no connection limit)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self.viewers: list[LiveViewer] = []

    async def add(self, urls: list[str], headers: Mapping[str, str], *, timeout_s: float) -> None:
        """Open a viewer for each URL; return once each has had a packet."""
        added = [LiveViewer(url, headers) for url in urls]
        for viewer in added:
            viewer.start(self._session)
            await asyncio.sleep(0.005)  # do not open hundreds of TLS connections at once
        self.viewers += added
        try:
            async with asyncio.timeout(timeout_s):
                for viewer in added:
                    waiting = asyncio.ensure_future(viewer.first_packet.wait())
                    while not waiting.done():
                        await asyncio.wait({waiting}, timeout=1.0)
                        if viewer.failed is not None:
                            waiting.cancel()
                            raise RuntimeError(f"viewer {viewer.url}: {viewer.failed}")
        except TimeoutError:
            silent = [v.url for v in added if not v.first_packet.is_set()]
            raise RuntimeError(
                f"{len(silent)} viewers had no packet in {timeout_s:.0f} s, e.g. {silent[:3]}"
            ) from None

    def packets(self) -> int:
        return sum(v.counts.packets for v in self.viewers)

    def latencies_since(self, marks: list[int]) -> list[float]:
        """Latencies in ms of the packets after `marks` (one index per viewer, `marks()`)."""
        found: list[float] = []
        for viewer, mark in zip(self.viewers, marks, strict=False):
            found += [(arrival - stamp) / 1e6 for stamp, arrival in viewer.counts.arrivals[mark:]]
        return found

    def marks(self) -> list[int]:
        return [v.counts.packets for v in self.viewers]

    async def close(self) -> None:
        await asyncio.gather(*(v.stop() for v in self.viewers))
        self.viewers = []
