"""Remuxing an export's packets into an MP4 or Matroska file with PyAV; nothing is
transcoded. A plain blocking function: the server calls it in a worker thread.

One video track. Its packets switch between streams whose parameter sets differ (HQ and LQ
differ in picture size), and the file must say so in a way the container allows:

- MP4: a sample entry of type `avc1`/`hvc1` must list the parameter sets its samples use, so
  the track gets one sample entry per configuration: each configuration change is muxed with
  the packet side data FFmpeg's MP4 muxer turns into a new sample entry (FFmpeg's
  `extract_extradata` filter derives it from the parameter sets the packet carries in band).
  The demuxer hands the new entry's parameter sets to the decoder at the switch.
- Matroska: a track has one CodecPrivate (the first configuration); later configurations
  are carried in band by the keyframes, which FFmpeg-based players decode.

In both, every segment's keyframe carries its parameter sets in band (see `output_packets`),
so a player that ignores sample entries, or seeks, still decodes cleanly. The track's first
configuration is taken from the first packet's in-band parameter sets, and its picture size
is the largest of the export, the size a player's window should have (ISO/IEC 14496-15
gives a sample entry's size as the maximum of its stream).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import av
from av.bitstream import BitStreamFilterContext
from av.stream import Stream

from central.export.errors import ExportError
from central.export.output_packets import OUTPUT_TIME_BASE, OutputPacket
from central.export.parameter_sets import SUPPORTED_CODECS, has_all_parameter_sets
from shared.clock import NS_PER_S


class ExportContainer(StrEnum):
    """The file formats an export can be written in."""

    MP4 = "mp4"
    MKV = "mkv"


_FORMAT_NAMES = {ExportContainer.MP4: "mp4", ExportContainer.MKV: "matroska"}
# MP4: the index (moov) at the front, so a player can start before the whole file is read.
_FORMAT_OPTIONS = {ExportContainer.MP4: {"movflags": "+faststart"}, ExportContainer.MKV: {}}


def write_media(
    packets: Iterable[OutputPacket],
    path: Path,
    container: ExportContainer,
    *,
    codec: str,
    width: int,
    height: int,
    recorded_ns: int,
) -> int:
    """Write `packets` (in file order) to `path`; return how many were written.

    `recorded_ns` (the wall-clock instant of time zero) becomes the file's creation time.
    Raises `ExportError` naming the packet when the muxer refuses it.
    """
    if codec not in SUPPORTED_CODECS:
        raise ExportError(f"codec {codec!r} cannot be exported (supported: h264, hevc)")
    written = 0
    try:
        with av.open(
            str(path), "w", format=_FORMAT_NAMES[container], options=_FORMAT_OPTIONS[container]
        ) as output:
            output.metadata["creation_time"] = _iso_time(recorded_ns)
            stream = output.add_mux_stream(codec, width=width, height=height)
            stream.time_base = OUTPUT_TIME_BASE
            new_configuration = (
                BitStreamFilterContext("extract_extradata", in_stream=stream)
                if container is ExportContainer.MP4
                else None
            )
            for packet in packets:
                _check(packet, codec, first=written == 0)
                av_packet = _av_packet(packet, stream)
                if new_configuration is not None and packet.config_change and written > 0:
                    av_packet = _with_new_configuration(new_configuration, av_packet, stream)
                output.mux(av_packet)
                written += 1
    except av.FFmpegError as exc:
        raise ExportError(f"{path}: the muxer refused packet {written}: {exc}") from exc
    if written == 0:
        raise ExportError(f"{path}: the plan holds no packets")
    return written


def _with_new_configuration(
    extractor: BitStreamFilterContext, packet: av.Packet[Stream], stream: Stream
) -> av.Packet[Stream]:
    """`packet` with the side data that makes the MP4 muxer start a new sample entry."""
    filtered = extractor.filter(packet)
    if len(filtered) != 1:
        raise ExportError(f"extracting parameter sets gave {len(filtered)} packets, not 1")
    result = filtered[0]
    result.stream = stream
    result.time_base = OUTPUT_TIME_BASE
    return result


def _check(packet: OutputPacket, codec: str, *, first: bool) -> None:
    where = f"packet {packet.packet_index} of segment {packet.segment_index}"
    if packet.codec.codec != codec:
        raise ExportError(
            f"{where} is {packet.codec.codec}, but the export's track is {codec}: one file "
            "cannot switch codecs"
        )
    if (first or packet.config_change) and not has_all_parameter_sets(packet.units, codec):
        raise ExportError(
            f"{where} starts a stream in the export but has no parameter sets, in band or in "
            "its codec configuration"
        )
    if packet.dts > packet.pts:
        raise ExportError(f"{where} would decode after it is shown (dts {packet.dts} > pts)")


def _av_packet(packet: OutputPacket, stream: Stream) -> av.Packet[Stream]:
    av_packet = av.Packet(packet.data)
    av_packet.stream = stream
    av_packet.time_base = OUTPUT_TIME_BASE
    av_packet.pts = packet.pts
    av_packet.dts = packet.dts
    av_packet.duration = packet.duration
    av_packet.is_keyframe = packet.keyframe
    return av_packet


def _iso_time(instant_ns: int) -> str:
    moment = datetime.fromtimestamp(instant_ns // NS_PER_S, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant_ns % NS_PER_S // 1000:06d}Z"
