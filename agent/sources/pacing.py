"""Holding a worker thread to real time on the injected clock.

A synthetic or file camera could produce packets as fast as the CPU allows; to behave
like a camera it releases each packet when its media time has come. The worker thread
sleeps through `Clock.sleep_in_thread`, so a test's `ManualClock` drives the pace as well
(its sleep advances time and returns at once), and pacing costs the event loop nothing.
"""

from __future__ import annotations

import threading

from shared.clock import NS_PER_S, Clock

_STOP_POLL_S = 0.05  # how often a sleeping worker checks the stop flag


class ThreadPacer:
    """Blocks a worker thread until a media time is due on the clock's monotonic time.

    The first call fixes the origin (media time <-> monotonic time). A packet more than
    `max_lag_s` late (the consumer or the CPU fell behind) or more than `max_lead_s` early
    (the media time jumped) moves the origin to it instead of bursting or stalling.
    """

    def __init__(
        self,
        clock: Clock,
        stop: threading.Event,
        *,
        max_lag_s: float = 1.0,
        max_lead_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self._stop = stop
        self._max_lag_ns = round(max_lag_s * NS_PER_S)
        self._max_lead_ns = round(max_lead_s * NS_PER_S)
        self._origin: tuple[int, int] | None = None  # (media_ns, monotonic_ns)

    def wait_until(self, media_ns: int) -> bool:
        """Sleep until `media_ns` is due; False if the source is stopping."""
        now_ns = self._clock.monotonic_ns()
        if self._origin is None:
            self._origin = (media_ns, now_ns)
            return not self._stop.is_set()
        origin_media_ns, origin_mono_ns = self._origin
        delay_ns = origin_mono_ns + (media_ns - origin_media_ns) - now_ns
        if delay_ns < -self._max_lag_ns or delay_ns > self._max_lead_ns:
            self._origin = (media_ns, now_ns)
        elif delay_ns > 0:
            self._sleep(delay_ns / NS_PER_S)
        return not self._stop.is_set()

    def _sleep(self, seconds: float) -> None:
        # Sleeping in this thread costs no event-loop wake-up per packet; slices keep a
        # stopping source responsive.
        remaining = seconds
        while remaining > 0 and not self._stop.is_set():
            step = min(remaining, _STOP_POLL_S)
            self._clock.sleep_in_thread(step)
            remaining -= step
