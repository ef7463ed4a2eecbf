"""The ISO base media file format boxes of a one-track fragmented MP4 video stream.

An init segment is `ftyp` + `moov` with an empty sample table and `mvex`, so every sample
lives in fragments. A media segment is `moof` + `mdat`: the `tfhd` sets
default-base-is-moof (the `trun` data offset counts from the `moof`, which is what Media
Source Extensions require), `tfdt` gives the first sample's decode time, and `trun` lists
each sample's duration, size, flags and composition offset (signed: version 1). There are no
edit lists; presentation starts at the first sample's composition time.

Pure serialization: callers decide timing and cutting (`shared/fragmented_mp4.py`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from shared.decoder_configuration import DecoderConfiguration

TRACK_ID = 1
MOVIE_TIMESCALE = 1000
SAMPLE_FLAGS_SYNC = 0x02000000  # depends on no other sample
SAMPLE_FLAGS_NON_SYNC = 0x01010000  # depends on others; not a sync sample
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800  # offset, per-sample fields
_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_MAX_U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FragmentSample:
    """One sample of a media segment, in the track's timescale."""

    duration: int
    sync: bool
    composition_offset: int  # presentation minus decode time
    data: bytes  # the sample: NAL units behind 4-byte lengths


def box(kind: bytes, *payload: bytes) -> bytes:
    size = 8 + sum(len(part) for part in payload)
    return struct.pack(">I4s", size, kind) + b"".join(payload)


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def init_segment(config: DecoderConfiguration, timescale: int) -> bytes:
    """`ftyp` + `moov` for one video track with this configuration and timescale."""
    if not 0 < timescale <= _MAX_U32:
        raise ValueError(f"timescale {timescale} does not fit 32 bits")
    ftyp = box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5", b"iso6", b"mp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),  # times, timescale, duration
        struct.pack(">IH10x", 0x10000, 0x100),  # rate 1.0, volume 1.0
        _UNITY_MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", TRACK_ID + 1),  # next_track_ID
    )
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, TRACK_ID, 0, 0),  # times, track, reserved, duration
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate group, volume, reserved
        _UNITY_MATRIX,
        struct.pack(">II", config.width << 16, config.height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _language("und"), 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"Video\x00")
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _visual_sample_entry(config)),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    mdia = box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl))
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, 0, 0, 0))
    moov = box(b"moov", mvhd, box(b"trak", tkhd, mdia), box(b"mvex", trex))
    return ftyp + moov


def media_segment(
    sequence_number: int,
    base_decode_time: int,
    samples: Sequence[FragmentSample],
) -> bytes:
    """`moof` + `mdat` of consecutive samples of the track."""
    count = len(samples)
    if count == 0:
        raise ValueError("a fragment needs at least one sample")
    fields: list[int] = []
    for sample in samples:
        fields += (
            sample.duration,
            len(sample.data),
            SAMPLE_FLAGS_SYNC if sample.sync else SAMPLE_FLAGS_NON_SYNC,
            sample.composition_offset,
        )
    # moof header 8 + mfhd 16 + traf header 8 + tfhd 16 + tfdt 20 + trun 20 + 16 per sample
    moof_size = 88 + 16 * count
    trun = full_box(
        b"trun",
        1,
        _TRUN_FLAGS,
        struct.pack(">Ii", count, moof_size + 8),  # data offset: past moof and mdat header
        struct.pack(">" + "IIIi" * count, *fields),
    )
    traf = box(
        b"traf",
        full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", TRACK_ID)),
        full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time)),
        trun,
    )
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number)), traf)
    if len(moof) != moof_size:
        raise AssertionError(f"moof is {len(moof)} bytes, expected {moof_size}")
    payload_size = sum(len(sample.data) for sample in samples)
    if payload_size > _MAX_U32 - 8:
        raise ValueError(f"a fragment of {payload_size} bytes does not fit one mdat")
    mdat_header = struct.pack(">I4s", 8 + payload_size, b"mdat")
    return b"".join([moof, mdat_header, *(sample.data for sample in samples)])


def _visual_sample_entry(config: DecoderConfiguration) -> bytes:
    return box(
        config.sample_entry,
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved
        struct.pack(">HH", config.width, config.height),
        struct.pack(">II", 0x480000, 0x480000),  # 72 dpi
        struct.pack(">IH", 0, 1),  # reserved, frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),  # depth, pre_defined
        box(config.record_box, config.record),
    )


def _language(code: str) -> int:
    """ISO 639-2/T code packed as three 5-bit letters."""
    value = 0
    for letter in code:
        value = (value << 5) | (ord(letter) - 0x60)
    return value
