"""Which stream plays each moment of an export: the best quality available, switched without a
gap and without transcoding; the stored chunks are never modified.

Theory of operation
-------------------
A device records two video streams: LQ continuously, reaching the central as it is recorded,
and HQ, which the central holds only where it was retrieved. A plan is an ordered list of
items that tile the requested range [start_ns, end_ns): *segments*, each a decode-order
prefix of one chunk, and explicit *gaps* where neither stream has a chunk.

Time. A packet's instant is its chunk's `start_ns` (the wall-clock instant of the chunk's
first packet, its keyframe) plus the packet's presentation time relative to that keyframe
(`packet_instants_ns`). Chunks of one stream do not overlap; a chunk covers
[start_ns, end_ns).

The switching rule:

1. HQ wherever HQ exists. HQ chunks that follow each other without a hole (one's `end_ns` is
   the next one's `start_ns`) form a *run*.
2. A segment of the stream switched TO always starts at one of its keyframes, i.e. at the
   start of a chunk: a decoder can start there with nothing before it.
3. The stream switched FROM is cut in decode order just before the switch instant t: the
   segment keeps the longest decode-order prefix of its chunk whose packets all have instants
   before t. A prefix in decode order never drops a picture that a kept picture references,
   so B-frames decode; a picture that would come after a dropped one is dropped too (its
   predecessor is then shown a little longer).
4. LQ to HQ: when an HQ run starts at t, LQ plays until t.
5. HQ to LQ: when an HQ run ends at t and LQ goes on, LQ resumes at its last keyframe at or
   before t (the start of the LQ chunk holding t) and HQ is cut there. LQ cannot resume at
   t itself, which is not an LQ keyframe, and resuming at the next keyframe would leave a
   hole. So at most one LQ GOP before each HQ-to-LQ switch is shown in LQ although HQ
   exists. If that keyframe is not after the run's start, the run is not used at all. When
   LQ does not go on at t, HQ plays to t.
6. The first segment starts at the keyframe at or before `start_ns` (an export may begin up
   to one GOP early); the last one is cut at `end_ns` by rule 3.
7. Where neither stream has a chunk, the plan holds a gap. A gap is *declared* when the
   chunk after it carries the signed `discontinuity` flag (the site says it did not record);
   otherwise something is missing, or the recording does not reach the end of the range.

Chunks that cannot start a segment are left out: ones whose first packet is not a keyframe,
ones that span no time, and ones overlapping an earlier chunk of their stream.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from shared.chunk import ChunkHeader
from shared.clock import NS_PER_S

HQ_STREAM = "hq"
LQ_STREAM = "lq"


@dataclass(frozen=True, slots=True)
class PlanSegment:
    """Packets `first_packet`..`last_packet` (inclusive, decode order) of chunk `seq` of
    `stream`, shown from `start_ns` (the chunk's keyframe) until `end_ns` (the chunk's end,
    or the instant it is cut at)."""

    stream: str
    seq: int
    first_packet: int
    last_packet: int
    start_ns: int
    end_ns: int

    @property
    def packet_count(self) -> int:
        return self.last_packet - self.first_packet + 1


@dataclass(frozen=True, slots=True)
class PlanGap:
    """[start_ns, end_ns) has no chunk of either stream; `declared` when the site said so."""

    start_ns: int
    end_ns: int
    declared: bool


PlanItem = PlanSegment | PlanGap


@dataclass(frozen=True, slots=True)
class QualityPlan:
    """The items tiling [start_ns, end_ns), in time order; the first may start earlier."""

    start_ns: int
    end_ns: int
    items: tuple[PlanItem, ...]

    @property
    def segments(self) -> tuple[PlanSegment, ...]:
        return tuple(item for item in self.items if isinstance(item, PlanSegment))

    @property
    def gaps(self) -> tuple[PlanGap, ...]:
        return tuple(item for item in self.items if isinstance(item, PlanGap))

    @property
    def origin_ns(self) -> int | None:
        """The instant of the first exported picture (time zero of the export), if any."""
        segments = self.segments
        return segments[0].start_ns if segments else None

    def duration_of(self, stream: str) -> int:
        """Nanoseconds of the plan shown from `stream`."""
        return sum(s.end_ns - s.start_ns for s in self.segments if s.stream == stream)


def packet_instants_ns(header: ChunkHeader) -> list[int]:
    """The wall-clock instant of each packet of the chunk, in decode order."""
    if not header.packets:
        return []
    first_pts = header.packets[0].pts
    ns_per_tick = Fraction(header.codec.time_base_num * NS_PER_S, header.codec.time_base_den)
    return [header.start_ns + round((p.pts - first_pts) * ns_per_tick) for p in header.packets]


def decode_order_prefix(header: ChunkHeader, cut_ns: int) -> int:
    """How many packets, from the first in decode order, all have instants before `cut_ns`."""
    count = 0
    for instant_ns in packet_instants_ns(header):
        if instant_ns >= cut_ns:
            break
        count += 1
    return count


def plan_playback(
    *,
    lq: Iterable[ChunkHeader],
    hq: Iterable[ChunkHeader],
    start_ns: int,
    end_ns: int,
) -> QualityPlan:
    """The plan for [start_ns, end_ns) from the headers of one device's LQ and HQ chunks
    (any order; chunks outside the range are ignored). See the module docstring."""
    if end_ns <= start_ns:
        raise ValueError(f"the range [{start_ns}, {end_ns}) is empty")
    lq_chunks = _usable(lq, start_ns, end_ns)
    hq_chunks = _usable(hq, start_ns, end_ns)
    pieces: list[_Piece] = []
    cursor_ns = start_ns
    for window in _hq_windows(hq_chunks, lq_chunks, start_ns, end_ns):
        _fill(pieces, lq_chunks, cursor_ns, window.start_ns)
        _fill(pieces, window.chunks, window.start_ns, window.end_ns)
        cursor_ns = window.end_ns
    _fill(pieces, lq_chunks, cursor_ns, end_ns)
    return QualityPlan(start_ns, end_ns, tuple(_items(pieces)))


# ---------------------------------------------------------------------------------------------
# Internals


@dataclass(frozen=True, slots=True)
class _Piece:
    """A segment (with its header) or a gap (header None), before gaps are judged."""

    header: ChunkHeader | None
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class _Window:
    """Where an HQ run is used: [start_ns, end_ns), with the run's chunks that start in it."""

    start_ns: int
    end_ns: int
    chunks: tuple[ChunkHeader, ...]


