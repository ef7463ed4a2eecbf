"""Time for logic: a `Clock` is passed in, so tests can drive it by hand.

All instants are UTC nanoseconds since the Unix epoch (`*_ns`); durations for sleeping use
the monotonic clock so a wall-clock step (NTP) never stretches or skips a wait.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

NS_PER_S = 1_000_000_000


class Clock(Protocol):
    """Source of wall time and monotonic time, and a way to sleep on it."""

    def now_ns(self) -> int:
        """Wall-clock UTC time in nanoseconds since the epoch."""
        ...

    def monotonic_ns(self) -> int:
        """A clock that never goes backwards; only differences are meaningful."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...

    def sleep_in_thread(self, seconds: float) -> None:
        """Block the calling worker thread (never the event loop) for `seconds`."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def sleep_in_thread(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to; `sleep` advances it instead of waiting."""

    def __init__(self, start_ns: int = 1_700_000_000 * NS_PER_S) -> None:
        self._wall_ns = start_ns
        self._mono_ns = 0

    def now_ns(self) -> int:
        return self._wall_ns

    def monotonic_ns(self) -> int:
        return self._mono_ns

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds} s)")
        step_ns = round(seconds * NS_PER_S)
        self._wall_ns += step_ns
        self._mono_ns += step_ns

    def set_wall_ns(self, wall_ns: int) -> None:
        """Step the wall clock (as NTP would); the monotonic clock is unaffected."""
        self._wall_ns = wall_ns

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def sleep_in_thread(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
