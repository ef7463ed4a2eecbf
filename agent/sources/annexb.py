"""H.264/H.265 byte-stream (Annex B) helpers shared by the camera sources.

Every source in this package hands out video the same way, so the recorder has one case to
handle: packets are Annex B (NAL units behind 00 00 01 / 00 00 00 01 start codes), and a
stream's `CodecConfig.extradata` holds its parameter sets (SPS/PPS, plus VPS for H.265),
also Annex B. FFmpeg's MP4/Matroska muxers accept that form and write avcC/hvcC
themselves. Files stored as length-prefixed samples (MP4) are converted with FFmpeg's
`*_mp4toannexb` bitstream filters; their avcC/hvcC extradata is converted here.
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.nal_units import BitstreamError, configuration_units

__all__ = [
    "BitstreamError",
    "extradata_to_annexb",
    "is_annexb",
    "iter_nal_units",
    "nal_type",
    "parameter_sets",
]

START_CODE = b"\x00\x00\x00\x01"

H264_SPS = 7
H264_PPS = 8
H264_IDR = 5
HEVC_VPS = 32
HEVC_SPS = 33
HEVC_PPS = 34


def iter_nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B buffer, without their start codes."""
    starts: list[tuple[int, int]] = []  # (start code offset, payload offset)
    index = data.find(b"\x00\x00\x01")
    while index >= 0:
        code_at = index - 1 if index > 0 and data[index - 1] == 0 else index
        starts.append((code_at, index + 3))
        index = data.find(b"\x00\x00\x01", index + 3)
    for position, (_code_at, payload_at) in enumerate(starts):
        end = starts[position + 1][0] if position + 1 < len(starts) else len(data)
        unit = data[payload_at:end]
        if unit:
            yield unit


def nal_type(unit: bytes, codec: str) -> int:
    """The NAL unit type of `unit` for codec "h264" or "hevc"."""
    if not unit:
        raise BitstreamError("empty NAL unit")
    if codec == "hevc":
        return (unit[0] >> 1) & 0x3F
    return unit[0] & 0x1F


def parameter_sets(data: bytes, codec: str) -> bytes:
    """The parameter-set NAL units found in an Annex B access unit, as Annex B.

    Returns b"" when the access unit carries none (or the codec has no such notion).
    """
    wanted = {"h264": {H264_SPS, H264_PPS}, "hevc": {HEVC_VPS, HEVC_SPS, HEVC_PPS}}.get(codec)
    if wanted is None:
        return b""
    found = [unit for unit in iter_nal_units(data) if nal_type(unit, codec) in wanted]
    return b"".join(START_CODE + unit for unit in found)


def is_annexb(extradata: bytes) -> bool:
    """True when `extradata` already starts with a start code."""
    return extradata.startswith(b"\x00\x00\x01") or extradata.startswith(START_CODE)


def extradata_to_annexb(extradata: bytes, codec: str) -> bytes:
    """Convert avcC (H.264) or hvcC (H.265) extradata to Annex B; pass Annex B through."""
    if not extradata or is_annexb(extradata) or codec not in ("h264", "hevc"):
        return extradata
    return b"".join(START_CODE + unit for unit in configuration_units(extradata, codec))
