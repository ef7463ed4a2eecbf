"""The timeline merged while scanning the cursor gives what `merge_spans` gives."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clock import NS_PER_S, ManualClock
from shared.signing import SiteSigner
from shared.store import ChunkStore, Span
from shared.store.timeline import SpanMerger, merge_spans, overlaps
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
S = NS_PER_S
TOLERANCES = st.sampled_from([0, 1, S // 2, S, 3 * S])

# Gaps after the previous chunk's end and chunk durations, around the join tolerances, with
# chunks that have no duration (end equals start) among them.
GAPS = st.sampled_from([0, 1, S // 2, S, S + 1, 3 * S, 10 * S])
DURATIONS = st.sampled_from([0, 1, S // 3, S, 2 * S])
LAYOUTS = st.lists(st.tuples(GAPS, DURATIONS, st.integers(1, 3)), min_size=0, max_size=12)


def place(layout: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(start_ns, end_ns, seq) of chunks laid out one after another."""
    placed = []
    end_ns, seq = T0_NS, -1
    for gap_ns, duration_ns, seq_step in layout:
        start_ns = end_ns + gap_ns
        if placed and placed[-1][0] == placed[-1][1] and gap_ns == 0:
            start_ns += 1  # a chunk without duration still occupies its start instant
        end_ns, seq = start_ns + duration_ns, seq + seq_step
        placed.append((start_ns, end_ns, seq))
    return placed


@settings(max_examples=60, deadline=None)
@given(layout=LAYOUTS, tolerance=TOLERANCES, data=st.data())
def test_streaming_timeline_equals_merge_spans(
    layout: list[tuple[int, int, int]], tolerance: int, data: st.DataObject
) -> None:
    placed = place(layout)
    # Query edges on, or one nanosecond beside, chunk edges as often as anywhere else.
    edges = [
        T0_NS,
        *(start for start, _end, _seq in placed),
        *(end for _start, end, _seq in placed),
    ]
    start_ns = data.draw(
        st.one_of(
            st.integers(T0_NS - 5 * S, T0_NS + 60 * S),
            st.builds(int.__add__, st.sampled_from(edges), st.sampled_from([-1, 0, 1])),
        ),
        label="start_ns",
    )
    end_ns = start_ns + data.draw(
        st.one_of(st.sampled_from([0, 1]), st.integers(0, 60 * S)), label="length_ns"
    )
    factory = ChunkFactory(SiteSigner.generate())
    chunks = [
        factory.make(start_ns=start, duration_ns=end - start, seq=seq, payload_size=64 + seq)
        for start, end, seq in placed
    ]
    # Streams registered just before and just after this one (their ids, and so their keys,
    # enclose its keys), so the scan must stop at its own stream's edges.
    before = [factory.make(start_ns=T0_NS + 2 * i * S, device_id="cam-0") for i in range(2)]
    after = [factory.make(start_ns=T0_NS + 2 * i * S, device_id="cam-2") for i in range(2)]
    with (
        tempfile.TemporaryDirectory() as work,
        ChunkStore.open(
            Path(work) / "store",
            quota_bytes=64 * MIB,
            hold_budget_bytes=0,
            clock=ManualClock(),
            home_site_id=SITE_ID,
        ) as store,
    ):
        for chunk in [*before, *chunks, *after]:
            store.put(chunk)

        streamed = store.timeline("cam-1", "lq", start_ns, end_ns, join_tolerance_ns=tolerance)

        metas = store.chunk_metas("cam-1", "lq", start_ns, end_ns)
        assert streamed == merge_spans(metas, tolerance)
    in_range = [
        c.header for c in chunks if overlaps(c.header.start_ns, c.header.end_ns, start_ns, end_ns)
    ]
    assert streamed == merge_spans(in_range, tolerance)


@settings(max_examples=200, deadline=None)
@given(layout=LAYOUTS, tolerance=TOLERANCES)
def test_span_merger_equals_merge_spans(layout: list[tuple[int, int, int]], tolerance: int) -> None:
    placed = place(layout)
    merger = SpanMerger(tolerance)
    expected: list[Span] = []
    headers = []
    for index, (start_ns, end_ns, seq) in enumerate(placed):
        merger.add(start_ns, end_ns, seq, index)
        headers.append(_Timed(start_ns, end_ns, seq, index))
        # The spans so far, at every step: reading them does not close the open span.
        expected = merge_spans(headers, tolerance)
        assert merger.spans() == expected
    assert merger.spans() == expected


def test_range_edges_inside_and_on_chunks(store: ChunkStore, factory: ChunkFactory) -> None:
    first, second = factory.run(2)  # [0, 2) and [2, 4) s after T0
    third = factory.make(start_ns=T0_NS + 10 * S)  # [10, 12) s
    for chunk in (first, second, third):
        store.put(chunk)

    def seqs(start_s: float, end_s: float) -> list[tuple[int, int]]:
        start_ns, end_ns = T0_NS + int(start_s * S), T0_NS + int(end_s * S)
        return [(s.first_seq, s.last_seq) for s in store.timeline("cam-1", "lq", start_ns, end_ns)]

    assert seqs(1, 1) == [(0, 0)]  # an empty range inside a chunk: the chunk before its start
    assert seqs(2, 2) == [(1, 1)]  # an empty range on a chunk's start: that chunk only
    assert seqs(3, 11) == [(1, 1), (2, 2)]  # reaching in from before, and a gap
    assert seqs(4, 10) == []  # touching both neighbours' edges, half-open
    assert seqs(12, 20) == []


def test_negative_tolerance_is_refused_even_for_an_unknown_stream(store: ChunkStore) -> None:
    with pytest.raises(ValueError, match="join tolerance must not be negative"):
        store.timeline("cam-9", "lq", 0, T0_NS, join_tolerance_ns=-1)


@dataclass(frozen=True, slots=True)
class _Timed:
    """A chunk as `merge_spans` sees it."""

    start_ns: int
    end_ns: int
    seq: int
    payload_size: int
