"""The worker threads of one camera source: started together, stopped and joined together.

Blocking libraries (PyAV demuxing and encoding, a camera library) run here, never on the
event loop. Each thread reports its exit to the loop, so `stop` waits for the threads
without blocking the loop. Threads are daemons: one stuck in a blocking read past its
timeout must not keep the agent process alive at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from agent.sources.base import SourceUnavailable

_log = logging.getLogger(__name__)

T = TypeVar("T")


class SourceWorkers:
    """Named daemon threads sharing one stop flag."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, name: str) -> None:
        self._loop = loop
        self._name = name
        self.stop_requested = threading.Event()
        self._exits: list[asyncio.Future[None]] = []
        self._threads: list[threading.Thread] = []

    def start(
        self, role: str, target: Callable[[], object], on_crash: Callable[[str], None]
    ) -> None:
        """Run `target` in a new thread; an exception it lets escape goes to `on_crash`."""
        exited: asyncio.Future[None] = self._loop.create_future()

        def run() -> None:
            try:
                target()
            except Exception as exc:  # a bug in a worker must end the source, not vanish
                _log.exception("%s: %s worker failed", self._name, role)
                on_crash(f"{role} worker failed: {type(exc).__name__}")
            finally:
                # A closed loop means nobody is waiting for this thread any more.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(_resolve, exited)

        thread = threading.Thread(target=run, name=f"{self._name}-{role}", daemon=True)
        self._exits.append(exited)
        self._threads.append(thread)
        thread.start()

    async def stop(self, timeout_s: float) -> bool:
        """Ask every thread to stop and wait up to `timeout_s`; True if all have exited.

        The timeout is an I/O bound measured on the event loop's monotonic clock.
        """
        self.stop_requested.set()
        pending = [exit_ for exit_ in self._exits if not exit_.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout_s)
            if still:
                names = [t.name for t in self._threads if t.is_alive()]
                _log.warning(
                    "%s: threads still running after %.1f s: %s", self._name, timeout_s, names
                )
                return False
        for thread in self._threads:
            thread.join(timeout=1.0)  # the thread has reported its exit: returns at once
        return True

    @property
    def stopping(self) -> bool:
        return self.stop_requested.is_set()


def crash_reporter(
    loop: asyncio.AbstractEventLoop,
    opening: asyncio.Future[Any],
    finish: Callable[[str], None],
    label: str,
) -> Callable[[str], None]:
    """An `on_crash` for `start`: fails a pending `open` at once and ends the stream."""

    def report(reason: str) -> None:
        message = f"{label}: {reason}"
        reject_threadsafe(loop, opening, SourceUnavailable(message))
        finish(message)

    return report


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def resolve_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], value: T
) -> None:
    """Complete `future` from a worker thread, unless it was cancelled or already done."""

    def apply() -> None:
        if not future.done():
            future.set_result(value)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(apply)


def reject_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], error: BaseException
) -> None:
    """Fail `future` from a worker thread, unless it was cancelled or already done."""

    def apply() -> None:
        if not future.done():
            future.set_exception(error)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(apply)
