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
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from central.export.chunk_source import ChunkSource
from central.export.errors import ExportError
from central.export.exporter import authentic_chunk
from central.export.output_packets import OUTPUT_TIME_BASE, OutputPacket, output_packets
from central.export.quality_plan import HQ_STREAM, LQ_STREAM, PlanGap, PlanSegment, plan_playback
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
    metas = {
        (meta.header.stream, meta.seq): meta
        for stream in (LQ_STREAM, HQ_STREAM)
        for meta in source.chunk_metas(device_id, stream, start_ns, end_ns, site_id=site_id)
    }
    plan = plan_playback(
        lq=[m.header for (s, _), m in metas.items() if s == LQ_STREAM],
        hq=[m.header for (s, _), m in metas.items() if s == HQ_STREAM],
        start_ns=start_ns,
        end_ns=end_ns,
    )
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

    def chunks() -> Iterator[tuple[PlanSegment, SignedChunk]]:
        for segment in segments:
            meta = metas[(segment.stream, segment.seq)]
            yield segment, authentic_chunk(source, site_id, device_id, meta, public_key)

    writer: FragmentedMp4Writer | None = None
    run: list[OutputPacket] = []

    def flush() -> Iterator[PlaybackPiece]:
        nonlocal writer
        if not run:
            return
        first = run[0]
        segment = segments[first.segment_index]
        codec = _in_output_time(first.codec)
        if writer is None:
            writer = FragmentedMp4Writer(codec)
            yield PlaybackInit(writer.mime_type, writer.init_segment)
        elif first.config_change:
            init = writer.change_codec(codec)
            yield PlaybackInit(writer.mime_type, init)
        data = b"".join(f.data for f in writer.fragments(run))
        run.clear()
        if data:
            yield PlaybackMedia(data, segment.stream, segment.start_ns, segment.end_ns)

    for packet in output_packets(chunks(), origin_ns=origin_ns):
        if run and packet.segment_index != run[0].segment_index:
            yield from flush()
        if packet.packet_index == segments[packet.segment_index].first_packet:
            for gap in gaps_before.get(packet.segment_index, []):
                yield PlaybackGap(gap.start_ns, gap.end_ns, gap.declared)
        run.append(packet)
    yield from flush()
    for gap in waiting:
        yield PlaybackGap(gap.start_ns, gap.end_ns, gap.declared)


def _in_output_time(codec: CodecConfig) -> CodecConfig:
    """The codec with the output's time base: the packets' timestamps are in it."""
    return dataclasses.replace(
        codec,
        time_base_num=OUTPUT_TIME_BASE.numerator,
        time_base_den=OUTPUT_TIME_BASE.denominator,
    )
