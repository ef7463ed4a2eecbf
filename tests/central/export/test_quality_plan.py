"""The quality plan: HQ wherever it exists, gapless switches at keyframes, decode-order cuts.

The property test draws LQ and HQ streams with random GOP lengths, frame intervals, B-frame
reordering, holes, declared discontinuities and partial HQ availability, and checks the plan
against an independent characterisation of what it must show at every instant where
anything can change (every chunk boundary and the range's start).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.export.quality_plan import (
    HQ_STREAM,
    LQ_STREAM,
    PlanGap,
    PlanItem,
    PlanSegment,
    QualityPlan,
    decode_order_prefix,
    packet_instants_ns,
    plan_playback,
)
from shared.chunk import GENESIS_HASH, ChunkHeader, PacketEntry
from shared.media import CodecConfig, MediaKind

NS_PER_MS = 1_000_000
TICKS_PER_MS = 90
BASE_NS = 1_700_000_000_000_000_000
CODEC = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=320, height=180)


@dataclass(frozen=True)
class GopSpec:
    """One chunk to draw: the hole before it, its frames, their spacing, B-frames."""

    hole_ms: int
    frames: int
    interval_ms: int
    b_frames: bool
    declared: bool
    available: bool  # HQ only: whether the central holds it


def _decode_order(frames: int, b_frames: bool) -> list[int]:
    """Display indexes in decode order: I, then per group of three P(+2), B, B."""
    if not b_frames:
        return list(range(frames))
    order = [0]
    index = 1
    while index < frames:
        group = list(range(index, min(index + 3, frames)))
        order += [group[-1], *group[:-1]]
        index += 3
    return order


def chunk_header(stream: str, seq: int, start_ns: int, gop: GopSpec) -> ChunkHeader:
    ticks = gop.interval_ms * TICKS_PER_MS
    order = _decode_order(gop.frames, gop.b_frames)
    delay = 2 if gop.b_frames else 0
    packets = tuple(
        PacketEntry(
            pts=display * ticks,
            dts=(position - delay) * ticks,
            duration=ticks,
            keyframe=position == 0,
            size=10,
        )
        for position, display in enumerate(order)
    )
    return ChunkHeader(
        site_id="site-1",
        device_id="cam-1",
        stream=stream,
        seq=seq,
        start_ns=start_ns,
        end_ns=start_ns + gop.frames * gop.interval_ms * NS_PER_MS,
        discontinuity=gop.declared,
        codec=CODEC,
        packets=packets,
        payload_sha256=bytes(32),
        prev_chunk_hash=GENESIS_HASH,
    )


def stream_headers(stream: str, first_ns: int, gops: Sequence[GopSpec]) -> list[ChunkHeader]:
    headers = []
    cursor_ns = first_ns
    for seq, gop in enumerate(gops):
        cursor_ns += gop.hole_ms * NS_PER_MS
        header = chunk_header(stream, seq, cursor_ns, gop)
        cursor_ns = header.end_ns
        if gop.available:
            headers.append(header)
    return headers


gop_specs = st.builds(
    GopSpec,
    hole_ms=st.sampled_from([0, 0, 0, 0, 40, 700]),
    frames=st.integers(1, 7),
    interval_ms=st.sampled_from([40, 100, 125, 200]),
    b_frames=st.booleans(),
    declared=st.booleans(),
    available=st.booleans(),
)


# ---------------------------------------------------------------------------------------------
# An independent account of what the plan must show


def _covering(headers: Sequence[ChunkHeader], instant_ns: int) -> ChunkHeader | None:
    for header in headers:
        if header.start_ns <= instant_ns < header.end_ns:
            return header
    return None


def _overlapping(headers: Sequence[ChunkHeader], start_ns: int, end_ns: int) -> list[ChunkHeader]:
    return [h for h in headers if h.start_ns < end_ns and h.end_ns > start_ns]


def _run_end(hq: Sequence[ChunkHeader], chunk: ChunkHeader) -> tuple[int, int]:
    """Start and end of the run of back-to-back HQ chunks holding `chunk`."""
    index = hq.index(chunk)
    first = last = index
    while first > 0 and hq[first - 1].end_ns == hq[first].start_ns:
        first -= 1
    while last + 1 < len(hq) and hq[last].end_ns == hq[last + 1].start_ns:
        last += 1
    return hq[first].start_ns, hq[last].end_ns


def expected_at(
    lq: Sequence[ChunkHeader],
    hq: Sequence[ChunkHeader],
    instant_ns: int,
    end_ns: int,
) -> tuple[str, int] | None:
    """(stream, seq) the plan must show at `instant_ns`, or None for a gap."""
    hq_chunk = _covering(hq, instant_ns)
    lq_chunk = _covering(lq, instant_ns)
    if hq_chunk is not None:
        _, run_end_ns = _run_end(hq, hq_chunk)
        resume = _covering(lq, run_end_ns) if run_end_ns < end_ns else None
        # The one exception: the LQ GOP holding the end of the HQ run, from its keyframe.
        if resume is None or instant_ns < resume.start_ns:
            return HQ_STREAM, hq_chunk.seq
    if lq_chunk is not None:
        return LQ_STREAM, lq_chunk.seq
    return None


def item_at(plan: QualityPlan, instant_ns: int) -> PlanItem:
    starts = [item.start_ns for item in plan.items]
    index = bisect.bisect_right(starts, instant_ns) - 1
    assert index >= 0, f"nothing in the plan covers {instant_ns}"
    item = plan.items[index]
    assert item.start_ns <= instant_ns < item.end_ns
    return item


def check_plan(
    plan: QualityPlan,
    lq_all: Sequence[ChunkHeader],
    hq_all: Sequence[ChunkHeader],
) -> None:
    start_ns, end_ns = plan.start_ns, plan.end_ns
    lq = _overlapping(lq_all, start_ns, end_ns)
    hq = _overlapping(hq_all, start_ns, end_ns)
    by_key = {(h.stream, h.seq): h for h in [*lq, *hq]}
    items = plan.items
    assert items, "a plan always covers its range"

    # Tiling: no overlap, no hole, monotonic, from at or before the start to exactly the end.
    assert items[0].start_ns <= start_ns < items[0].end_ns
    assert items[-1].end_ns == end_ns
    for before, after in itertools.pairwise(items):
        assert before.end_ns == after.start_ns
        assert not (isinstance(before, PlanGap) and isinstance(after, PlanGap))
    for item in items:
        assert item.start_ns < item.end_ns
        if isinstance(item, PlanGap):
            assert item.start_ns >= start_ns

    # Segments: a chunk at most once; a keyframe start; a maximal decode-order prefix cut.
    used = [(s.stream, s.seq) for s in plan.segments]
    assert len(used) == len(set(used))
    for segment in plan.segments:
        header = by_key[(segment.stream, segment.seq)]
        assert segment.first_packet == 0
        assert header.packets[0].keyframe
        assert segment.start_ns == header.start_ns
        assert segment.end_ns <= header.end_ns
        instants = packet_instants_ns(header)
        kept = instants[: segment.last_packet + 1]
        if segment.end_ns < header.end_ns:
            assert all(instant < segment.end_ns for instant in kept)
            following = segment.last_packet + 1
            assert following == len(instants) or instants[following] >= segment.end_ns
        else:
            assert segment.last_packet == len(header.packets) - 1

    # Gaps are declared exactly when the chunk after them says so.
    for index, item in enumerate(items):
        if isinstance(item, PlanGap):
            after = items[index + 1] if index + 1 < len(items) else None
            declared = isinstance(after, PlanSegment) and (
                by_key[(after.stream, after.seq)].discontinuity
            )
            assert item.declared == declared

    # What is shown where: HQ wherever it exists (but one LQ GOP before each HQ->LQ
    # switch), else LQ, else a gap.
    critical = {start_ns} | {
        t for h in [*lq, *hq] for t in (h.start_ns, h.end_ns) if start_ns <= t < end_ns
    }
    for instant_ns in sorted(critical):
        item = item_at(plan, instant_ns)
        shown = (item.stream, item.seq) if isinstance(item, PlanSegment) else None
        assert shown == expected_at(lq, hq, instant_ns, end_ns), instant_ns


@settings(max_examples=300, deadline=None)
@given(
    lq_gops=st.lists(gop_specs, min_size=0, max_size=8),
    hq_gops=st.lists(gop_specs, min_size=0, max_size=10),
    hq_offset_ms=st.integers(-1500, 1500),
    range_start_ms=st.integers(-1000, 4000),
    range_length_ms=st.integers(1, 8000),
)
def test_plan_properties(
    lq_gops: list[GopSpec],
    hq_gops: list[GopSpec],
    hq_offset_ms: int,
    range_start_ms: int,
    range_length_ms: int,
) -> None:
    # The central holds every LQ chunk (LQ streams in as it is recorded); HQ only in part.
    lq = stream_headers(LQ_STREAM, BASE_NS, [replace(g, available=True) for g in lq_gops])
    hq = stream_headers(HQ_STREAM, BASE_NS + hq_offset_ms * NS_PER_MS, hq_gops)
    start_ns = BASE_NS + range_start_ms * NS_PER_MS
    end_ns = start_ns + range_length_ms * NS_PER_MS
    plan = plan_playback(lq=lq, hq=hq, start_ns=start_ns, end_ns=end_ns)
    check_plan(plan, lq, hq)


# ---------------------------------------------------------------------------------------------
# Worked examples


def _gop(frames: int = 10, interval_ms: int = 100, **changes: Any) -> GopSpec:
    return replace(GopSpec(0, frames, interval_ms, False, False, True), **changes)


def test_hq_in_the_middle_switches_at_keyframes_both_ways() -> None:
    # LQ GOPs of 1 s from 0; HQ GOPs of 1 s from 1.5 s to 4.5 s.
    lq = stream_headers(LQ_STREAM, BASE_NS, [_gop(5, 200)] * 6)
    hq = stream_headers(HQ_STREAM, BASE_NS + 1500 * NS_PER_MS, [_gop()] * 3)
    plan = plan_playback(
        lq=lq, hq=hq, start_ns=BASE_NS + 300 * NS_PER_MS, end_ns=BASE_NS + 5700 * NS_PER_MS
    )
    shown = [
        (s.stream, s.seq, (s.start_ns - BASE_NS) // NS_PER_MS, (s.end_ns - BASE_NS) // NS_PER_MS)
        for s in plan.segments
    ]
    assert shown == [
        ("lq", 0, 0, 1000),  # from the keyframe before the range's start
        ("lq", 1, 1000, 1500),  # LQ until HQ starts
        ("hq", 0, 1500, 2500),
        ("hq", 1, 2500, 3500),
        ("hq", 2, 3500, 4000),  # HQ cut at the last LQ keyframe before HQ ends (4.5 s)
        ("lq", 4, 4000, 5000),
        ("lq", 5, 5000, 5700),  # cut at the range's end
    ]
    assert not plan.gaps
    assert [s.packet_count for s in plan.segments] == [5, 3, 10, 10, 5, 5, 4]
    check_plan(plan, lq, hq)


def test_a_cut_keeps_the_decode_order_prefix_so_b_frames_keep_their_references() -> None:
    # Decode order I0 P3 B1 B2 P6 B4 B5 at 100 ms: cutting at 450 ms keeps I0 P3 B1 B2 only,
    # since P6 (600 ms) comes before B4 (400 ms) in decode order.
    header = chunk_header(HQ_STREAM, 0, BASE_NS, _gop(7, 100, b_frames=True))
    assert [(i - BASE_NS) // NS_PER_MS for i in packet_instants_ns(header)] == [
        0, 300, 100, 200, 600, 400, 500,
    ]  # fmt: skip
    assert decode_order_prefix(header, BASE_NS + 450 * NS_PER_MS) == 4
    assert decode_order_prefix(header, BASE_NS + 700 * NS_PER_MS) == 7
    assert decode_order_prefix(header, BASE_NS) == 0


def test_hq_inside_one_lq_gop_is_not_used() -> None:
    lq = stream_headers(LQ_STREAM, BASE_NS, [_gop(10, 100)] * 3)
    hq = stream_headers(HQ_STREAM, BASE_NS + 1200 * NS_PER_MS, [_gop(5, 100)])
    plan = plan_playback(lq=lq, hq=hq, start_ns=BASE_NS, end_ns=BASE_NS + 3 * 10**9)
    assert [s.stream for s in plan.segments] == ["lq", "lq", "lq"]
    check_plan(plan, lq, hq)


def test_gaps_are_explicit_and_declared_only_by_the_chunk_after_them() -> None:
    lq = stream_headers(
        LQ_STREAM,
        BASE_NS,
        [_gop(), _gop(hole_ms=700, declared=True), _gop(hole_ms=700)],
    )
    plan = plan_playback(lq=lq, hq=[], start_ns=BASE_NS, end_ns=BASE_NS + 5 * 10**9)
    gaps = [
        ((g.start_ns - BASE_NS) // NS_PER_MS, (g.end_ns - BASE_NS) // NS_PER_MS, g.declared)
        for g in plan.gaps
    ]
    assert gaps == [(1000, 1700, True), (2700, 3400, False), (4400, 5000, False)]
    check_plan(plan, lq, [])


def test_hq_plays_to_its_end_when_lq_does_not_go_on() -> None:
    lq = stream_headers(LQ_STREAM, BASE_NS, [_gop()])
    hq = stream_headers(HQ_STREAM, BASE_NS + 500 * NS_PER_MS, [_gop()])
    plan = plan_playback(lq=lq, hq=hq, start_ns=BASE_NS, end_ns=BASE_NS + 2 * 10**9)
    items = [
        (type(i).__name__, (i.start_ns - BASE_NS) // NS_PER_MS, (i.end_ns - BASE_NS) // NS_PER_MS)
        for i in plan.items
    ]
    assert items == [("PlanSegment", 0, 500), ("PlanSegment", 500, 1500), ("PlanGap", 1500, 2000)]
    check_plan(plan, lq, hq)


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        plan_playback(lq=[], hq=[], start_ns=BASE_NS, end_ns=BASE_NS)
