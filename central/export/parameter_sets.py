"""Parameter sets (H.264 SPS/PPS, H.265 VPS/SPS/PPS) as an export handles them: found in a
packet, taken from a stream's codec configuration, put in band before a picture.

An export switches between streams whose parameter sets differ (HQ and LQ have different
picture sizes). The picture where a stream starts must therefore carry its own parameter sets
in band, whatever the container's sample description says; chunks whose keyframes lack them
get the ones from their signed codec configuration, inserted just after the access unit
delimiter if there is one (where the standards place them).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.nal_units import (
    BitstreamError,
    h264_unit_type,
    hevc_unit_type,
    is_annexb,
)

SUPPORTED_CODECS = ("h264", "hevc")
_PARAMETER_SET_TYPES = {"h264": (7, 8), "hevc": (32, 33, 34)}  # in the order they go in band
_DELIMITER_TYPE = {"h264": 9, "hevc": 35}
_START_CODE = b"\x00\x00\x00\x01"


def unit_type(unit: bytes, codec: str) -> int:
    """The NAL unit type of `unit` for "h264" or "hevc"."""
    if not unit:
        raise BitstreamError("empty NAL unit")
    return hevc_unit_type(unit) if codec == "hevc" else h264_unit_type(unit)


def parameter_sets_in(units: Sequence[bytes], codec: str) -> tuple[bytes, ...]:
    """The parameter-set units among `units`, in their order."""
    wanted = _PARAMETER_SET_TYPES[codec]
    return tuple(u for u in units if u and unit_type(u, codec) in wanted)


def has_all_parameter_sets(units: Sequence[bytes], codec: str) -> bool:
    """True when `units` carry every kind of parameter set a decoder needs to start."""
    present = {unit_type(u, codec) for u in units if u}
    return all(kind in present for kind in _PARAMETER_SET_TYPES[codec])


def record_length_size(extradata: bytes, codec: str) -> int | None:
    """The NAL length size an avcC/hvcC record declares for the samples; None for Annex B
    (or no) configuration, whose samples carry start codes."""
    if not extradata or is_annexb(extradata):
        return None
    offset = 21 if codec == "hevc" else 4
    if len(extradata) <= offset or extradata[0] != 1:
        raise BitstreamError(f"{codec} configuration record is malformed")
    return (extradata[offset] & 3) + 1


def with_parameter_sets(
    units: Sequence[bytes], parameter_sets: Sequence[bytes], codec: str
) -> tuple[bytes, ...]:
    """`units` with `parameter_sets` inserted after a leading access unit delimiter."""
    at = 1 if units and unit_type(units[0], codec) == _DELIMITER_TYPE[codec] else 0
    return (*units[:at], *parameter_sets, *units[at:])


def annexb(units: Sequence[bytes]) -> bytes:
    """Units joined with four-byte start codes."""
    return b"".join(_START_CODE + unit for unit in units)
