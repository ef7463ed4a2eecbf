"""A manual clock whose sleeps last until the test moves it past their end: for code that
sleeps in a loop (a plain `ManualClock` would let such a loop run through days at once)."""

from __future__ import annotations

import asyncio

from shared.clock import NS_PER_S, ManualClock


class HeldClock(ManualClock):
    """A manual clock whose sleeps last until the test moves the clock past their end."""

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def sleepers(self) -> int:
        return sum(1 for _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        until_ns = self.monotonic_ns() + max(0, round(seconds * NS_PER_S))
        if until_ns <= self.monotonic_ns():
            await asyncio.sleep(0)
            return
        entry = (until_ns, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        for until_ns, future in self._sleepers:
            if until_ns <= self.monotonic_ns() and not future.done():
                future.set_result(None)
