"""Playback of a device's recordings as fragmented MP4 pieces for a player.

The pieces follow the export's packet timing (`central/export/output_packets.py`, 90 kHz
from the first picture, gaps kept as jumps in time) but are cut for a player: an init
segment at the start and at every change of stream configuration (each LQ/HQ switch: the
picture size changes), one media segment per chunk, and a gap notice where nothing was
recorded. Which chunk plays each moment, and where it comes from (the central's store or
the site), is `central/held_first_playback.py`'s choice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from central.export.errors import ExportError
from central.export.output_packets import OUTPUT_TIME_BASE, output_packets
from central.export.quality_plan import PlanSegment
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
    """No video recorded in the range."""


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
