"""The sender's pace for the background class: a rate the asker sets, kept frame by frame.

Why the sender paces: the asker (the central) decides how fast retrievals may use a site's
link. Credit alone cannot keep that exact. Credit says how much the sender may send, not
when, so credit granted before a transfer starts is spent in one burst when it does, and a
window small enough to avoid that starves a long link. With `Pace` the asker tells the
sender the rate and the sender spaces its background frames itself. Credit then only
bounds how far ahead of the asker's store the sender may run.

The rule is a token bucket counted in frame bytes (the same bytes credit counts), shared
by every background stream of the connection:

- the bucket fills at the rate, up to `burst_bytes` (10 ms of the rate);
- a frame may go when the bucket is not in debt, and takes its whole size from it (the
  bucket may go below zero by one frame);
- payloads are cut into pieces of at most `piece_bytes`: 10 ms of the rate, but never less
  than 30 ms of it or 2 KiB, whichever is smaller (so pieces stay large enough for their
  framing to cost little, about 20 bytes each, yet shrink with the rate).

So the bytes sent in any span of t seconds are at most rate * t + burst + the largest
frame. Counting the pieces alone that is at most 40 ms of the rate and a frame's overhead
over it: about 4% in any 1 s window at every rate from 64 kbit/s up (2% above
1.6 Mbit/s), 0.4% over 10 s. A chunk's head goes whole, as one frame (its header and
signature: about 0.45 KiB for a 1 s chunk of 10 frames a second, more for longer chunks or
more frames), so a 1 s window that holds one is over by up to burst + that head: under 5%
from about 100 kbit/s for such chunks, more below. A writer that wakes late finds up to the
burst saved for it, so the long-run rate is the rate itself. Counting is in
bit-nanoseconds (one byte is 8e9 units; t ns at r bit/s add r * t units), exact however
long the pace runs.

Sans-I/O: the caller passes the monotonic time in nanoseconds; nothing here sleeps.
"""

from __future__ import annotations

BITS_PER_BYTE = 8
NS_PER_S = 1_000_000_000
PACE_SLICE_NS = 10_000_000
"""The burst, and the largest piece at high rates, as time of the rate."""
LOW_RATE_PIECE_NS = 30_000_000
"""The largest piece at low rates, as time of the rate (up to `PIECE_FLOOR_BYTES`)."""
PIECE_FLOOR_BYTES = 2048
"""Pieces are never cut below this while 30 ms of the rate is larger (above 546 kbit/s)."""
MIN_BURST_BYTES = 1
MIN_PIECE_BYTES = 64
"""Floors that matter only far below any useful cap (6.4 kbit/s and 17 kbit/s)."""

_UNITS_PER_BYTE = BITS_PER_BYTE * NS_PER_S


class SendPacer:
    """See the module docstring. A pacer without a rate lets everything through."""

    def __init__(self) -> None:
        self._rate_bps: int | None = None
        self._level_units = 0
        self._filled_ns: int | None = None  # the first use after a new rate sets it
        self.paced_bytes = 0

    @property
    def rate_bps(self) -> int | None:
        return self._rate_bps

    @property
    def piece_bytes(self) -> int | None:
        """The largest payload piece to cut while pacing; None without a rate."""
        if self._rate_bps is None:
            return None
        return piece_bytes_at(self._rate_bps)

    @property
    def burst_bytes(self) -> int | None:
        if self._rate_bps is None:
            return None
        return burst_bytes_at(self._rate_bps)

    def set_rate(self, rate_bps: int | None) -> None:
        """Pace at `rate_bps` bits per second from now on (None: no pace).

        A bucket in debt stays in debt (a new rate cannot erase what was sent); one with
        savings keeps them up to the new burst. A first rate starts with an empty bucket.
        """
        if rate_bps is not None and (isinstance(rate_bps, bool) or rate_bps < 1):
            raise ValueError(f"a pace is at least 1 bit per second, or None; not {rate_bps!r}")
        self._rate_bps = rate_bps
        if rate_bps is None:
            self._level_units = 0
            self._filled_ns = None
            return
        self._level_units = min(self._level_units, self._burst_units())

    def ready_at_ns(self, now_ns: int) -> int:
        """The earliest instant a frame may go: `now_ns` itself when it may go now."""
        if self._rate_bps is None:
            return now_ns
        self._fill(now_ns)
        if self._level_units >= 0:
            return now_ns
        debt_units = -self._level_units
        return now_ns + (debt_units + self._rate_bps - 1) // self._rate_bps

    def charge(self, frame_bytes: int, now_ns: int) -> None:
        """A frame of `frame_bytes` went now (call only when `ready_at_ns(now_ns) == now_ns`)."""
        self.paced_bytes += frame_bytes
        if self._rate_bps is None:
            return
        self._fill(now_ns)
        self._level_units -= frame_bytes * _UNITS_PER_BYTE

    def _fill(self, now_ns: int) -> None:
        assert self._rate_bps is not None
        if self._filled_ns is None:
            self._filled_ns = now_ns
            return
        elapsed_ns = max(0, now_ns - self._filled_ns)
        self._filled_ns = max(self._filled_ns, now_ns)
        self._level_units = min(
            self._burst_units(), self._level_units + elapsed_ns * self._rate_bps
        )

    def _burst_units(self) -> int:
        burst = self.burst_bytes
        assert burst is not None
        return burst * _UNITS_PER_BYTE


def burst_bytes_at(rate_bps: int) -> int:
    """The bucket's size at `rate_bps`: 10 ms of the rate."""
    return max(MIN_BURST_BYTES, _bytes_in(rate_bps, PACE_SLICE_NS))


def piece_bytes_at(rate_bps: int) -> int:
    """The largest payload piece at `rate_bps` (see the module docstring)."""
    low_rate_piece = min(PIECE_FLOOR_BYTES, _bytes_in(rate_bps, LOW_RATE_PIECE_NS))
    return max(MIN_PIECE_BYTES, low_rate_piece, _bytes_in(rate_bps, PACE_SLICE_NS))


def _bytes_in(rate_bps: int, span_ns: int) -> int:
    return rate_bps * span_ns // (BITS_PER_BYTE * NS_PER_S)
