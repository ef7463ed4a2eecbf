"""Placing packets on the wall clock, and pacing worker threads to real time."""

from __future__ import annotations

import asyncio
import threading
import time
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from agent.sources.pacing import ThreadPacer
from agent.sources.timing import WallClockMapper
from shared.clock import NS_PER_S, ManualClock, SystemClock

TB_90K = Fraction(1, 90_000)
FRAME_90K = 3_600  # 25 fps


def test_first_packet_anchors_at_the_clock_and_later_ones_follow_the_pts() -> None:
    clock = ManualClock()
    start_ns = clock.now_ns()
    mapper = WallClockMapper(clock)
    assert mapper.wall_ns(123_456, TB_90K) == start_ns
    clock.advance(0.03)  # arrival jitter does not move the mapping
    assert mapper.wall_ns(123_456 + FRAME_90K, TB_90K) == start_ns + 40_000_000
    assert mapper.reanchors == 0
    assert mapper.last_reanchor is not None
    assert mapper.last_reanchor.reason == "start"


@given(steps=st.lists(st.integers(min_value=1, max_value=9_000), min_size=1, max_size=50))
def test_a_source_that_keeps_time_is_never_reanchored(steps: list[int]) -> None:
    clock = ManualClock()
    start_ns = clock.now_ns()
    mapper = WallClockMapper(clock)
    pts = 1_000
    mapper.wall_ns(pts, TB_90K)
    for step in steps:
        clock.advance(step / 90_000)
        pts += step
        assert mapper.wall_ns(pts, TB_90K) == start_ns + round((pts - 1_000) * NS_PER_S / 90_000)
    assert mapper.reanchors == 0


TIME_BASES = (TB_90K, Fraction(1, 16_000), Fraction(1_001, 30_000), Fraction(1, 2 * NS_PER_S))


