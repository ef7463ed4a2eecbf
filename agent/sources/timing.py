"""Placing a source's timestamps on the wall clock.

Theory of operation. A camera stamps packets with its own presentation timestamps (pts):
they start anywhere, count in the stream's time base, wrap (RTP's 32-bit clock, MPEG-TS's
33-bit one), jump when the camera restarts, and drift against the site's clock because the
camera's oscillator is not ours. The recorder needs a UTC instant per packet. The mapper
keeps one *anchor*, a (media time, wall time) pair, and maps every later packet linearly
from it: `wall = anchor_wall + (media - anchor_media)`. That keeps the spacing of frames
exactly as the camera made it (no per-packet jitter from network arrival), and re-anchors
on the packet that arrives when:

- the media time steps forwards by more than `max_jump_s`, or backwards by more than
  `max_reorder_s` (B-frames and interleaved streams step back a little), between two
  packets: a discontinuity, a wrap, a camera restart; or
- (when following the clock) the mapped wall time is more than `max_drift_s` *ahead* of
  the injected clock's `now_ns()` at arrival. A live packet cannot arrive before it was
  captured, so the anchor is wrong: the camera's clock runs fast, or the site's wall clock
  was stepped back; or
- (when following the clock) packets keep arriving more than `max_drift_s` *behind* their
  mapped time for `late_grace_s` of arrival time: the camera's clock runs slow, it froze and
  went on with timestamps that skip the freeze, or the site's wall clock was stepped forward.
  Lateness that does not last is not a reason: after the network stalls, the camera's
  buffered packets arrive in a rush, late by up to the stall, and the anchor still places
  them where they were captured. Re-anchoring on the first of them would map the rest of the
  rush into the future, and the next packet after the rush back again: the timeline would
  step backwards over what was already stored (the store refuses overlapping chunks, so
  that video would be lost). The same holds for sources read in bursts, whose packets all
  carry the burst's arrival time.

At a re-anchor `wall_ns` steps (possibly backwards); consumers cut their chunk there.
Sources that run faster than real time (tests) turn clock following off, so the wall
times follow the media time from the first anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from shared.clock import NS_PER_S, Clock

DEFAULT_LATE_GRACE_S = 2.0
"""How long packets must keep arriving late before the mapper follows the clock forward. A
stalled link's rush of buffered packets is over well within it (a burst reader delivers it in
one or two bursts); a frozen camera's timeline stays that much behind for at most this long."""

_MediaTime = tuple[int, int]
"""(n, d): n/d nanoseconds, d > 0 (see `WallClockMapper`)."""


@dataclass(frozen=True, slots=True)
class Reanchor:
    """Why and where the mapper last re-anchored (for logs and tests)."""

    reason: str  # "start", "jump" or "drift"
    media_ns: int
    wall_ns: int


