"""What an MP4 video track says about an H.264 or H.265 stream, taken from its `CodecConfig`.

A stream's extradata holds its parameter sets either as Annex B (what every camera source of
the agent produces) or as the avcC/hvcC record an MP4 or Matroska file carries; its packets
are framed the same way (start codes, or lengths of the record's size). Either way the
track gets a freshly built record with 4-byte NAL lengths, so the muxer always writes one
sample framing. The picture size and the MIME codec string (RFC 6381, e.g. `avc1.64001f`,
`hvc1.1.6.L93.B0`) come from the sequence parameter set, the only authoritative source;
`CodecConfig.width` and `height` are not consulted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.media import CodecConfig, MediaFormatError, MediaKind
from shared.nal_units import (
    BitReader,
    BitstreamError,
    annexb_units,
    h264_unit_type,
    hevc_unit_type,
    is_annexb,
    rbsp,
)

H264_SPS, H264_PPS = 7, 8
HEVC_VPS, HEVC_SPS, HEVC_PPS = 32, 33, 34
TRACK_NAL_LENGTH_SIZE = 4
# Profiles whose SPS carries chroma format and bit depths (ITU-T H.264 7.3.2.1.1), and
# whose avcC record ends with them.
_H264_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_H264_RECORD_EXTENSION_PROFILES = frozenset({100, 110, 122, 244})
_PROFILE_SPACES = ("", "A", "B", "C")


@dataclass(frozen=True, slots=True)
class DecoderConfiguration:
    """A video track's sample entry: its type, configuration record, picture size and the
    codec string; and how the stream's packets frame their NAL units."""

    codec: str  # "h264" or "hevc"
    sample_entry: bytes  # b"avc1" or b"hvc1"
    record_box: bytes  # b"avcC" or b"hvcC"
    record: bytes  # the configuration record, with 4-byte NAL lengths
    width: int
    height: int
    codec_string: str
    packet_length_size: int | None  # None: packets are Annex B; else 1, 2 or 4

    @property
    def mime_type(self) -> str:
        """The type a browser's Media Source Extensions are asked about."""
        return f'video/mp4; codecs="{self.codec_string}"'


def decoder_configuration(codec: CodecConfig) -> DecoderConfiguration:
    """The configuration of an H.264 or H.265 stream; `MediaFormatError` naming what is
    missing or malformed otherwise."""
    if codec.kind is not MediaKind.VIDEO or codec.codec not in ("h264", "hevc"):
        raise MediaFormatError(
            f"{codec.kind} codec {codec.codec!r} cannot go into a fragmented MP4 video track "
            "(h264 and hevc can)"
        )
    extradata = codec.extradata
    if not extradata:
        raise MediaFormatError(
            f"{codec.codec} extradata is empty: the track needs the stream's parameter sets"
        )
    try:
        if codec.codec == "h264":
            return _h264(extradata)
        return _hevc(extradata)
    except BitstreamError as exc:
        raise BitstreamError(f"{codec.codec} extradata: {exc}") from None


# -- H.264 ----------------------------------------------------------------------------------


def _h264(extradata: bytes) -> DecoderConfiguration:
    length_size: int | None = None
    if is_annexb(extradata):
        units = annexb_units(extradata)
        sps = [u for u in units if h264_unit_type(u) == H264_SPS]
        pps = [u for u in units if h264_unit_type(u) == H264_PPS]
    else:
        length_size, sps, pps = _parse_avcc(extradata)
    if not sps:
        raise BitstreamError("no sequence parameter set (SPS)")
    if not pps:
        raise BitstreamError("no picture parameter set (PPS)")
    info = _parse_h264_sps(sps[0])
    record = bytearray(
        [1, info.profile_idc, info.constraint_flags, info.level_idc, 0xFC | 3, 0xE0 | len(sps)]
    )
    for unit in sps:
        record += _u16_prefixed(unit)
    record.append(len(pps))
    for unit in pps:
        record += _u16_prefixed(unit)
    if info.profile_idc in _H264_RECORD_EXTENSION_PROFILES:
        record += bytes(
            [
                0xFC | info.chroma_format_idc,
                0xF8 | info.bit_depth_luma_minus8,
                0xF8 | info.bit_depth_chroma_minus8,
                0,  # no SPS extensions
            ]
        )
    profile = f"{info.profile_idc:02x}{info.constraint_flags:02x}{info.level_idc:02x}"
    return DecoderConfiguration(
        "h264",
        b"avc1",
        b"avcC",
        bytes(record),
        info.width,
        info.height,
        f"avc1.{profile}",
        length_size,
    )


