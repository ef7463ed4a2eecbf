"""Playback of a device's recordings as fragmented MP4 pieces, best quality per moment.

The same plan as an export (`central/export/quality_plan.py`: HQ wherever it was retrieved,
LQ elsewhere, switched at keyframes without a gap, chunks never modified) and the same
packet timing (`central/export/output_packets.py`, 90 kHz from the first picture, gaps kept
as jumps in time), but cut into pieces for a player: an init segment at the start and at
every change of stream configuration (each LQ/HQ switch: the picture size changes), one
media segment per chunk, and a gap notice where nothing was recorded. Every chunk is read
whole and checked against the site's key before any of it is played, as for an export.

`playback_pieces` is a blocking generator (it reads the store); the route takes its pieces
one at a time in a worker thread, so memory stays at one chunk and the pace is the client's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from dataclasses import dataclass

from central.export.chunk_source import ChunkSource
from central.export.errors import ExportError
from central.export.exporter import authentic_chunk, planned_range
from central.export.output_packets import OUTPUT_TIME_BASE, output_packets
from central.export.quality_plan import PlanGap, PlanSegment
from shared.chunk import SignedChunk
from shared.fragmented_mp4 import FragmentedMp4Writer
from shared.media import CodecConfig


@dataclass(frozen=True, slots=True)
class PlaybackInit:
    mime: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PlaybackMedia:
    data: bytes
    stream: str  # "lq" or "hq": the quality shown
    start_ns: int  # wall-clock instant of the segment's first picture
    end_ns: int


@dataclass(frozen=True, slots=True)
class PlaybackGap:
    start_ns: int
    end_ns: int
    declared: bool  # the site said it did not record (else something is missing)


PlaybackPiece = PlaybackInit | PlaybackMedia | PlaybackGap


class NothingToPlay(ExportError):
    """No video recorded in the range, at the central."""


def playback_pieces(
    source: ChunkSource,
    *,
    public_key: bytes,
    site_id: str,
    device_id: str,
    start_ns: int,
    end_ns: int,
) -> Generator[PlaybackPiece, None, None]:
    """The pieces of [start_ns, end_ns); `NothingToPlay` before the first piece when there
    is no video in the range, `ExportError` when a chunk is not authentic."""
    metas, plan = planned_range(source, site_id, device_id, start_ns, end_ns)
    origin_ns = plan.origin_ns
    if origin_ns is None:
        raise NothingToPlay(
            f"no video of {device_id} is recorded at the central between these instants"
        )
    segments = plan.segments
    gaps_before: dict[int, list[PlanGap]] = {}
    waiting: list[PlanGap] = []
    index = 0
    for item in plan.items:
        if isinstance(item, PlanGap):
            waiting.append(item)
        else:
            gaps_before[index] = waiting
            waiting = []
            index += 1

    writer = PlaybackWriter(origin_ns)
    for index, segment in enumerate(segments):
        for gap in gaps_before.get(index, []):
            yield PlaybackGap(gap.start_ns, gap.end_ns, gap.declared)
        meta = metas[(segment.stream, segment.seq)]
        chunk = authentic_chunk(source, site_id, device_id, meta, public_key)
        yield from writer.pieces(segment, chunk)
    for gap in waiting:
        yield PlaybackGap(gap.start_ns, gap.end_ns, gap.declared)


class PlaybackWriter:
    """Turns segments of checked chunks, in play order, into init and media pieces: a new
    init segment at the start and whenever the stream's configuration changes."""

    def __init__(self, origin_ns: int) -> None:
        self._origin_ns = origin_ns
        self._writer: FragmentedMp4Writer | None = None
        self._codec: CodecConfig | None = None

    def pieces(self, segment: PlanSegment, chunk: SignedChunk) -> list[PlaybackPiece]:
        packets = list(output_packets([(segment, chunk)], origin_ns=self._origin_ns))
        if not packets:
            return []
        out: list[PlaybackPiece] = []
        codec = chunk.header.codec
        if self._writer is None:
            self._writer = FragmentedMp4Writer(_in_output_time(codec))
            out.append(PlaybackInit(self._writer.mime_type, self._writer.init_segment))
        elif codec != self._codec:
            init = self._writer.change_codec(_in_output_time(codec))
            out.append(PlaybackInit(self._writer.mime_type, init))
        self._codec = codec
        data = b"".join(f.data for f in self._writer.fragments(packets))
        if data:
            out.append(PlaybackMedia(data, segment.stream, segment.start_ns, segment.end_ns))
        return out


def whole_chunk_segment(chunk: SignedChunk) -> PlanSegment:
    """A segment that plays all of a chunk."""
    header = chunk.header
    return PlanSegment(
        header.stream, header.seq, 0, len(header.packets) - 1, header.start_ns, header.end_ns
    )


def _in_output_time(codec: CodecConfig) -> CodecConfig:
    """The codec with the output's time base: the packets' timestamps are in it."""
    return dataclasses.replace(
        codec,
        time_base_num=OUTPUT_TIME_BASE.numerator,
        time_base_den=OUTPUT_TIME_BASE.denominator,
    )
