"""Time ranges and timelines: overlap tests and merging chunks into spans with gaps between.

Ranges are half-open, [start_ns, end_ns). A chunk whose end equals its start (a single
picture with unknown duration) still occupies its start instant, so it is treated as lasting
one nanosecond; otherwise it could never overlap any query range.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from shared.clock import NS_PER_S

DEFAULT_JOIN_TOLERANCE_NS = NS_PER_S
"""Chunks closer than this join one span: recorders set end_ns to the last picture's time
when its duration is unknown, leaving a sub-frame hole that is not a recording gap."""


def overlaps(a_start_ns: int, a_end_ns: int, b_start_ns: int, b_end_ns: int) -> bool:
    """True when the two half-open ranges share an instant (empty ranges count as one ns)."""
    return a_start_ns < max(b_end_ns, b_start_ns + 1) and b_start_ns < max(a_end_ns, a_start_ns + 1)


class TimedChunk(Protocol):
    """What the timeline needs of a chunk."""

    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def payload_size(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive chunks of a stream with no gap longer than the join tolerance."""

    start_ns: int
    end_ns: int
    first_seq: int
    last_seq: int
    chunk_count: int
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch between two spans where the store holds nothing for the stream."""

    start_ns: int
    end_ns: int


def merge_spans(chunks: Iterable[TimedChunk], join_tolerance_ns: int) -> list[Span]:
    """Spans of `chunks` (given in start order); a gap > `join_tolerance_ns` starts a new one."""
    check_join_tolerance(join_tolerance_ns)
    spans: list[Span] = []
    current: Span | None = None
    for chunk in chunks:
        if current is not None and chunk.start_ns - current.end_ns <= join_tolerance_ns:
            current = Span(
                current.start_ns,
                max(current.end_ns, chunk.end_ns),
                current.first_seq,
                chunk.seq,
                current.chunk_count + 1,
                current.payload_bytes + chunk.payload_size,
            )
            continue
        if current is not None:
            spans.append(current)
        current = Span(chunk.start_ns, chunk.end_ns, chunk.seq, chunk.seq, 1, chunk.payload_size)
    if current is not None:
        spans.append(current)
    return spans


class SpanMerger:
    """`merge_spans` fed one chunk at a time as plain numbers, for a scan that never builds a
    chunk object: it holds the finished spans and the one still open, nothing per chunk.

    For the same chunks in the same (start) order its `spans()` equal `merge_spans`'s.
    """

    def __init__(self, join_tolerance_ns: int) -> None:
        check_join_tolerance(join_tolerance_ns)
        self._tolerance_ns = join_tolerance_ns
        self._done: list[Span] = []
        # The open span, as numbers; `_count == 0` while there is none.
        self._start_ns = self._end_ns = self._first_seq = self._last_seq = 0
        self._count = self._payload_bytes = 0

    def add(self, start_ns: int, end_ns: int, seq: int, payload_size: int) -> None:
        """The next chunk, in start order."""
        if self._count and start_ns - self._end_ns <= self._tolerance_ns:
            self._end_ns = max(self._end_ns, end_ns)
            self._last_seq = seq
            self._count += 1
            self._payload_bytes += payload_size
            return
        if self._count:
            self._done.append(self._open_span())
        self._start_ns, self._end_ns = start_ns, end_ns
        self._first_seq = self._last_seq = seq
        self._count, self._payload_bytes = 1, payload_size

    def spans(self) -> list[Span]:
        """The spans of every chunk added so far, the open one included."""
        return [*self._done, self._open_span()] if self._count else list(self._done)

    def _open_span(self) -> Span:
        return Span(
            self._start_ns,
            self._end_ns,
            self._first_seq,
            self._last_seq,
            self._count,
            self._payload_bytes,
        )


def check_join_tolerance(join_tolerance_ns: int) -> None:
    """`ValueError` for a negative join tolerance."""
    if join_tolerance_ns < 0:
        raise ValueError(f"join tolerance must not be negative ({join_tolerance_ns} ns)")


def gaps_between(spans: Iterable[Span]) -> list[Gap]:
    """The explicit gaps between consecutive spans."""
    gaps: list[Gap] = []
    previous: Span | None = None
    for span in spans:
        if previous is not None:
            gaps.append(Gap(previous.end_ns, span.start_ns))
        previous = span
    return gaps