def _parse_avcc(record: bytes) -> tuple[int, list[bytes], list[bytes]]:
    # AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).
    if len(record) < 7 or record[0] != 1:
        raise BitstreamError("neither Annex B nor an avcC record (configuration version 1)")
    reader = _RecordReader(record, 4)
    length_size = (reader.byte() & 3) + 1
    if length_size == 3:
        raise BitstreamError("avcC record declares 3-byte NAL lengths")
    sps = [reader.unit() for _ in range(reader.byte() & 0x1F)]
    pps = [reader.unit() for _ in range(reader.byte())]
    return length_size, sps, pps


@dataclass(frozen=True, slots=True)
class _H264Sps:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma_minus8: int
    bit_depth_chroma_minus8: int
    width: int
    height: int


def _parse_h264_sps(unit: bytes) -> _H264Sps:
    """The fields of an SPS (ITU-T H.264 7.3.2.1.1) up to the picture size and cropping."""
    if len(unit) < 4:
        raise BitstreamError(f"SPS is {len(unit)} bytes, too short")
    bits = BitReader(rbsp(unit)[1:], "SPS")
    profile_idc, constraint_flags, level_idc = bits.bits(8), bits.bits(8), bits.bits(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_colour_plane, depth_luma, depth_chroma = 1, False, 0, 0
    if profile_idc in _H264_HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise BitstreamError(f"SPS has chroma_format_idc {chroma_format_idc}")
        if chroma_format_idc == 3:
            separate_colour_plane = bits.flag()
        depth_luma, depth_chroma = bits.ue(), bits.ue()
        if depth_luma > 6 or depth_chroma > 6:
            raise BitstreamError("SPS has a bit depth over 14")
        bits.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.flag():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if bits.flag():
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.skip(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(bits.ue()):  # num_ref_frames_in_pic_order_cnt_cycle
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.flag()
    if not frame_mbs_only:
        bits.skip(1)  # mb_adaptive_frame_field_flag
    bits.skip(1)  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if bits.flag():  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
    field_factor = 1 if frame_mbs_only else 2
    # Cropping is counted in chroma samples (7.4.2.1.1): CropUnitX/Y.
    if separate_colour_plane or chroma_format_idc == 0:
        unit_x, unit_y = 1, field_factor
    else:
        unit_x = 2 if chroma_format_idc in (1, 2) else 1
        unit_y = (2 if chroma_format_idc == 1 else 1) * field_factor
    width = width_mbs * 16 - unit_x * (crop_left + crop_right)
    height = height_map_units * 16 * field_factor - unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise BitstreamError(f"SPS gives a picture of {width}x{height}")
    return _H264Sps(
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc,
        depth_luma,
        depth_chroma,
        width,
        height,
    )


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    last, next_scale = 8, 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale if next_scale != 0 else last


# -- H.265 ----------------------------------------------------------------------------------


def _hevc(extradata: bytes) -> DecoderConfiguration:
    length_size: int | None = None
    if is_annexb(extradata):
        units = annexb_units(extradata)
    else:
        length_size, units = _parse_hvcc(extradata)
    by_type: dict[int, list[bytes]] = {HEVC_VPS: [], HEVC_SPS: [], HEVC_PPS: []}
    for unit in units:
        if len(unit) >= 2 and hevc_unit_type(unit) in by_type:
            by_type[hevc_unit_type(unit)].append(unit)
    for unit_type, name in ((HEVC_VPS, "VPS"), (HEVC_SPS, "SPS"), (HEVC_PPS, "PPS")):
        if not by_type[unit_type]:
            raise BitstreamError(f"no {name}")
    info = _parse_hevc_sps(by_type[HEVC_SPS][0])
    record = bytearray()
    record += bytes([1, info.general_byte])
    record += info.compatibility_flags.to_bytes(4, "big")
    record += info.constraint_flags.to_bytes(6, "big")
    record.append(info.level_idc)
    record += struct.pack(">H", 0xF000)  # min_spatial_segmentation_idc: unknown
    record.append(0xFC)  # parallelismType: unknown
    record.append(0xFC | info.chroma_format_idc)
    record.append(0xF8 | info.bit_depth_luma_minus8)
    record.append(0xF8 | info.bit_depth_chroma_minus8)
    record += struct.pack(">H", 0)  # avgFrameRate: unknown
    record.append((info.sub_layers << 3) | (info.temporal_id_nested << 2) | 3)
    record.append(3)  # arrays: VPS, SPS, PPS
    for unit_type in (HEVC_VPS, HEVC_SPS, HEVC_PPS):
        record.append(0x80 | unit_type)  # array_completeness: all of them are here
        record += struct.pack(">H", len(by_type[unit_type]))
        for unit in by_type[unit_type]:
            record += _u16_prefixed(unit)
    return DecoderConfiguration(
        "hevc",
        b"hvc1",
        b"hvcC",
        bytes(record),
        info.width,
        info.height,
        _hevc_codec_string(info),
        length_size,
    )


def _parse_hvcc(record: bytes) -> tuple[int, list[bytes]]:
    # HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1): 22 bytes, then the arrays.
    if len(record) < 23 or record[0] != 1:
        raise BitstreamError("neither Annex B nor an hvcC record (configuration version 1)")
    length_size = (record[21] & 3) + 1
    if length_size == 3:
        raise BitstreamError("hvcC record declares 3-byte NAL lengths")
    reader = _RecordReader(record, 22)
    units: list[bytes] = []
    for _ in range(reader.byte()):
        reader.byte()  # array_completeness, NAL_unit_type
        units += [reader.unit() for _ in range(reader.u16())]
    return length_size, units


@dataclass(frozen=True, slots=True)
class _HevcSps:
    general_byte: int  # profile_space (2 bits), tier_flag (1), profile_idc (5)
    compatibility_flags: int  # 32 bits, flag 0 first
    constraint_flags: int  # 48 bits
    level_idc: int
    sub_layers: int
    temporal_id_nested: int
    chroma_format_idc: int
    bit_depth_luma_minus8: int
    bit_depth_chroma_minus8: int
    width: int
    height: int


def _parse_hevc_sps(unit: bytes) -> _HevcSps:
    """The fields of an SPS (ITU-T H.265 7.3.2.2.1) up to the bit depths."""
    bits = BitReader(rbsp(unit)[2:], "SPS")
    bits.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.bits(3)
    temporal_id_nested = bits.bits(1)
    # profile_tier_level(1, sps_max_sub_layers_minus1), 7.3.3
    general_byte = bits.bits(8)
    compatibility_flags = bits.bits(32)
    constraint_flags = bits.bits(48)
    level_idc = bits.bits(8)
    present = [(bits.flag(), bits.flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        bits.skip((88 if profile_present else 0) + (8 if level_present else 0))
    bits.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = bits.ue()
    if chroma_format_idc > 3:
        raise BitstreamError(f"SPS has chroma_format_idc {chroma_format_idc}")
    separate_colour_plane = chroma_format_idc == 3 and bits.flag()
    width, height = bits.ue(), bits.ue()
    if bits.flag():  # conformance_window_flag; offsets in chroma samples
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        chroma = 0 if separate_colour_plane else chroma_format_idc
        unit_x = 2 if chroma in (1, 2) else 1
        unit_y = 2 if chroma == 1 else 1
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    depth_luma, depth_chroma = bits.ue(), bits.ue()
    if depth_luma > 8 or depth_chroma > 8:
        raise BitstreamError("SPS has a bit depth over 16")
    if width <= 0 or height <= 0:
        raise BitstreamError(f"SPS gives a picture of {width}x{height}")
    return _HevcSps(
        general_byte,
        compatibility_flags,
        constraint_flags,
        level_idc,
        max_sub_layers_minus1 + 1,
        temporal_id_nested,
        chroma_format_idc,
        depth_luma,
        depth_chroma,
        width,
        height,
    )


def _hevc_codec_string(info: _HevcSps) -> str:
    # ISO/IEC 14496-15 Annex E: profile space letter and profile; the compatibility flags
    # with flag 0 as the lowest bit, in hex; tier and level; the constraint bytes in hex,
    # trailing zero bytes left out.
    space = _PROFILE_SPACES[info.general_byte >> 6]
    tier = "H" if info.general_byte & 0x20 else "L"
    profile = info.general_byte & 0x1F
    compatibility = int(f"{info.compatibility_flags:032b}"[::-1], 2)
    constraints = list(info.constraint_flags.to_bytes(6, "big"))
    while constraints and constraints[-1] == 0:
        constraints.pop()
    parts = [f"hvc1.{space}{profile}", f"{compatibility:X}", f"{tier}{info.level_idc}"]
    parts += [f"{byte:X}" for byte in constraints]
    return ".".join(parts)


# -- records --------------------------------------------------------------------------------


def _u16_prefixed(unit: bytes) -> bytes:
    if len(unit) > 0xFFFF:
        raise BitstreamError(f"parameter set of {len(unit)} bytes does not fit a record")
    return struct.pack(">H", len(unit)) + unit


class _RecordReader:
    """Bounds-checked reads over a configuration record."""

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self._offset = offset

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise BitstreamError(f"configuration record is cut off at byte {len(self._data)}")
        piece = self._data[self._offset : end]
        self._offset = end
        return piece

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def unit(self) -> bytes:
        unit = self.take(self.u16())
        if not unit:
            raise BitstreamError("configuration record holds an empty parameter set")
        return unit
