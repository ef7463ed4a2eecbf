"""The part every thread-fed source shares: its hand-off queue, its workers, open, read, close.

A concrete source starts its worker threads in `open` (after `_start_workers`), waits for
their codec configurations with `_opened_within`, and inherits `read` and `close`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import TypeVar

from agent.sources.base import SourceUnavailable
from agent.sources.handoff import ThreadHandoff
from agent.sources.workers import SourceWorkers
from shared.media import MediaPacket

T = TypeVar("T")

HANDOFF_MIN_WAKE_INTERVAL_S = 0.1
"""How often at most a packet from a worker thread wakes the event loop (see `ThreadHandoff`).
Each wake-up costs about as much CPU as demuxing the packet; rationing them cut a live 1080p
camera's cost by a quarter (docs/benchmarks.md). Live video waits at most this much longer."""


class WorkerFedSource(ABC):
    """Base of the camera sources whose packets come from worker threads."""

    def __init__(self, *, capacity: int, stop_timeout_s: float) -> None:
        self._capacity = capacity
        self._stop_timeout_s = stop_timeout_s
        self._handoff: ThreadHandoff[MediaPacket] | None = None
        self._workers: SourceWorkers | None = None

    @abstractmethod
    def describe(self) -> str:
        """A human-readable description safe for logs (credentials removed)."""

    def _start_workers(
        self, name: str
    ) -> tuple[asyncio.AbstractEventLoop, ThreadHandoff[MediaPacket], SourceWorkers]:
        """A fresh hand-off queue and worker group for one open session."""
        if self._workers is not None:
            raise RuntimeError(f"{self.describe()} is already open")
        loop = asyncio.get_running_loop()
        handoff = ThreadHandoff[MediaPacket](
            loop, self._capacity, min_wake_interval_s=HANDOFF_MIN_WAKE_INTERVAL_S
        )
        workers = SourceWorkers(loop, name=name)
        self._handoff, self._workers = handoff, workers
        return loop, handoff, workers

    async def _opened_within(self, opening: Awaitable[T], *, timeout_s: float, problem: str) -> T:
        """Wait for the workers to report their start; on failure or timeout, close first."""
        try:
            async with asyncio.timeout(timeout_s):
                return await opening
        except TimeoutError:
            await self.close()
            raise SourceUnavailable(f"{self.describe()}: {problem}") from None
        except BaseException:
            await self.close()
            raise

    async def read(self) -> MediaPacket:
        """The next packet of any stream; SourceUnavailable once the workers ended."""
        if self._handoff is None:
            raise SourceUnavailable(f"{self.describe()} is not open")
        return await self._handoff.get()

    async def close(self) -> None:
        """Stop the worker threads and drop queued packets; idempotent."""
        handoff, workers = self._handoff, self._workers
        self._handoff = self._workers = None
        if handoff is not None:
            handoff.close()
        if workers is not None:
            await workers.stop(self._stop_timeout_s)