@given(
    packets=st.lists(
        st.tuples(st.sampled_from(TIME_BASES), st.integers(min_value=0, max_value=2 * NS_PER_S)),
        min_size=1,
        max_size=30,
    )
)
def test_wall_times_are_the_exact_media_times_rounded_half_to_even(
    packets: list[tuple[Fraction, int]],
) -> None:
    """Within the jump limits, a packet's wall time is its media time since the first packet,
    computed exactly in any mix of time bases and rounded only at the end (ticks of 1/(2e9) s
    make halves of a nanosecond, which round to even)."""
    clock = ManualClock()
    start_ns = clock.now_ns()
    mapper = WallClockMapper(clock, follow_clock=False, max_jump_s=10.0, max_reorder_s=10.0)
    origin_ns: Fraction | None = None
    for time_base, ticks in packets:
        pts = ticks % (2 * time_base.denominator // time_base.numerator + 1)  # within 0..2 s
        media_ns = pts * time_base * NS_PER_S
        if origin_ns is None:
            origin_ns = media_ns
        assert mapper.wall_ns(pts, time_base) == start_ns + round(media_ns - origin_ns)
    assert mapper.reanchors == 0


def test_a_frozen_camera_is_followed_once_its_lateness_has_lasted_the_grace() -> None:
    """The camera froze for 3 s and went on with timestamps that skip the freeze: every
    later frame arrives 3 s behind its mapping. The mapper follows the clock once that has
    lasted `late_grace_s`, not at the first late frame."""
    clock = ManualClock()
    mapper = WallClockMapper(clock, max_drift_s=1.0, late_grace_s=2.0)
    start_ns = clock.now_ns()
    mapper.wall_ns(0, TB_90K)
    clock.advance(3.0)
    pts = FRAME_90K
    assert mapper.wall_ns(pts, TB_90K) == start_ns + 40_000_000  # late, but not for long yet
    late_from_ns = clock.now_ns()
    while clock.now_ns() - late_from_ns < 2 * NS_PER_S - 40_000_000:
        clock.advance(0.04)
        pts += FRAME_90K
        assert mapper.wall_ns(pts, TB_90K) == start_ns + round(pts * NS_PER_S / 90_000)
    assert mapper.reanchors == 0
    clock.advance(0.04)
    pts += FRAME_90K
    assert mapper.wall_ns(pts, TB_90K) == clock.now_ns()
    assert mapper.last_reanchor is not None
    assert mapper.last_reanchor.reason == "drift"
    clock.advance(0.04)
    assert mapper.wall_ns(pts + FRAME_90K, TB_90K) == clock.now_ns()


def test_a_rush_of_buffered_packets_after_a_stall_keeps_its_capture_times() -> None:
    """The link stalls for 1.5 s; the camera's frames of that time then arrive within 10 ms.
    Re-anchoring on the first would map the rest into the future and the next frame back
    again, over what was already stored. They keep the times they were captured at."""
    clock = ManualClock()
    mapper = WallClockMapper(clock, max_drift_s=1.0)
    start_ns = clock.now_ns()
    walls = [mapper.wall_ns(0, TB_90K)]
    clock.advance(1.5)
    for index in range(1, 39):  # the rush: 1.5 s of frames
        walls.append(mapper.wall_ns(index * FRAME_90K, TB_90K))
    for index in range(39, 100):  # then live again
        clock.advance(0.04)
        walls.append(mapper.wall_ns(index * FRAME_90K, TB_90K))
    assert walls == [start_ns + index * 40_000_000 for index in range(100)]
    assert mapper.reanchors == 0


@given(burst_s=st.floats(min_value=0.02, max_value=3.0))
def test_packets_read_in_bursts_keep_their_spacing(burst_s: float) -> None:
    """A reader that takes the pipe's contents every `burst_s` gives all of a burst's
    packets the burst's arrival time: the oldest are late by up to a burst, never early."""
    clock = ManualClock()
    mapper = WallClockMapper(clock, max_drift_s=1.0)
    start_ns = clock.now_ns()
    assert mapper.wall_ns(0, TB_90K) == start_ns  # the first packet is read at once
    captured_ns = 0
    index = 0
    while captured_ns < 20 * NS_PER_S:
        clock.advance(burst_s)
        arrival_ns = clock.now_ns()
        while captured_ns + 40_000_000 <= arrival_ns - start_ns:
            index += 1
            captured_ns = index * 40_000_000
            assert mapper.wall_ns(index * FRAME_90K, TB_90K, arrival_ns) == start_ns + captured_ns
    assert mapper.reanchors == 0


def test_a_camera_clock_running_fast_is_pulled_back_once_it_is_a_second_off() -> None:
    clock = ManualClock()
    mapper = WallClockMapper(clock, max_drift_s=1.0)
    mapper.wall_ns(0, TB_90K)
    pts = 0
    for _ in range(2_000):  # the camera counts 41 ms per 40 ms frame: 2.5 % fast
        clock.advance(0.040)
        pts += 3_690
        mapper.wall_ns(pts, TB_90K)
    assert mapper.reanchors >= 1
    assert abs(mapper.wall_ns(pts, TB_90K) - clock.now_ns()) <= NS_PER_S


def test_a_wrapping_rtp_clock_is_reanchored_not_mapped_back_in_time() -> None:
    clock = ManualClock()
    mapper = WallClockMapper(clock)
    near_wrap = 2**32 - FRAME_90K
    mapper.wall_ns(near_wrap, TB_90K)
    clock.advance(0.04)
    after_wrap_ns = mapper.wall_ns(0, TB_90K)
    assert after_wrap_ns == clock.now_ns()
    assert mapper.last_reanchor is not None
    assert mapper.last_reanchor.reason == "jump"


def test_a_wall_clock_stepped_forward_is_followed_after_the_grace() -> None:
    clock = ManualClock()
    mapper = WallClockMapper(clock, late_grace_s=2.0)
    mapper.wall_ns(0, TB_90K)
    clock.advance(0.04)
    clock.set_wall_ns(clock.now_ns() + 3_600 * NS_PER_S)  # NTP corrects by an hour
    pts = FRAME_90K
    mapper.wall_ns(pts, TB_90K)
    for _ in range(50):
        clock.advance(0.04)
        pts += FRAME_90K
        mapper.wall_ns(pts, TB_90K)
    assert mapper.wall_ns(pts, TB_90K) == clock.now_ns()
    assert mapper.reanchors == 1


def test_a_wall_clock_stepped_back_is_followed_at_once() -> None:
    clock = ManualClock()
    mapper = WallClockMapper(clock)
    mapper.wall_ns(0, TB_90K)
    clock.advance(0.04)
    clock.set_wall_ns(clock.now_ns() - 3_600 * NS_PER_S)
    assert mapper.wall_ns(FRAME_90K, TB_90K) == clock.now_ns()


def test_without_clock_following_a_jump_continues_the_timeline() -> None:
    clock = ManualClock()
    start_ns = clock.now_ns()
    mapper = WallClockMapper(clock, follow_clock=False)
    for index in range(75):
        assert mapper.wall_ns(index * FRAME_90K, TB_90K) == start_ns + index * 40_000_000
    # The source restarts its timestamps; the clock has not moved at all (a fast test).
    assert mapper.wall_ns(0, TB_90K) == start_ns + 75 * 40_000_000
    assert mapper.wall_ns(FRAME_90K, TB_90K) == start_ns + 76 * 40_000_000


def test_small_backward_steps_are_reordering_not_jumps() -> None:
    clock = ManualClock()
    start_ns = clock.now_ns()
    mapper = WallClockMapper(clock, follow_clock=False)
    for pts in (0, 3 * FRAME_90K, FRAME_90K, 2 * FRAME_90K):  # B-frame presentation order
        assert mapper.wall_ns(pts, TB_90K) == start_ns + pts * 1_000_000 // 90
    assert mapper.reanchors == 0


def test_streams_in_other_time_bases_share_one_timeline() -> None:
    clock = ManualClock()
    start_ns = clock.now_ns()
    mapper = WallClockMapper(clock, follow_clock=False)
    mapper.wall_ns(0, TB_90K)
    assert mapper.wall_ns(-1_024, Fraction(1, 16_000)) == start_ns - 64_000_000
    assert mapper.wall_ns(16_000, Fraction(1, 16_000)) == start_ns + NS_PER_S


async def test_pacer_sleeps_on_the_injected_clock_until_each_packet_is_due() -> None:
    clock = ManualClock()
    stop = threading.Event()
    pacer = ThreadPacer(clock, stop)
    start = clock.monotonic_ns()

    def run() -> list[int]:
        seen = []
        for media_ms in (5_000, 5_040, 5_080, 5_500):
            assert pacer.wait_until(media_ms * 1_000_000)
            seen.append(clock.monotonic_ns() - start)
        return seen

    assert await asyncio.to_thread(run) == [0, 40_000_000, 80_000_000, 500_000_000]


async def test_pacer_does_not_burst_after_falling_behind() -> None:
    clock = ManualClock()
    pacer = ThreadPacer(clock, threading.Event(), max_lag_s=1.0)

    def run() -> int:
        pacer.wait_until(0)
        clock.advance(5.0)  # the consumer stalled for five seconds
        pacer.wait_until(40_000_000)  # late: the origin moves here instead of bursting
        before = clock.monotonic_ns()
        pacer.wait_until(80_000_000)
        return clock.monotonic_ns() - before

    assert await asyncio.to_thread(run) == 40_000_000


async def test_stopping_interrupts_a_pacer_sleep_promptly() -> None:
    stop = threading.Event()
    pacer = ThreadPacer(SystemClock(), stop, max_lead_s=60.0)

    def run() -> tuple[bool, float]:
        pacer.wait_until(0)
        started = time.monotonic()
        result = pacer.wait_until(30 * NS_PER_S)
        return result, time.monotonic() - started

    waiting = asyncio.create_task(asyncio.to_thread(run))
    await asyncio.sleep(0.1)
    stop.set()
    result, waited_s = await waiting
    assert result is False
    assert waited_s < 1.0
