"""Hygiene for source tests: no leftover worker threads, no blocking of the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

_THREAD_EXIT_GRACE_S = 3.0
_SLOW_CALLBACK_S = 0.3  # a loop step longer than this means blocking work on the loop


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail the test if threads it started are still alive shortly after it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + _THREAD_EXIT_GRACE_S
    while True:
        leftover = [
            t
            for t in threading.enumerate()
            # The loop's default executor ("asyncio_N") belongs to the loop, not the test.
            if t not in before and t.is_alive() and not t.name.startswith("asyncio_")
        ]
        if not leftover or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leftover, f"threads left running: {[t.name for t in leftover]}"


class _SlowStepLog(logging.Handler):
    """Collects asyncio debug mode's reports of loop steps that took too long."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing "):
            self.reports.append(message)


@pytest.fixture(autouse=True)
async def no_blocking_of_the_event_loop() -> AsyncIterator[None]:
    """Fail the test if any step of the event loop ran longer than `_SLOW_CALLBACK_S`."""
    loop = asyncio.get_running_loop()
    log = _SlowStepLog()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(log)
    loop.set_debug(True)
    loop.slow_callback_duration = _SLOW_CALLBACK_S
    try:
        yield
    finally:
        loop.set_debug(False)
        asyncio_logger.removeHandler(log)
    assert not log.reports, f"the event loop was blocked: {log.reports}"