def _usable(headers: Iterable[ChunkHeader], start_ns: int, end_ns: int) -> list[ChunkHeader]:
    """The chunks that can start a segment and overlap the range, in time order."""
    candidates = sorted(
        (
            h
            for h in headers
            if h.packets
            and h.packets[0].keyframe
            and h.end_ns > h.start_ns
            and h.start_ns < end_ns
            and h.end_ns > start_ns
        ),
        key=lambda h: (h.start_ns, h.seq),
    )
    usable: list[ChunkHeader] = []
    for header in candidates:
        if usable and header.start_ns < usable[-1].end_ns:
            continue  # overlaps the chunk before it: not a well-formed stream listing
        usable.append(header)
    return usable


def _runs(chunks: Sequence[ChunkHeader]) -> Iterator[list[ChunkHeader]]:
    """Maximal lists of chunks that follow each other without a hole."""
    run: list[ChunkHeader] = []
    for chunk in chunks:
        if run and chunk.start_ns != run[-1].end_ns:
            yield run
            run = []
        run.append(chunk)
    if run:
        yield run


def _containing(chunks: Sequence[ChunkHeader], instant_ns: int) -> ChunkHeader | None:
    """The chunk covering `instant_ns`, if any (chunks sorted and not overlapping)."""
    index = bisect.bisect_right([c.start_ns for c in chunks], instant_ns) - 1
    if index >= 0 and chunks[index].end_ns > instant_ns:
        return chunks[index]
    return None


def _hq_windows(
    hq: Sequence[ChunkHeader], lq: Sequence[ChunkHeader], start_ns: int, end_ns: int
) -> Iterator[_Window]:
    for run in _runs(hq):
        run_start_ns, run_end_ns = run[0].start_ns, run[-1].end_ns
        if run_end_ns >= end_ns:
            window_end_ns = end_ns
        else:
            resume = _containing(lq, run_end_ns)
            window_end_ns = run_end_ns if resume is None else resume.start_ns
        if window_end_ns <= max(run_start_ns, start_ns):
            continue  # LQ covers the whole run from an earlier keyframe: HQ gains nothing
        chunks = tuple(c for c in run if c.start_ns < window_end_ns)
        yield _Window(run_start_ns, window_end_ns, chunks)


def _fill(pieces: list[_Piece], chunks: Sequence[ChunkHeader], from_ns: int, to_ns: int) -> None:
    """Cover [from_ns, to_ns) with `chunks` (cut at `to_ns`) and gaps between them."""
    if to_ns <= from_ns:
        return
    cursor_ns = from_ns
    for chunk in chunks:
        if chunk.end_ns <= from_ns or chunk.start_ns >= to_ns:
            continue
        if chunk.start_ns > cursor_ns:
            pieces.append(_Piece(None, cursor_ns, chunk.start_ns))
        cursor_ns = min(chunk.end_ns, to_ns)
        pieces.append(_Piece(chunk, chunk.start_ns, cursor_ns))
    if cursor_ns < to_ns:
        pieces.append(_Piece(None, cursor_ns, to_ns))


def _items(pieces: Sequence[_Piece]) -> Iterator[PlanItem]:
    for index, piece in enumerate(pieces):
        header = piece.header
        if header is None:
            following = pieces[index + 1].header if index + 1 < len(pieces) else None
            declared = following is not None and following.discontinuity
            yield PlanGap(piece.start_ns, piece.end_ns, declared)
            continue
        if piece.end_ns < header.end_ns:
            count = decode_order_prefix(header, piece.end_ns)
        else:
            count = len(header.packets)
        yield PlanSegment(header.stream, header.seq, 0, count - 1, piece.start_ns, piece.end_ns)
