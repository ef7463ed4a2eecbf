"""A file-like view of a pipe that takes what the pipe holds in bursts, for PyAV to demux.

Reading a live stream as it arrives wakes the reader for every write of the producer; each
wake-up runs the demuxer's Python glue with cold caches. Reading every `interval_s()`
whatever the pipe holds (up to its capacity) turns that into a few warm bursts a second.

Rules of `read(size)`:
- what is left of the last burst is returned first;
- otherwise it waits until `interval_s()` has passed since the last burst (at once while
  `eager`, and at once when the last burst filled half the pipe: the producer must not wait
  on a full pipe), then until the pipe is readable, and takes everything it holds;
- it returns b"" (end of file, which ends PyAV's demuxing) when the producer closed the
  pipe, when `stop` is set, or when no byte came for `timeout_s` (`timed_out` is then set
  and `idle_s` says how long it waited).

Waiting uses the monotonic clock: these are I/O bounds, not media times. Setting `stop`
ends the pause between bursts at once, and a wait for data within `_STOP_POLL_S`.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

_STOP_POLL_S = 0.25


class BurstPipeReader:
    """Reads a pipe in bursts (see the module docstring); use from one thread."""

    def __init__(
        self,
        fd: int,
        *,
        pipe_bytes: int,
        interval_s: Callable[[], float],
        timeout_s: float,
        stop: threading.Event,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if pipe_bytes < 1 or timeout_s <= 0:
            raise ValueError("pipe_bytes and timeout_s must be positive")
        self._fd = fd
        self._pipe_bytes = pipe_bytes
        self._interval_s = interval_s
        self._stop = stop
        self._monotonic = monotonic
        self.timeout_s = timeout_s
        self.eager = True  # no pause between bursts until the caller says the stream runs
        self.timed_out = False
        self.idle_s = 0.0
        self.bursts = 0
        self._buffer = b""
        self._offset = 0
        self._last_burst_s = float("-inf")
        self._last_was_large = False
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.on_burst: Callable[[], None] | None = None  # e.g. drain the producer's stderr
        # Called whenever the buffer is used up, before waiting for the next burst: the
        # moment to hand over what the burst gave.
        self.before_wait: Callable[[], object] | None = None

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is buffered if negative); b"" at the end."""
        if self._offset >= len(self._buffer) and not self._next_burst():
            return b""
        if self._offset == 0 and (size < 0 or size >= len(self._buffer)):
            self._offset = len(self._buffer)
            return self._buffer  # the whole burst, not copied (the caller asks for a lot)
        end = len(self._buffer) if size < 0 else self._offset + size
        piece = self._buffer[self._offset : end]
        self._offset += len(piece)
        return piece

    def _next_burst(self) -> bool:
        """Fill the buffer with the pipe's contents; False at the end (see the rules)."""
        if self.before_wait is not None:
            self.before_wait()
        if not (self.eager or self._last_was_large):
            # One sleep for the whole interval: each wake-up of this thread costs more CPU
            # than demuxing the burst it brings (docs/benchmarks.md).
            wait_s = self._last_burst_s + self._interval_s() - self._monotonic()
            if wait_s > 0 and self._stop.wait(wait_s):
                return False
        waited_from = self._monotonic()
        while True:
            if self._stop.is_set():
                return False
            idle_s = self._monotonic() - waited_from
            if idle_s >= self.timeout_s:
                self.timed_out, self.idle_s = True, idle_s
                return False
            wait_ms = 1000 * min(_STOP_POLL_S, self.timeout_s - idle_s)
            if self._poll.poll(max(1, round(wait_ms))):
                break  # data, or the producer closed its end (read then gives b"")
        data = os.read(self._fd, self._pipe_bytes)
        self._last_burst_s = self._monotonic()
        self._last_was_large = len(data) * 2 >= self._pipe_bytes
        self._buffer, self._offset = data, 0
        self.bursts += 1
        if self.on_burst is not None:
            self.on_burst()
        return bool(data)
