"""The packets of an export, in file order: which chunk bytes go out, with which timestamps
and which parameter sets. The writer follows this rule and the verifier re-derives it from
the evidence, so both agree on every packet without trusting each other.

Timestamps are in `OUTPUT_TIME_BASE` (90 kHz) and continuous from the first exported picture
(the plan's origin, time zero): a packet's presentation time is its chunk's start instant
relative to the origin, rounded once per chunk, plus its own presentation time relative to
the chunk's keyframe, so the camera's spacing of pictures inside a chunk is kept exactly.
Across a gap the timestamps jump by the gap, so the file's clock stays the wall clock's.
Decode timestamps follow the same rule, raised by a tick where needed to keep them strictly
increasing across a switch (the stream switched to may have a longer B-frame delay).
The last packet lasts until the end of the last segment, so players read the right duration.

Every segment starts at a chunk's keyframe, and that keyframe carries its parameter sets in
band: those it lacks are taken from the chunk's signed codec configuration (see
`parameter_sets`). Where the configuration changes (the first packet, and the first packet
of every chunk whose codec configuration differs from the previous chunk's, such as each
HQ/LQ switch) a decoder needs them to go on; elsewhere they make every keyframe a clean
seek point, whatever configuration the container declared first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

from central.export.parameter_sets import (
    annexb,
    has_all_parameter_sets,
    parameter_sets_in,
    with_parameter_sets,
)
from central.export.quality_plan import PlanSegment
from shared.chunk import ChunkHeader, SignedChunk
from shared.clock import NS_PER_S
from shared.media import CodecConfig
from shared.nal_units import annexb_units, configuration_units

OUTPUT_TIME_BASE = Fraction(1, 90_000)
_TICKS_PER_NS = Fraction(OUTPUT_TIME_BASE.denominator, OUTPUT_TIME_BASE.numerator * NS_PER_S)


@dataclass(frozen=True, slots=True)
class OutputPacket:
    """One packet as it goes into the file (timestamps in `OUTPUT_TIME_BASE`)."""

    segment_index: int  # position of its segment among the plan's segments
    packet_index: int  # position in its chunk, decode order
    units: tuple[bytes, ...]  # NAL units, without start codes
    pts: int
    dts: int
    duration: int
    keyframe: bool
    config_change: bool
    parameter_sets_added: bool
    codec: CodecConfig

    @property
    def data(self) -> bytes:
        """The packet as Annex B, the form the muxers take."""
        return annexb(self.units)


def ticks_of_ns(duration_ns: int) -> int:
    """A duration in nanoseconds as `OUTPUT_TIME_BASE` ticks (rounded)."""
    return round(duration_ns * _TICKS_PER_NS)


def output_packets(
    segments: Iterable[tuple[PlanSegment, SignedChunk]], *, origin_ns: int
) -> Iterator[OutputPacket]:
    """The packets of `segments` (each with its chunk, in plan order), timed from
    `origin_ns`. Raises `BitstreamError` when a packet is not Annex B."""
    previous_codec: CodecConfig | None = None
    previous_dts: int | None = None
    held: OutputPacket | None = None
    last_end_ns = origin_ns
    for segment_index, (segment, chunk) in enumerate(segments):
        header = chunk.header
        config_change = previous_codec is None or header.codec != previous_codec
        previous_codec = header.codec
        last_end_ns = segment.end_ns
        for timed in _segment_packets(segment_index, segment, header, chunk, origin_ns):
            packet = timed
            if packet.packet_index == segment.first_packet:
                packet = _with_parameter_sets(packet, config_change=config_change)
            if previous_dts is not None and packet.dts <= previous_dts:
                packet = replace(packet, dts=previous_dts + 1)
            previous_dts = packet.dts
            if held is not None:
                yield held
            held = packet
    if held is not None:
        end_ticks = ticks_of_ns(last_end_ns - origin_ns)
        if end_ticks > held.pts:
            held = replace(held, duration=end_ticks - held.pts)
        yield held


def _segment_packets(
    segment_index: int,
    segment: PlanSegment,
    header: ChunkHeader,
    chunk: SignedChunk,
    origin_ns: int,
) -> Iterator[OutputPacket]:
    codec = header.codec
    ticks_per_unit = Fraction(codec.time_base_num, codec.time_base_den) / OUTPUT_TIME_BASE
    base_ticks = ticks_of_ns(header.start_ns - origin_ns)
    keyframe_pts = header.packets[0].pts if header.packets else 0
    fallback_duration = _fallback_duration(header)
    for index, (entry, data) in enumerate(chunk.iter_packets()):
        if index < segment.first_packet:
            continue
        if index > segment.last_packet:
            break
        duration = round(entry.duration * ticks_per_unit) or fallback_duration
        yield OutputPacket(
            segment_index=segment_index,
            packet_index=index,
            units=tuple(annexb_units(data)),
            pts=base_ticks + round((entry.pts - keyframe_pts) * ticks_per_unit),
            dts=base_ticks + round((entry.dts - keyframe_pts) * ticks_per_unit),
            duration=duration,
            keyframe=entry.keyframe,
            config_change=False,
            parameter_sets_added=False,
            codec=codec,
        )


def _fallback_duration(header: ChunkHeader) -> int:
    """For packets of unknown duration: the chunk's length shared out evenly."""
    count = max(1, len(header.packets))
    return max(1, ticks_of_ns(header.end_ns - header.start_ns) // count)


def _with_parameter_sets(packet: OutputPacket, *, config_change: bool) -> OutputPacket:
    """A segment's first packet, with its parameter sets in band."""
    codec = packet.codec.codec
    if has_all_parameter_sets(packet.units, codec):
        return replace(packet, config_change=config_change)
    parameter_sets = parameter_sets_in(configuration_units(packet.codec.extradata, codec), codec)
    if not parameter_sets:  # nothing to add; at a configuration change the writer refuses it
        return replace(packet, config_change=config_change)
    units = with_parameter_sets(packet.units, parameter_sets, codec)
    return replace(packet, units=units, config_change=config_change, parameter_sets_added=True)
