"""The pace of a running retrieval stream (central/retrieval/stream_rate.py): bytes and
recording time a second over the last `WINDOW_S` seconds, and the time the rest of the
span needs at that pace. Driven by a `ManualClock`: each committed chunk is one `add`."""

from __future__ import annotations

import pytest

from central.retrieval.stream_rate import WINDOW_S, RateReading, StreamRate
from shared.clock import NS_PER_S, ManualClock

CHUNK_BYTES = 100_000
CHUNK_S = 2  # each chunk covers 2 s of recording
SPAN_START_NS = 1_800_000_000 * NS_PER_S
SPAN_END_NS = SPAN_START_NS + 100 * NS_PER_S
WINDOW_S_INT = int(WINDOW_S)


class _Stream:
    """A stream committing chunks of the span in order, at the clock's instants."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.rate = StreamRate()
        self.covered_until_ns = SPAN_START_NS

    def commit(self, *, chunks: int = 1) -> None:
        for _ in range(chunks):
            self.covered_until_ns += CHUNK_S * NS_PER_S
            self.rate.add(self.clock.monotonic_ns(), CHUNK_BYTES, self.covered_until_ns)

    def steady(self, seconds: int) -> None:
        """One chunk a second for `seconds` seconds."""
        for _ in range(seconds):
            self.clock.advance(1)
            self.commit()

    def reading(self) -> RateReading | None:
        return self.rate.reading(self.clock.monotonic_ns())

    def seconds_left(self) -> float | None:
        reading = self.reading()
        assert reading is not None
        return reading.seconds_left(self.covered_until_ns, SPAN_START_NS, SPAN_END_NS)


def test_nothing_is_known_before_two_chunks() -> None:
    stream = _Stream()
    assert stream.reading() is None
    stream.commit()
    stream.clock.advance(3)
    assert stream.reading() is None  # one chunk: a start, no span to divide by


def test_a_steady_stream_reads_its_rate_and_the_time_left() -> None:
    stream = _Stream()
    stream.commit()
    stream.steady(5)
    reading = stream.reading()
    # The first chunk marks the start; the five after it came in 5 s.
    assert reading == RateReading(bytes_per_s=CHUNK_BYTES, recording_s_per_s=CHUNK_S)
    # 12 s of 100 covered, at 2 s of recording a second.
    assert stream.seconds_left() == pytest.approx(88 / 2)
    stream.steady(20)  # longer than the window: only its last 10 s count, the same pace
    assert stream.reading() == RateReading(bytes_per_s=CHUNK_BYTES, recording_s_per_s=CHUNK_S)
    assert stream.seconds_left() == pytest.approx((100 - 52) / 2)


def test_the_time_left_shrinks_as_the_stream_goes_on() -> None:
    stream = _Stream()
    stream.commit()
    estimates = []
    for _ in range(10):
        stream.steady(3)
        left = stream.seconds_left()
        assert left is not None
        estimates.append(left)
    assert estimates == sorted(estimates, reverse=True)
    assert estimates[-1] == pytest.approx((100 - 62) / 2)


def test_a_pause_lowers_the_rate_and_stretches_the_estimate() -> None:
    stream = _Stream()
    stream.commit()
    stream.steady(10)
    before = stream.seconds_left()
    stream.clock.advance(5)  # nothing for 5 s: the window's 10 s hold 5 chunks
    reading = stream.reading()
    assert reading is not None
    assert reading.bytes_per_s == pytest.approx(5 * CHUNK_BYTES / WINDOW_S)
    after = stream.seconds_left()
    assert before is not None
    assert after is not None
    assert after == pytest.approx(2 * before)
    stream.clock.advance(60)  # a stall longer than the window: nothing flows in it
    assert stream.reading() == RateReading(bytes_per_s=0, recording_s_per_s=0)
    assert stream.seconds_left() is None


def test_after_a_stall_the_pace_is_what_flows_within_one_window() -> None:
    stream = _Stream()
    stream.commit()
    stream.steady(10)
    stream.clock.advance(65)  # stalled; then one chunk a second again
    stream.steady(WINDOW_S_INT)
    reading = stream.reading()
    assert reading is not None
    # Nine chunks wholly in the window, and 1/66 of the one that spanned the stall.
    assert reading.bytes_per_s == pytest.approx((9 + 1 / 66) * CHUNK_BYTES / WINDOW_S)
    stream.steady(1)
    assert stream.reading() == RateReading(bytes_per_s=CHUNK_BYTES, recording_s_per_s=CHUNK_S)


def test_a_burst_counts_over_the_window_not_as_the_instant_rate() -> None:
    stream = _Stream()
    stream.commit()
    stream.steady(10)
    stream.clock.advance(0.5)
    stream.commit(chunks=3)  # three chunks at once (a window of credit arrived together)
    reading = stream.reading()
    assert reading is not None
    # The last 10 s: twelve chunks, and half of the one whose second straddles its start.
    assert reading.bytes_per_s == pytest.approx(12.5 * CHUNK_BYTES / WINDOW_S)
    assert reading.recording_s_per_s == pytest.approx(12.5 * CHUNK_S / WINDOW_S)
    stream.clock.advance(1)  # and the burst is averaged away as the window moves on
    reading = stream.reading()
    assert reading is not None
    assert reading.bytes_per_s == pytest.approx(11.5 * CHUNK_BYTES / WINDOW_S)


def test_a_stream_at_the_end_of_its_span_has_no_time_left() -> None:
    reading = RateReading(bytes_per_s=CHUNK_BYTES, recording_s_per_s=CHUNK_S)
    assert reading.seconds_left(SPAN_END_NS, SPAN_START_NS, SPAN_END_NS) == 0
    # A chunk running past the span's end is no negative time.
    assert reading.seconds_left(SPAN_END_NS + NS_PER_S, SPAN_START_NS, SPAN_END_NS) == 0
    # Nothing covered yet: the whole span is left.
    assert reading.seconds_left(None, SPAN_START_NS, SPAN_END_NS) == pytest.approx(50)


def test_chunks_that_cover_no_recording_time_give_no_estimate() -> None:
    rate = StreamRate()
    rate.add(0, CHUNK_BYTES, SPAN_START_NS)
    rate.add(NS_PER_S, CHUNK_BYTES, SPAN_START_NS)
    reading = rate.reading(NS_PER_S)
    assert reading == RateReading(bytes_per_s=CHUNK_BYTES, recording_s_per_s=0)
    assert reading.seconds_left(SPAN_START_NS, SPAN_START_NS, SPAN_END_NS) is None
