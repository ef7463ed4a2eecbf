"""A byte counter read over time, and the bytes it shows in any span.

`CounterSampler` reads a cumulative counter (the benchmarks: `ShapedLink.received_bytes`,
this end's veth receive counter, what the site sent with its headers) every `every_s`, with
the monotonic time of each reading, in a task, until stopped. `CounterSamples` answers from
the readings: the count at a sample, and between two samples by linear interpolation, which
is exact for a steady flow such as a paced transfer; so a window need not start or end at a
sample.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CounterSamples:
    """Readings in time order: `times_ns` monotonic, `counts` the counter then."""

    times_ns: list[int]
    counts: list[int]

    def at(self, t_ns: int) -> float:
        """The count at `t_ns`, interpolated between the samples around it (the first or
        last sample's count outside them)."""
        index = bisect.bisect_right(self.times_ns, t_ns)
        if index == 0:
            return float(self.counts[0])
        if index == len(self.times_ns):
            return float(self.counts[-1])
        t_before, t_after = self.times_ns[index - 1], self.times_ns[index]
        c_before, c_after = self.counts[index - 1], self.counts[index]
        return c_before + (c_after - c_before) * (t_ns - t_before) / (t_after - t_before)

    def last_at_or_before(self, t_ns: int) -> tuple[int, int]:
        """(time, count) of the last sample at or before `t_ns`."""
        index = bisect.bisect_right(self.times_ns, t_ns) - 1
        if index < 0:
            raise ValueError(f"no sample at or before {t_ns} (the first is {self.times_ns[0]})")
        return self.times_ns[index], self.counts[index]

    def first_at_or_after(self, t_ns: int) -> tuple[int, int]:
        """(time, count) of the first sample at or after `t_ns`."""
        index = bisect.bisect_left(self.times_ns, t_ns)
        if index == len(self.times_ns):
            raise ValueError(f"no sample at or after {t_ns} (the last is {self.times_ns[-1]})")
        return self.times_ns[index], self.counts[index]

    def between(self, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
        """(time, count) of every sample in [start_ns, end_ns]."""
        low = bisect.bisect_left(self.times_ns, start_ns)
        high = bisect.bisect_right(self.times_ns, end_ns)
        return list(zip(self.times_ns[low:high], self.counts[low:high], strict=True))


class CounterSampler:
    """Reads `read` every `every_s` until `stop`; see the module docstring."""

    def __init__(self, read: Callable[[], int], every_s: float) -> None:
        self._read = read
        self._every_s = every_s
        self._times_ns: list[int] = []
        self._counts: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="counter sampler")

    async def stop(self) -> CounterSamples:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._take()
        return CounterSamples(list(self._times_ns), list(self._counts))

    async def _run(self) -> None:
        while True:
            self._take()
            await asyncio.sleep(self._every_s)

    def _take(self) -> None:
        # The monotonic time, as the site's sent log (bench/sent_log.py) uses.
        self._times_ns.append(time.monotonic_ns())
        self._counts.append(self._read())
