"""Annex B parsing and avcC/hvcC conversion."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.sources.annexb import (
    START_CODE,
    BitstreamError,
    extradata_to_annexb,
    iter_nal_units,
    nal_type,
    parameter_sets,
)

SPS = bytes.fromhex("6742c00dda0a0f")
PPS = bytes.fromhex("68ce3c80")
IDR = bytes.fromhex("6588840012")


def test_nal_units_are_split_on_three_and_four_byte_start_codes() -> None:
    data = START_CODE + SPS + START_CODE + PPS + b"\x00\x00\x01" + IDR
    assert list(iter_nal_units(data)) == [SPS, PPS, IDR]
    assert [nal_type(unit, "h264") for unit in iter_nal_units(data)] == [7, 8, 5]


def test_parameter_sets_are_picked_out_of_a_keyframe() -> None:
    keyframe = START_CODE + bytes.fromhex("0605") + START_CODE + SPS + START_CODE + PPS
    keyframe += START_CODE + IDR
    assert parameter_sets(keyframe, "h264") == START_CODE + SPS + START_CODE + PPS
    assert parameter_sets(START_CODE + IDR, "h264") == b""
    assert parameter_sets(keyframe, "mjpeg") == b""


_NAL_BODIES = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"\x00\x00" not in b and not b.endswith(b"\x00") and b[0] != 0
)


@given(units=st.lists(_NAL_BODIES, min_size=1, max_size=8))
def test_splitting_inverts_joining(units: list[bytes]) -> None:
    assert list(iter_nal_units(b"".join(START_CODE + u for u in units))) == units


def test_avcc_from_a_real_mp4_converts_to_what_the_decoder_accepts(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for index in range(3):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([index * 40]) * plane.buffer_size)
            frame.pts, frame.time_base = index, Fraction(1, 10)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(path)) as clip:
        avcc = bytes(clip.streams.video[0].codec_context.extradata or b"")
    assert avcc[0] == 1  # an avcC record, not Annex B
    annexb = extradata_to_annexb(avcc, "h264")
    assert [nal_type(u, "h264") for u in iter_nal_units(annexb)] == [7, 8]
    assert extradata_to_annexb(annexb, "h264") == annexb


def test_hvcc_arrays_become_vps_sps_pps() -> None:
    vps, sps, pps = b"\x40\x01\xaa", b"\x42\x01\xbb", b"\x44\x01\xcc"
    record = bytes([1]) + bytes(21) + bytes([3])
    for unit in (vps, sps, pps):
        record += bytes([0x80 | nal_type(unit, "hevc")]) + (1).to_bytes(2, "big")
        record += len(unit).to_bytes(2, "big") + unit
    assert extradata_to_annexb(record, "hevc") == b"".join(START_CODE + u for u in (vps, sps, pps))


@pytest.mark.parametrize(
    ("record", "codec"),
    [
        (bytes([1, 0x42, 0, 0x1E, 0xFF, 0xE1, 0x00, 0x20, 0x67]), "h264"),  # SPS cut short
        (bytes([2, 0, 0, 0, 0, 0, 0]), "h264"),  # unknown version
        (bytes([1]) + bytes(21) + bytes([1, 0x20, 0, 1, 0, 9]), "hevc"),
    ],
)
def test_broken_records_are_refused(record: bytes, codec: str) -> None:
    with pytest.raises(BitstreamError):
        extradata_to_annexb(record, codec)
