"""How fast a running retrieval stream goes: bytes a second and recording time a second,
over the last few seconds, and from those the time it still needs.

One `StreamRate` per running stream, fed by each committed chunk (its payload bytes and the
end instant of the recording it covers). The rate is over a sliding window of
`WINDOW_S` seconds of the central's monotonic clock, so it follows changes of the cap or
the link within one window and is not skewed by the time before the stream started (nor,
after a stall, by the time before the stall: see `StreamRate.reading`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from shared.clock import NS_PER_S

WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class RateReading:
    bytes_per_s: float
    recording_s_per_s: float  # seconds of recording retrieved per second of wall time

    def seconds_left(
        self, covered_until_ns: int | None, start_ns: int, end_ns: int
    ) -> float | None:
        """The time the rest of [start_ns, end_ns) would take at this pace (None: unknown)."""
        if self.recording_s_per_s <= 0:
            return None
        done_until = start_ns if covered_until_ns is None else max(start_ns, covered_until_ns)
        left_s = max(0, end_ns - done_until) / NS_PER_S
        return left_s / self.recording_s_per_s


class StreamRate:
    """See the module docstring. Instants are monotonic nanoseconds."""

    def __init__(self, *, window_s: float = WINDOW_S) -> None:
        self._window_ns = int(window_s * NS_PER_S)
        # (monotonic instant, payload bytes, recording end instant) per committed chunk
        self._samples: deque[tuple[int, int, int]] = deque()

    def add(self, at_ns: int, payload_bytes: int, covered_until_ns: int) -> None:
        self._samples.append((at_ns, payload_bytes, covered_until_ns))
        self._forget_before(at_ns - self._window_ns)

    def reading(self, now_ns: int) -> RateReading | None:
        """The pace over the window ending `now_ns`; None before two chunks came.

        The window starts `WINDOW_S` before `now_ns`, or at the first chunk if that came
        later. A chunk committed after the window's start whose transfer began before it
        (the one before it was committed earlier still) counts for the share of the time
        between the two that lies in the window, as if its bytes had come evenly. So after
        a stall the pace is back to what flows within one window, and a stall longer than
        the window reads as nothing (0 bytes a second, no estimate)."""
        cutoff_ns = now_ns - self._window_ns
        self._forget_before(cutoff_ns)
        if len(self._samples) < 2:
            return None
        samples = list(self._samples)
        (first_ns, _, first_covered), (second_ns, second_size, second_covered) = samples[:2]
        share = 1.0
        if first_ns < cutoff_ns:
            gap_ns = second_ns - first_ns
            share = max(0, second_ns - cutoff_ns) / gap_ns if gap_ns > 0 else 0.0
        start_ns = max(first_ns, cutoff_ns)
        span_ns = max(now_ns - start_ns, 1)
        sent = second_size * share + sum(size for _, size, _ in samples[2:])
        covered = (second_covered - first_covered) * share + samples[-1][2] - second_covered
        return RateReading(sent * NS_PER_S / span_ns, max(0.0, covered) / span_ns)

    def _forget_before(self, cutoff_ns: int) -> None:
        # Keep one sample at or before the cutoff: the window's starting point.
        while len(self._samples) > 2 and self._samples[1][0] <= cutoff_ns:
            self._samples.popleft()
