"""The recording gate per mode: what is stored, the pre/post buffers and the gap flag.

Time comes only from the chunks and triggers: chunk i covers [i s, i+1 s) after BASE_NS.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chunker import CutChunk, CutReason
from agent.recording_policy import (
    RecordingMode,
    StoredChunkPlan,
    StreamRecordingGate,
    TriggerKind,
    WeeklySchedule,
)
from shared.chunk import ChunkDraft
from shared.clock import NS_PER_S
from shared.media import CodecConfig, MediaKind, MediaPacket

BASE_NS = 1_704_067_200 * NS_PER_S  # 2024-01-01 00:00 UTC, a Monday
CODEC = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000)


def at(seconds: float) -> int:
    return BASE_NS + round(seconds * NS_PER_S)


def chunk(index: int, *, after_discontinuity: bool = False, size: int = 100) -> CutChunk:
    packet = MediaPacket("hq", index, index, 0, True, bytes(size), at(index))
    draft = ChunkDraft("cam1", "hq", at(index), at(index + 1), CODEC, (packet,))
    return CutChunk(draft, after_discontinuity, CutReason.BOUNDARY)


def index_of(plan: StoredChunkPlan) -> int:
    return (plan.draft.start_ns - BASE_NS) // NS_PER_S


def offer_all(gate: StreamRecordingGate, indexes: range) -> list[StoredChunkPlan]:
    stored: list[StoredChunkPlan] = []
    for index in indexes:
        stored.extend(gate.offer(chunk(index, after_discontinuity=index == 0)))
    return stored


def test_continuous_stores_everything_and_flags_only_real_gaps() -> None:
    gate = StreamRecordingGate(RecordingMode.CONTINUOUS)
    stored = offer_all(gate, range(5))
    stored += gate.offer(chunk(5, after_discontinuity=True))  # the camera came back
    stored += gate.offer(chunk(6))
    assert [index_of(p) for p in stored] == list(range(7))
    assert [p.discontinuity for p in stored] == [True, False, False, False, False, True, False]
    assert gate.stats.buffered == 0


def test_relay_only_stores_nothing_whatever_arrives() -> None:
    gate = StreamRecordingGate(RecordingMode.RELAY_ONLY, pre_buffer_ns=5 * NS_PER_S)
    assert gate.manual_start(at(0)) == []
    assert gate.trigger(TriggerKind.MOTION, at(0)) == []
    assert offer_all(gate, range(10)) == []
    stats = gate.stats
    assert (stats.stored, stats.skipped, stats.buffered) == (0, 10, 0)
    assert stats.ignored_triggers == 2


def test_motion_flushes_the_pre_buffer_then_records_through_the_post_buffer() -> None:
    gate = StreamRecordingGate(
        RecordingMode.MOTION, pre_buffer_ns=3 * NS_PER_S, post_buffer_ns=2 * NS_PER_S
    )
    assert offer_all(gate, range(11)) == []  # chunks 0..10, nothing moves

    released = gate.trigger(TriggerKind.MOTION, at(10.5))
    # The window starts at 7.5 s: chunks 7..10 come out at once, in order.
    assert [index_of(p) for p in released] == [7, 8, 9, 10]
    assert [p.discontinuity for p in released] == [True, False, False, False]

    during = offer_all(gate, range(11, 14))
    assert [(index_of(p), p.discontinuity) for p in during] == [
        (11, False),
        (12, False),
        (13, False),
    ]

    gate.end_trigger(TriggerKind.MOTION, at(12.2))  # window ends at 14.2 s
    after = offer_all(gate, range(14, 20))
    assert [index_of(p) for p in after] == [14]

    # The next motion: chunks 15..16 were skipped, so the first stored one declares a gap.
    released = gate.trigger(TriggerKind.MOTION, at(20.0), at(20.5))
    assert [(index_of(p), p.discontinuity) for p in released] == [
        (17, True),
        (18, False),
        (19, False),
    ]
    assert [index_of(p) for p in offer_all(gate, range(20, 25))] == [20, 21, 22]


def test_a_late_trigger_still_finds_its_chunks() -> None:
    # Motion found by the worker 1.5 s after the frames it saw: the latency margin keeps them.
    gate = StreamRecordingGate(RecordingMode.MOTION, trigger_latency_ns=2 * NS_PER_S)
    offer_all(gate, range(10))  # chunks up to [9, 10)
    released = gate.trigger(TriggerKind.MOTION, at(8.5), at(8.6))
    assert [index_of(p) for p in released] == [8]
    assert offer_all(gate, range(10, 12)) == []


def test_the_pre_buffer_is_bounded_by_time_count_and_bytes() -> None:
    gate = StreamRecordingGate(
        RecordingMode.MOTION,
        pre_buffer_ns=5 * NS_PER_S,
        trigger_latency_ns=NS_PER_S,
        max_pre_buffer_chunks=100,
    )
    offer_all(gate, range(1000))
    assert gate.stats.buffered == 6  # the chunks ending within the last 6 s
    assert gate.stats.skipped == 994

    by_count = StreamRecordingGate(
        RecordingMode.MOTION, pre_buffer_ns=60 * NS_PER_S, max_pre_buffer_chunks=4
    )
    offer_all(by_count, range(50))
    assert by_count.stats.buffered == 4

    by_bytes = StreamRecordingGate(
        RecordingMode.MOTION, pre_buffer_ns=60 * NS_PER_S, max_pre_buffer_bytes=1000
    )
    for index in range(50):
        by_bytes.offer(chunk(index, size=300))
    assert by_bytes.stats.buffered == 3
    assert by_bytes.stats.buffered_bytes == 900


def test_event_mode_ignores_motion_and_honours_events_and_manual() -> None:
    gate = StreamRecordingGate(RecordingMode.EVENT, pre_buffer_ns=NS_PER_S, post_buffer_ns=NS_PER_S)
    offer_all(gate, range(5))
    assert gate.trigger(TriggerKind.MOTION, at(4.5)) == []
    assert gate.stats.ignored_triggers == 1
    # An instant event (a door contact) at 4.5 s: [3.5, 5.5).
    released = gate.trigger(TriggerKind.EVENT, at(4.5), at(4.5))
    assert [index_of(p) for p in released] == [3, 4]
    assert [index_of(p) for p in offer_all(gate, range(5, 8))] == [5]

    assert [index_of(p) for p in gate.manual_start(at(9.0))] == []  # nothing buffered overlaps
    stored = offer_all(gate, range(8, 12))
    assert [index_of(p) for p in stored] == [8, 9, 10, 11]
    assert stored[0].discontinuity  # 6 and 7 were skipped
    gate.manual_stop(at(12.0))
    assert [index_of(p) for p in offer_all(gate, range(12, 16))] == [12]


def test_triggers_from_separate_sources_are_tracked_apart() -> None:
    gate = StreamRecordingGate(RecordingMode.EVENT)
    gate.trigger(TriggerKind.EVENT, at(0), source="input1")
    gate.trigger(TriggerKind.EVENT, at(1), source="input2")
    gate.end_trigger(TriggerKind.EVENT, at(2), source="input1")
    stored = offer_all(gate, range(5))
    assert [index_of(p) for p in stored] == [0, 1, 2, 3, 4]  # input2 is still on
    gate.end_trigger(TriggerKind.EVENT, at(5), source="input2")
    assert offer_all(gate, range(5, 7)) == []


def test_ending_a_trigger_that_never_started_does_nothing() -> None:
    gate = StreamRecordingGate(RecordingMode.MOTION)
    gate.end_trigger(TriggerKind.MOTION, at(3))
    assert offer_all(gate, range(5)) == []


def test_schedule_mode_stores_chunks_overlapping_the_schedule() -> None:
    schedule = WeeklySchedule.parse("UTC", ["mon 00:00-00:05"])
    assert schedule.ranges[0].end_minute == 5
    gate = StreamRecordingGate(RecordingMode.SCHEDULE, schedule=schedule)
    stored: list[StoredChunkPlan] = []
    for index in range(290, 310):  # 4:50 .. 5:10 past midnight on Monday
        stored.extend(gate.offer(chunk(index)))
    assert [index_of(p) for p in stored] == list(range(290, 300))
    assert stored[0].discontinuity
    # Manual recording also works in schedule mode.
    gate.manual_start(at(400))
    assert [index_of(p) for p in gate.offer(chunk(400))] == [400]


def test_schedule_mode_needs_a_schedule() -> None:
    with pytest.raises(ValueError, match="needs a schedule"):
        StreamRecordingGate(RecordingMode.SCHEDULE)


def test_overlapping_triggers_merge_so_windows_stay_few() -> None:
    gate = StreamRecordingGate(RecordingMode.MOTION, post_buffer_ns=NS_PER_S, max_windows=4)
    for second in range(100):
        gate.trigger(TriggerKind.MOTION, at(second), at(second + 0.5))  # flapping motion
    stored = offer_all(gate, range(100))
    assert len(stored) == 100
    assert gate.stats.ignored_triggers == 0


# -- properties ------------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.booleans()),
        st.tuples(st.just("open"), st.floats(-5, 5)),
        st.tuples(st.just("close"), st.floats(-5, 5)),
        st.tuples(st.just("instant"), st.floats(-5, 5)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=operations,
    mode=st.sampled_from(list(RecordingMode)),
    pre_s=st.integers(0, 5),
    post_s=st.integers(0, 5),
)
def test_never_twice_always_in_order_and_gaps_declared(
    ops: list[tuple[str, object]], mode: RecordingMode, pre_s: int, post_s: int
) -> None:
    schedule = WeeklySchedule.parse("UTC", ["mon 00:00-00:01"])
    gate = StreamRecordingGate(
        mode,
        schedule=schedule,
        pre_buffer_ns=pre_s * NS_PER_S,
        post_buffer_ns=post_s * NS_PER_S,
        max_pre_buffer_chunks=8,
    )
    offered: list[CutChunk] = []
    stored: list[StoredChunkPlan] = []
    kind = TriggerKind.EVENT if mode is RecordingMode.EVENT else TriggerKind.MOTION
    for name, value in ops:
        now = len(offered)
        if name == "offer":
            cut = chunk(now, after_discontinuity=bool(value) or now == 0)
            offered.append(cut)
            stored.extend(gate.offer(cut))
        elif name == "open":
            assert isinstance(value, float)
            stored.extend(gate.trigger(kind, at(now + value)))
        elif name == "close":
            assert isinstance(value, float)
            gate.end_trigger(kind, at(now + value))
        else:
            assert isinstance(value, float)
            stored.extend(gate.trigger(kind, at(now + value), at(now + value)))

    indexes = [index_of(p) for p in stored]
    assert indexes == sorted(set(indexes))  # never twice, never out of order
    previous: int | None = None
    for plan, index in zip(stored, indexes, strict=True):
        expected_gap = (
            previous is None or previous != index - 1 or offered[index].after_discontinuity
        )
        assert plan.discontinuity == expected_gap
        assert plan.draft is offered[index].draft
        previous = index
    stats = gate.stats
    assert stats.buffered <= 8
    assert stats.stored + stats.skipped + stats.buffered == stats.offered == len(offered)
    if mode is RecordingMode.CONTINUOUS:
        assert len(stored) == len(offered)
    if mode is RecordingMode.RELAY_ONLY:
        assert stored == []
