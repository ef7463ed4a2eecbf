"""Encoded media as it flows from a source to the recorder: codec configuration and packets.

Packets are never decoded or re-encoded on the recording path; they carry the camera's own
bytes, the source's timestamps (in `CodecConfig.time_base`) and the wall-clock instant the
recorder uses to place them on the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any


class MediaKind(StrEnum):
    """What a stream carries; each kind has its own chunk cut rule."""

    VIDEO = "video"
    AUDIO = "audio"
    METADATA = "metadata"  # timed records such as motion boxes
    EVENTS = "events"  # digital input/output state changes


RECORDS_CODEC = "siteline-records"
"""Codec name of metadata and event streams: each packet is one msgpack record."""


class MediaFormatError(ValueError):
    """A codec configuration or packet that does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class CodecConfig:
    """Everything a decoder or muxer needs to use a stream's packets."""

    kind: MediaKind
    codec: str  # FFmpeg codec name: h264, hevc, aac, pcm_s16le, or RECORDS_CODEC
    time_base_num: int
    time_base_den: int
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    extradata: bytes = b""

    @property
    def time_base(self) -> Fraction:
        return Fraction(self.time_base_num, self.time_base_den)

    def to_wire(self) -> list[Any]:
        """A msgpack-ready list in a fixed order (deterministic, so it can be signed)."""
        return [
            str(self.kind),
            self.codec,
            self.time_base_num,
            self.time_base_den,
            self.width,
            self.height,
            self.sample_rate,
            self.channels,
            self.extradata,
        ]

    @classmethod
    def from_wire(cls, value: object) -> CodecConfig:
        if not isinstance(value, list) or len(value) != 9:
            raise MediaFormatError("codec configuration must be a list of 9 fields")
        kind, codec, tb_num, tb_den, width, height, rate, channels, extradata = value
        if not isinstance(kind, str) or kind not in {k.value for k in MediaKind}:
            raise MediaFormatError(f"codec configuration has unknown media kind {kind!r}")
        if not isinstance(codec, str) or not codec:
            raise MediaFormatError("codec configuration has no codec name")
        ints = (tb_num, tb_den, width, height, rate, channels)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            raise MediaFormatError("codec configuration has a non-integer or negative field")
        if tb_num == 0 or tb_den == 0:
            raise MediaFormatError("codec configuration has a zero time base")
        if not isinstance(extradata, bytes):
            raise MediaFormatError("codec configuration extradata must be bytes")
        return cls(MediaKind(kind), codec, tb_num, tb_den, width, height, rate, channels, extradata)


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """One encoded packet of one stream of a device, placed on the wall clock."""

    stream: str  # "hq", "lq", "audio", "motion", "state"
    pts: int
    dts: int
    duration: int  # in the stream's time base; 0 when unknown
    keyframe: bool
    data: bytes
    wall_ns: int  # UTC instant of this packet's presentation time
