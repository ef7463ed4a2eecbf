"""Batching a demuxing thread's packets: when batches go, and that times are unchanged."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest

from agent.sources.handoff import ThreadHandoff
from agent.sources.packet_batcher import PacketBatcher, StreamTimeline
from agent.sources.timing import WallClockMapper
from shared.clock import NS_PER_S, ManualClock
from shared.media import MediaPacket

VIDEO_TB = Fraction(1, 90_000)
FRAME = 3_600  # 40 ms at 90 kHz


class Rig:
    def __init__(
        self, interval_s: float, *, max_batch: int = 64, flush_when_due: bool = True
    ) -> None:
        self.clock = ManualClock()
        self.handoff = ThreadHandoff[MediaPacket](
            asyncio.get_running_loop(), 256, min_wake_interval_s=interval_s
        )
        self.batcher = PacketBatcher(
            self.handoff, self.clock, max_batch=max_batch, flush_when_due=flush_when_due
        )
        self.timeline = StreamTimeline("hq", VIDEO_TB, WallClockMapper(self.clock))
        self.pts = 0

    def frame(self, *, after_s: float = 0.04, keyframe: bool = False) -> bool:
        self.clock.advance(after_s)
        self.pts += FRAME
        return self.batcher.add(self.timeline, self.pts, self.pts, FRAME, keyframe, b"f")

    async def delivered(self) -> list[int]:
        """The pts of every packet handed over so far (the consumer takes them all)."""
        try:
            async with asyncio.timeout(0.02):
                return [packet.pts for packet in await self.handoff.get_batch()]
        except TimeoutError:
            return []


async def test_the_first_packet_goes_at_once_then_a_batch_per_interval() -> None:
    rig = Rig(interval_s=0.5)
    assert rig.frame(keyframe=True)
    assert await rig.delivered() == [FRAME]
    for _ in range(11):  # 40 ms apart: 0.44 s after the last hand-over
        assert rig.frame()
    assert await rig.delivered() == []
    assert rig.frame()  # 0.48 s
    assert rig.frame()  # 0.52 s: due, goes with the packets before it
    assert await rig.delivered() == [FRAME * n for n in range(2, 15)]


async def test_while_watched_live_every_packet_goes_at_once() -> None:
    rig = Rig(interval_s=0.5)
    rig.frame(keyframe=True)
    await rig.delivered()
    rig.handoff.set_min_wake_interval(0.02)  # a viewer arrives
    for _ in range(13):  # applies from the next batch: at most one interval later
        rig.frame()
    assert await rig.delivered() == [FRAME * n for n in range(2, 15)]
    for n in range(15, 20):
        rig.frame()
        assert await rig.delivered() == [FRAME * n]


async def test_a_full_batch_goes_before_the_interval() -> None:
    rig = Rig(interval_s=10, max_batch=4)
    rig.frame(keyframe=True)
    await rig.delivered()
    for _ in range(3):
        rig.frame()
    assert await rig.delivered() == []
    rig.frame()
    assert await rig.delivered() == [FRAME * n for n in range(2, 6)]


async def test_a_wall_clock_stepped_back_hands_the_batch_over() -> None:
    rig = Rig(interval_s=0.5)
    rig.frame(keyframe=True)
    await rig.delivered()
    rig.frame()
    assert await rig.delivered() == []
    rig.clock.set_wall_ns(rig.clock.now_ns() - 3600 * NS_PER_S)  # NTP steps back an hour
    rig.frame()
    assert await rig.delivered() == [FRAME * 2, FRAME * 3]


async def test_flush_hands_over_the_rest_and_wall_times_are_those_of_arrival() -> None:
    rig = Rig(interval_s=10)
    reference_clock = ManualClock()
    reference = WallClockMapper(reference_clock)  # fed one by one, as each packet arrives
    expected: list[int] = []
    for n in range(8):
        # The camera restarts after the fourth packet: its pts jump 100 s and the mapper
        # re-anchors on the arrival time of the packet after the jump.
        rig.pts += FRAME + (100 * 90_000 if n == 4 else 0)
        rig.batcher.add(rig.timeline, rig.pts, rig.pts, FRAME, n == 0, b"f")
        expected.append(reference.wall_ns(rig.pts, VIDEO_TB))
        rig.clock.advance(0.04)
        reference_clock.advance(0.04)
    assert await rig.delivered() == [FRAME]  # the first went at once
    rig.clock.advance(0.4)  # mapped later than they arrived: must not matter
    assert rig.batcher.flush()
    packets = await rig.handoff.get_batch()
    assert [packet.wall_ns for packet in packets] == expected[1:]
    assert rig.timeline.mapper.reanchors == reference.reanchors == 1
    assert rig.batcher.flush()  # nothing left: nothing to do
    assert await rig.delivered() == []


async def test_a_closed_hand_off_tells_the_producer_to_stop() -> None:
    rig = Rig(interval_s=0.5)
    rig.handoff.close()
    assert not rig.frame(keyframe=True)


async def test_max_batch_must_be_positive() -> None:
    rig = Rig(interval_s=0.5)
    with pytest.raises(ValueError, match="at least 1"):
        PacketBatcher(rig.handoff, rig.clock, max_batch=0)


async def test_a_burst_reader_hands_batches_over_only_when_it_flushes_or_one_is_full() -> None:
    rig = Rig(interval_s=0.5, max_batch=20, flush_when_due=False)
    for _ in range(15):  # 0.6 s of packets: past the interval, and not handed over
        assert rig.frame(keyframe=True)
    assert await rig.delivered() == []
    assert rig.batcher.flush()  # the burst is demuxed
    assert await rig.delivered() == [FRAME * n for n in range(1, 16)]
    for _ in range(20):
        rig.frame()
    assert await rig.delivered() == [FRAME * n for n in range(16, 36)]  # full: gone