class WallClockMapper:
    """Maps one timeline's pts (in any time base) to UTC nanoseconds.

    One mapper serves all streams that share a timeline (the streams of one synthetic
    camera, or one RTSP session); streams with unrelated timestamps need one each. Not
    thread-safe: use it from the one thread that produces the timeline's packets.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        follow_clock: bool = True,
        max_drift_s: float = 1.0,
        max_jump_s: float = 5.0,
        max_reorder_s: float = 1.0,
        late_grace_s: float = DEFAULT_LATE_GRACE_S,
    ) -> None:
        if min(max_drift_s, max_jump_s, max_reorder_s, late_grace_s) <= 0:
            raise ValueError(
                "max_drift_s, max_jump_s, max_reorder_s and late_grace_s must be positive"
            )
        self._clock = clock
        self._follow_clock = follow_clock
        self._max_drift_ns = round(max_drift_s * NS_PER_S)
        self._max_jump_ns = round(max_jump_s * NS_PER_S)
        self._max_reorder_ns = round(max_reorder_s * NS_PER_S)
        self._late_grace_ns = round(late_grace_s * NS_PER_S)
        self._late_since_ns: int | None = None  # arrival of the first of a run of late packets
        # Media times are exact: (n, d) stands for n/d nanoseconds, with n = pts *
        # time_base.numerator * 1e9 and d = time_base.denominator. A stream's spacing never
        # accumulates rounding (only the returned wall time is rounded), and mapping a
        # packet costs a few integer operations (Fraction arithmetic cost more CPU than
        # demuxing the packet).
        self._anchor_media: _MediaTime = (0, 1)
        self._anchor_wall_ns = 0
        self._last_media: _MediaTime | None = None
        self._last_wall_ns = 0
        self._last_step_ns = 0
        # The last time base seen, and its scale: sources pass one object per stream.
        self._time_base: Fraction | None = None
        self._ns_scale = (0, 1)  # (time_base.numerator * 1e9, time_base.denominator)
        self.reanchors = 0
        self.last_reanchor: Reanchor | None = None

    def wall_ns(self, pts: int, time_base: Fraction, arrival_ns: int | None = None) -> int:
        """The UTC instant of a packet presented at `pts` (in `time_base`).

        `arrival_ns` is the clock's `now_ns()` when the packet arrived, for a caller that
        maps packets some time after reading them (in batches); by default the clock is
        read now."""
        if time_base is not self._time_base:
            self._time_base = time_base
            self._ns_scale = (time_base.numerator * NS_PER_S, time_base.denominator)
        scale_num, scale_den = self._ns_scale
        media = (pts * scale_num, scale_den)
        last = self._last_media
        if last is None:
            self._anchor(media, self._now_ns(arrival_ns), "start")
        else:
            step_num, step_den = _difference(media, last)
            if (
                step_num > self._max_jump_ns * step_den
                or step_num < -self._max_reorder_ns * step_den
            ):
                # Without a clock to follow, continue the timeline one typical step on,
                # so a looped or restarted source does not overlap its own past.
                wall = (
                    self._now_ns(arrival_ns)
                    if self._follow_clock
                    else self._last_wall_ns + max(self._last_step_ns, 1)
                )
                self._anchor(media, wall, "jump")
            elif step_num > 0:
                self._last_step_ns = _rounded(step_num, step_den)
        wall_ns = self._anchor_wall_ns + _rounded(*_difference(media, self._anchor_media))
        if self._follow_clock:
            now_ns = self._now_ns(arrival_ns)
            if self._drifted(wall_ns, now_ns):
                self._anchor(media, now_ns, "drift")
                wall_ns = now_ns
        self._last_media = media
        self._last_wall_ns = wall_ns
        return wall_ns

    def _drifted(self, wall_ns: int, now_ns: int) -> bool:
        """Whether a packet mapped to `wall_ns` and arriving at `now_ns` shows the anchor
        is wrong (see the module docstring)."""
        lateness_ns = now_ns - wall_ns
        if lateness_ns < -self._max_drift_ns:
            return True  # mapped into the future
        if lateness_ns <= self._max_drift_ns:
            self._late_since_ns = None
            return False
        if self._late_since_ns is None:
            self._late_since_ns = now_ns
        return now_ns - self._late_since_ns >= self._late_grace_ns

    def _now_ns(self, arrival_ns: int | None) -> int:
        return self._clock.now_ns() if arrival_ns is None else arrival_ns

    def _anchor(self, media: _MediaTime, wall_ns: int, reason: str) -> None:
        self._anchor_media = media
        self._anchor_wall_ns = wall_ns
        self._late_since_ns = None
        if reason != "start":
            self.reanchors += 1
        self.last_reanchor = Reanchor(reason, _rounded(*media), wall_ns)


def _difference(a: _MediaTime, b: _MediaTime) -> _MediaTime:
    """a - b, exactly."""
    if a[1] == b[1]:
        return a[0] - b[0], a[1]
    return a[0] * b[1] - b[0] * a[1], a[1] * b[1]


def _rounded(numerator: int, denominator: int) -> int:
    """numerator / denominator (denominator > 0) rounded half to even, as `round` does."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient
