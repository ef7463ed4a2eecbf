"""How closely a capped retrieval keeps its cap: its first and fullest 1 s windows, its 10 s
windows and its whole transfer, each as a ratio to the cap, seen three ways.

The transfer runs from the first to the last transfer frame (`ChunkHead`, `ChunkBody`) the
site handed to its link during the job (bench/sent_log.py); the cap counts those frames'
bytes (docs/design/protocol.md, Pacing).

- line, raw: the line's receive counter (this end of the veth, sampled,
  bench/counter_samples.py): what crossed the line, with the TCP/IP headers (one set per
  offloaded packet), TLS records and WebSocket headers around the frames, and the site's
  other traffic (keepalives, answers; live video if a viewer watches). The cap counts none
  of that.
- line, corrected: the raw figures divided by the job's own overhead factor, k = line bytes
  / every link frame byte the site handed over, both over the whole transfer. The
  correction holds window by window because the overhead is proportional to the bytes: a
  paced transfer sends the same frames (10 ms pieces of the rate) the whole time, so each
  carries the same headers. The goal is judged on this view.
- site: the transfer frames the site handed to its socket, at their exact instants: what
  its pace counts, before the socket, TLS and the line smooth them.

Windows of 1 s and 10 s start at each line sample (site: each message sent) from the
transfer's first frame to one window before its last. On the line the first window starts at
the last sample before the first frame (only the site's control traffic comes between), so
it holds the whole first second however the samples fall. Whole: the bytes from the first
frame to the last over the time between.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from counter_samples import CounterSamples
from sent_log import SiteSends

from shared.clock import NS_PER_S

ONE_S_NS = NS_PER_S
TEN_S_NS = 10 * NS_PER_S
SETTLE_NS = NS_PER_S // 5  # after the last frame, for the line to carry it


@dataclass(frozen=True)
class CapView:
    """Ratios to the cap; the 10 s figures are None for a transfer shorter than 10 s."""

    first_1s: float
    fullest_1s: float
    lowest_10s: float | None
    highest_10s: float | None
    whole: float

    def scaled(self, factor: float) -> CapView:
        return CapView(
            self.first_1s * factor,
            self.fullest_1s * factor,
            None if self.lowest_10s is None else self.lowest_10s * factor,
            None if self.highest_10s is None else self.highest_10s * factor,
            self.whole * factor,
        )


@dataclass(frozen=True)
class CapReading:
    cap_bps: int
    transfer_s: float
    overhead: float  # k: line bytes / link frame bytes over the transfer
    line_raw: CapView
    line_corrected: CapView
    site: CapView


def cap_reading(
    cap_bps: int, line: CounterSamples, sent: SiteSends, job_start_ns: int, job_end_ns: int
) -> CapReading:
    """The figures of the capped transfer the site sent between `job_start_ns` and
    `job_end_ns` (monotonic: the job's creation and end)."""
    transfer_sends = sent.transfer_sends(job_start_ns, job_end_ns)
    if len(transfer_sends) < 2:
        raise ValueError("a capped transfer of fewer than two messages has no rate")
    start_ns, end_ns = transfer_sends[0][0], transfer_sends[-1][0]
    cap_bytes_per_s = cap_bps / 8
    raw = _line_view(line, start_ns, end_ns, cap_bytes_per_s)
    # The overhead over the whole transfer, from the sample before its first frame to the
    # first one after its last frame had time to cross the line.
    span_start, line_before = line.last_at_or_before(start_ns)
    span_end, line_after = line.first_at_or_after(end_ns + SETTLE_NS)
    overhead = (line_after - line_before) / sent.bytes_between(span_start, span_end)
    return CapReading(
        cap_bps=cap_bps,
        transfer_s=(end_ns - start_ns) / NS_PER_S,
        overhead=overhead,
        line_raw=raw,
        line_corrected=raw.scaled(1 / overhead),
        site=_site_view(transfer_sends, cap_bytes_per_s),
    )


def _line_view(line: CounterSamples, start_ns: int, end_ns: int, cap_bytes_per_s: float) -> CapView:
    _, base = line.last_at_or_before(start_ns)
    starts = line.between(start_ns, end_ns)

    def ratios(length_ns: int) -> list[float]:
        per_window = cap_bytes_per_s * length_ns / NS_PER_S
        first = (line.at(start_ns + length_ns) - base) / per_window
        rest = [
            (line.at(t + length_ns) - count) / per_window
            for t, count in starts
            if t + length_ns <= end_ns
        ]
        return [first, *rest]

    ones = ratios(ONE_S_NS)
    tens = ratios(TEN_S_NS) if end_ns - start_ns >= TEN_S_NS else []
    whole = (line.at(end_ns) - base) / (cap_bytes_per_s * (end_ns - start_ns) / NS_PER_S)
    return CapView(ones[0], max(ones), min(tens, default=None), max(tens, default=None), whole)


def _site_view(sends: list[tuple[int, int]], cap_bytes_per_s: float) -> CapView:
    times = [t for t, _ in sends]
    before = [0, *itertools.accumulate(size for _, size in sends)]  # bytes before send i
    start_ns, end_ns = times[0], times[-1]

    def ratios(length_ns: int) -> list[float]:
        per_window = cap_bytes_per_s * length_ns / NS_PER_S
        found = []
        for index, t in enumerate(times):
            if index and t + length_ns > end_ns:
                break
            after = bisect.bisect_left(times, t + length_ns)  # sends in [t, t + length)
            found.append((before[after] - before[index]) / per_window)
        return found

    ones = ratios(ONE_S_NS)
    tens = ratios(TEN_S_NS) if end_ns - start_ns >= TEN_S_NS else []
    # Every frame but the last: the last one's time to go is after `end_ns`.
    whole = before[-2] / (cap_bytes_per_s * (end_ns - start_ns) / NS_PER_S)
    return CapView(ones[0], max(ones), min(tens, default=None), max(tens, default=None), whole)
