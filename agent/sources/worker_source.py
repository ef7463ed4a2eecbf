"""The part every thread-fed source shares: its hand-off queue, its workers, open, read, close.

A concrete source starts its worker threads in `open` (after `_start_workers`), waits for
their codec configurations with `_opened_within`, and inherits `read`, `read_batch` and
`close`.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from agent.sources.base import SourceUnavailable
from agent.sources.handoff import ThreadHandoff
from agent.sources.workers import SourceWorkers, crash_reporter
from shared.media import CodecConfig, MediaPacket

T = TypeVar("T")

ConfigsFuture = asyncio.Future[dict[str, CodecConfig]]
"""Where a worker reports the codec configurations of the streams it will deliver."""

HANDOFF_MIN_WAKE_INTERVAL_S = 1.0
"""How often at most a packet from a worker thread wakes the event loop (see `ThreadHandoff`).
Each wake-up costs about 0.1 ms of CPU, more than the loop's work on the packets it takes;
waking at most every 0.1 s cut a live 1080p camera's cost by a quarter, every 0.5 s halved
the event loop's share again, and every 1 s takes a quarter off the RTSP reader thread's
(docs/benchmarks.md). Packets reach the loop at most this much later: recording does not
mind (each packet keeps its own arrival time, and the wall-clock mapper does not mistake
lateness that does not last for drift), and motion triggers stay inside the gate's trigger
latency (2 s). While someone watches the camera live, `LIVE_WAKE_INTERVAL_S`
applies instead."""

LIVE_WAKE_INTERVAL_S = 0.02
"""The rationing while a live viewer watches: a packet reaches the loop within 20 ms."""


class WorkerFedSource(ABC):
    """Base of the camera sources whose packets come from worker threads."""

    def __init__(self, *, capacity: int, stop_timeout_s: float) -> None:
        self._capacity = capacity
        self._stop_timeout_s = stop_timeout_s
        self._handoff: ThreadHandoff[MediaPacket] | None = None
        self._workers: SourceWorkers | None = None
        self.live_watched = False

    def set_live_watched(self, watched: bool) -> None:
        self.live_watched = watched
        if self._handoff is not None:
            self._handoff.set_min_wake_interval(self._wake_interval_s())

    def _wake_interval_s(self) -> float:
        return LIVE_WAKE_INTERVAL_S if self.live_watched else HANDOFF_MIN_WAKE_INTERVAL_S

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
            loop, self._capacity, min_wake_interval_s=self._wake_interval_s()
        )
        workers = SourceWorkers(loop, name=name)
        self._handoff, self._workers = handoff, workers
        return loop, handoff, workers

    def _start_reporting_worker(
        self, role: str, run: Callable[[ConfigsFuture], None], *, label: str
    ) -> ConfigsFuture:
        """Start `run(configs)` in a worker thread of the open session; a crash fails the
        open (through `configs`) and ends the stream, both naming `label`."""
        if self._handoff is None or self._workers is None:
            raise RuntimeError(f"{self.describe()}: start the workers first")
        loop = asyncio.get_running_loop()
        configs: ConfigsFuture = loop.create_future()
        on_crash = crash_reporter(loop, configs, self._handoff.finish, label)
        self._workers.start(role, functools.partial(run, configs), on_crash=on_crash)
        return configs

    async def _merged_configs_within(
        self, pending: Sequence[ConfigsFuture], *, timeout_s: float, problem: str
    ) -> dict[str, CodecConfig]:
        """Every worker's configurations, merged, once all reported (see `_opened_within`)."""
        results = await self._opened_within(
            asyncio.gather(*pending), timeout_s=timeout_s, problem=problem
        )
        merged: dict[str, CodecConfig] = {}
        for result in results:
            merged.update(result)
        return merged

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

    async def read_batch(self) -> list[MediaPacket]:
        """Every packet queued (at least one); SourceUnavailable once the workers ended."""
        if self._handoff is None:
            raise SourceUnavailable(f"{self.describe()} is not open")
        return await self._handoff.get_batch()

    async def close(self) -> None:
        """Stop the worker threads and drop queued packets; idempotent."""
        handoff, workers = self._handoff, self._workers
        self._handoff = self._workers = None
        if handoff is not None:
            handoff.close()
        if workers is not None:
            await workers.stop(self._stop_timeout_s)
