"""Fragmented MP4 from real encoder output, checked with ffprobe, PyAV and the boxes read back."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import pytest

from shared.decoder_configuration import decoder_configuration
from shared.fragmented_mp4 import (
    EncodedPacket,
    FragmentedMp4Writer,
    gop_segments,
    mime_type,
)
from shared.media import CodecConfig, MediaFormatError, MediaKind, MediaPacket
from shared.nal_units import BitstreamError, annexb_units, h264_unit_type
from tests.recording.h264_samples import Clip, encode, moving_box
from tests.shared.mp4_layout import (
    SAMPLE_IS_NON_SYNC,
    TFHD_DEFAULT_BASE_IS_MOOF,
    Box,
    base_decode_time,
    full_box_header,
    read_boxes,
    timescale,
    track_run,
)

FPS = 10
GOP = 10
FRAMES = 40


@pytest.fixture(scope="module")
def clip() -> Clip:
    return encode(moving_box(FRAMES), fps=FPS, gop=GOP)


def ffprobe(path: Path) -> dict[str, object]:
    """The video stream's fields as ffprobe reports them, frames counted by decoding."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,codec_tag_string,profile,level,width,height,nb_read_frames"
            ":format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == "", result.stderr
    report = json.loads(result.stdout)
    stream: dict[str, object] = report["streams"][0]
    stream["duration"] = float(report["format"]["duration"])
    return stream


def decoded_frames(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        return list(container.decode(video=0))


def raw_frames(codec: CodecConfig, packets: Iterable[EncodedPacket]) -> list[av.VideoFrame]:
    """The pictures a decoder makes from the packets themselves, for comparison."""
    decoder = av.CodecContext.create(codec.codec, "r")
    assert isinstance(decoder, av.VideoCodecContext)
    decoder.extradata = codec.extradata
    frames = []
    for packet in packets:
        av_packet = av.Packet(packet.data)
        av_packet.pts, av_packet.dts = packet.pts, packet.dts
        frames += decoder.decode(av_packet)
    return frames + decoder.decode(None)


def luma(frame: av.VideoFrame) -> bytes:
    plane = frame.planes[0]
    data = bytes(plane)
    return b"".join(
        data[row * plane.line_size : row * plane.line_size + frame.width]
        for row in range(frame.height)
    )


def fragments_of(data: bytes) -> tuple[list[Box], list[tuple[Box, Box]]]:
    """The init boxes (ftyp, moov) and the (moof, mdat) pairs after them."""
    boxes = read_boxes(data)
    assert [b.kind for b in boxes[:2]] == [b"ftyp", b"moov"]
    rest = boxes[2:]
    assert [b.kind for b in rest] == [b"moof", b"mdat"] * (len(rest) // 2)
    return boxes[:2], list(zip(rest[::2], rest[1::2], strict=True))


def written(writer: FragmentedMp4Writer, batches: Iterable[Sequence[EncodedPacket]]) -> bytes:
    out = [writer.init_segment]
    for batch in batches:
        out += [fragment.data for fragment in writer.fragments(batch)]
    return b"".join(out)


def annexb_file(codec: CodecConfig, packets: Iterable[EncodedPacket]) -> bytes:
    return codec.extradata + b"".join(packet.data for packet in packets)


def encode_hevc(frames: int, *, gop: int, bframes: int) -> Clip:
    """Real H.265 from libx265, with B-frames (so decode and presentation order differ)."""
    encoder = av.CodecContext.create("libx265", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 180, "yuv420p"
    encoder.time_base = Fraction(1, 90_000)
    encoder.framerate = Fraction(FPS, 1)
    encoder.options = {
        "preset": "ultrafast",
        "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
        ":log-level=error",
    }
    encoder.flags |= av.codec.context.Flags.global_header
    encoded = []
    for index in range(frames):
        frame = av.VideoFrame(320, 180, "yuv420p")
        for number, plane in enumerate(frame.planes):
            plane.update(
                bytes([(index * 9 + number * 40) % 256]) * (plane.line_size * plane.height)
            )
        frame.pts = index * 9000
        encoded += encoder.encode(frame)
    encoded += encoder.encode(None)
    codec = CodecConfig(
        MediaKind.VIDEO, "hevc", 1, 90_000, 320, 180, extradata=bytes(encoder.extradata or b"")
    )
    packets = [
        MediaPacket("hq", p.pts or 0, p.dts or 0, 9000, p.is_keyframe, bytes(p), 0) for p in encoded
    ]
    return Clip(codec, packets, FPS)


def reference_record(tmp_path: Path, clip: Clip, suffix: str, tag: str) -> bytes:
    """The avcC/hvcC record FFmpeg's own MP4 muxer builds from the raw bitstream."""
    raw = tmp_path / f"raw.{suffix}"
    raw.write_bytes(annexb_file(clip.codec, clip.packets))
    reference = tmp_path / "reference.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(raw),
            "-c",
            "copy",
            "-tag:v",
            tag,
            str(reference),
        ],
        check=True,
    )
    with av.open(str(reference)) as container:
        return bytes(container.streams.video[0].codec_context.extradata or b"")


# -- whole files ------------------------------------------------------------------------------


def test_one_gop_per_fragment_gives_a_file_ffprobe_reads_whole(tmp_path: Path, clip: Clip) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"".join(gop_segments(clip.codec, clip.packets)))
    report = ffprobe(path)
    assert report["codec_name"] == "h264"
    assert report["codec_tag_string"] == "avc1"
    assert (report["width"], report["height"]) == (clip.codec.width, clip.codec.height)
    assert report["nb_read_frames"] == str(FRAMES)
    assert report["duration"] == FRAMES / FPS


def test_every_frame_decodes_to_the_pictures_of_the_packets(clip: Clip) -> None:
    data = b"".join(gop_segments(clip.codec, clip.packets))
    frames = decoded_frames(data)
    expected = raw_frames(clip.codec, clip.packets)
    assert len(frames) == len(expected) == FRAMES
    assert [luma(f) for f in frames] == [luma(f) for f in expected]
    assert [f.key_frame for f in frames] == [i % GOP == 0 for i in range(FRAMES)]


def test_boxes_are_init_then_one_moof_mdat_pair_per_gop(clip: Clip) -> None:
    data = b"".join(gop_segments(clip.codec, clip.packets))
    (ftyp, moov), pairs = fragments_of(data)
    assert ftyp.data[:4] == b"iso5"
    assert not moov.has("edts")  # no edit list: presentation is what the samples say
    assert moov.has("trex")
    stsd = moov.child("trak/mdia/minf/stbl/stsd")
    [entry] = read_boxes(stsd.data[8:])  # after version, flags and the entry count
    assert entry.kind == b"avc1"
    assert [b.kind for b in read_boxes(entry.data[78:])] == [b"avcC"]  # after the fields
    assert len(pairs) == FRAMES // GOP
    next_decode_time = 0
    for moof, mdat in pairs:
        traf = moof.child("traf")
        _, tfhd_flags = full_box_header(traf.child("tfhd"))
        assert tfhd_flags & TFHD_DEFAULT_BASE_IS_MOOF
        run = track_run(traf.child("trun"))
        assert len(run.sizes) == GOP
        assert not run.flags[0] & SAMPLE_IS_NON_SYNC  # each fragment starts on a sync sample
        assert all(flags & SAMPLE_IS_NON_SYNC for flags in run.flags[1:])
        # default-base-is-moof: the data offset counts from the moof's first byte.
        assert run.data_offset == mdat.offset - moof.offset + 8
        assert sum(run.sizes) == len(mdat.data)
        assert base_decode_time(traf) == next_decode_time
        next_decode_time += sum(run.durations)
    assert next_decode_time == timescale(moov) * FRAMES // FPS


# -- joining, live batches, timing ------------------------------------------------------------


def test_a_viewer_joining_mid_gop_starts_at_the_next_keyframe(clip: Clip) -> None:
    writer = FragmentedMp4Writer(clip.codec)
    late = clip.packets[GOP + GOP // 2 :]
    data = written(writer, [late])
    assert writer.dropped_packets == GOP // 2
    frames = decoded_frames(data)
    assert len(frames) == FRAMES - 2 * GOP
    assert frames[0].key_frame
    from_keyframe = raw_frames(clip.codec, clip.packets[2 * GOP :])
    assert [luma(f) for f in frames] == [luma(f) for f in from_keyframe]
    _, pairs = fragments_of(data)
    assert base_decode_time(pairs[0][0].child("traf")) == 0


def test_small_live_batches_cut_fragments_at_keyframes(clip: Clip) -> None:
    writer = FragmentedMp4Writer(clip.codec)
    batches = [clip.packets[i : i + 3] for i in range(0, FRAMES, 3)]
    fragments = [fragment for batch in batches for fragment in writer.fragments(batch)]
    # A keyframe always opens a fragment; a batch end closes one.
    assert sum(f.keyframe for f in fragments) == FRAMES // GOP
    data = writer.init_segment + b"".join(f.data for f in fragments)
    _, pairs = fragments_of(data)
    for fragment, (moof, _) in zip(fragments, pairs, strict=True):
        run = track_run(moof.child("traf/trun"))
        assert fragment.keyframe == (not run.flags[0] & SAMPLE_IS_NON_SYNC)
        assert all(flags & SAMPLE_IS_NON_SYNC for flags in run.flags[1:])
    decode_times = [base_decode_time(moof.child("traf")) for moof, _ in pairs]
    assert decode_times == sorted(set(decode_times))
    assert len(decoded_frames(data)) == FRAMES


def test_decode_times_keep_increasing_when_the_input_starts_over(
    tmp_path: Path, clip: Clip
) -> None:
    """A camera restart sets its timestamps back to zero; the output does not go back."""
    writer = FragmentedMp4Writer(clip.codec)
    data = written(writer, [clip.packets, clip.packets])
    _, pairs = fragments_of(data)
    expected = 0
    for moof, _ in pairs:
        traf = moof.child("traf")
        assert base_decode_time(traf) == expected
        expected += sum(track_run(traf.child("trun")).durations)
    path = tmp_path / "twice.mp4"
    path.write_bytes(data)
    report = ffprobe(path)
    assert report["nb_read_frames"] == str(2 * FRAMES)
    assert report["duration"] == 2 * FRAMES / FPS


def test_a_codec_change_gives_a_new_init_segment_and_the_timeline_goes_on(clip: Clip) -> None:
    bigger = encode(moving_box(20), fps=FPS, gop=GOP, width=320, height=180)
    writer = FragmentedMp4Writer(clip.codec)
    first = written(writer, [clip.packets])
    init = writer.change_codec(bigger.codec)
    after = [f.data for f in writer.fragments(bigger.packets[3:])]  # resumes mid-GOP
    assert writer.dropped_packets == GOP - 3
    assert decoder_configuration(bigger.codec).record in init
    assert init != first[: len(init)]
    _, pairs = fragments_of(init + b"".join(after))
    assert base_decode_time(pairs[0][0].child("traf")) == timescale(read_boxes(init)[1]) * (
        FRAMES // FPS
    )
    frames = decoded_frames(init + b"".join(after))
    assert len(frames) == 20 - GOP
    assert {(f.width, f.height) for f in frames} == {(320, 180)}


# -- codecs and their configuration -----------------------------------------------------------


def test_the_mime_codec_string_comes_from_the_sps(tmp_path: Path, clip: Clip) -> None:
    [sps] = [u for u in annexb_units(clip.codec.extradata) if h264_unit_type(u) == 7]
    assert mime_type(clip.codec) == f'video/mp4; codecs="avc1.{sps[1:4].hex()}"'
    # An encoder told High profile, level 3.1, writes profile_idc 100 (0x64), no
    # constraint flags, level_idc 31 (0x1f).
    high = _encode_high_profile_level_31()
    assert mime_type(high.codec) == 'video/mp4; codecs="avc1.64001f"'
    path = tmp_path / "high.mp4"
    path.write_bytes(b"".join(gop_segments(high.codec, high.packets)))
    report = ffprobe(path)
    assert (report["profile"], report["level"]) == ("High", 31)
    assert decoder_configuration(high.codec).record == reference_record(
        tmp_path, high, "h264", "avc1"
    )


def test_hevc_with_b_frames(tmp_path: Path) -> None:
    hevc = encode_hevc(30, gop=GOP, bframes=2)
    assert any(p.pts != p.dts for p in hevc.packets)
    path = tmp_path / "hevc.mp4"
    path.write_bytes(b"".join(gop_segments(hevc.codec, hevc.packets)))
    report = ffprobe(path)
    assert (report["codec_name"], report["codec_tag_string"]) == ("hevc", "hvc1")
    assert (report["width"], report["height"]) == (320, 180)
    assert report["nb_read_frames"] == "30"
    assert report["duration"] == 30 / FPS
    # Main profile (1) is compatible with profiles 1 and 2: flags 0b110 = 6.
    assert mime_type(hevc.codec).startswith(f'video/mp4; codecs="hvc1.1.6.L{report["level"]}.')
    assert decoder_configuration(hevc.codec).record == reference_record(
        tmp_path, hevc, "hevc", "hvc1"
    )
    frames = decoded_frames(path.read_bytes())
    assert [luma(f) for f in frames] == [luma(f) for f in raw_frames(hevc.codec, hevc.packets)]


@pytest.mark.parametrize("length_size", [4, 2])
def test_mp4_style_input_with_an_avcc_record(tmp_path: Path, length_size: int) -> None:
    """A file source gives avcC extradata and length-prefixed packets; lengths of any size
    come out as four bytes."""
    source = tmp_path / "source.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=176x144:rate=10"),
            *("-t", "3", "-c:v", "libx264", "-profile:v", "high", "-g", "10", "-bf", "2"),
            str(source),
        ],
        check=True,
    )
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        avcc = bytes(stream.codec_context.extradata or b"")
        time_base = stream.time_base
        assert time_base is not None
        packets = [
            MediaPacket("hq", p.pts or 0, p.dts or 0, p.duration or 0, p.is_keyframe, bytes(p), 0)
            for p in container.demux(stream)
            if p.size
        ]
    assert avcc[0] == 1  # an avcC record...
    assert avcc[4] & 3 == 3  # ...with 4-byte lengths
    if length_size == 2:
        avcc = avcc[:4] + bytes([avcc[4] & 0xFC | 1]) + avcc[5:]
        packets = [_with_length_size(p, 2) for p in packets]
    codec = CodecConfig(
        MediaKind.VIDEO, "h264", time_base.numerator, time_base.denominator, extradata=avcc
    )
    assert decoder_configuration(codec).packet_length_size == length_size
    path = tmp_path / "out.mp4"
    path.write_bytes(b"".join(gop_segments(codec, packets)))
    report = ffprobe(path)
    assert (report["profile"], report["nb_read_frames"]) == ("High", "30")
    assert report["duration"] == 3.0


def test_what_cannot_be_carried_is_named() -> None:
    audio = CodecConfig(MediaKind.AUDIO, "aac", 1, 16_000, sample_rate=16_000, channels=1)
    with pytest.raises(MediaFormatError, match="audio codec 'aac' cannot go into"):
        FragmentedMp4Writer(audio)
    bare = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000)
    with pytest.raises(MediaFormatError, match="h264 extradata is empty"):
        FragmentedMp4Writer(bare)
    only_pps = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, extradata=b"\x00\x00\x01\x68\xce")
    with pytest.raises(BitstreamError, match="h264 extradata: no sequence parameter set"):
        FragmentedMp4Writer(only_pps)


def test_a_packet_that_is_not_annex_b_is_named_by_its_dts(clip: Clip) -> None:
    writer = FragmentedMp4Writer(clip.codec)
    broken = MediaPacket("lq", 900, 900, 9000, True, b"\x65\x88\x84", 0)
    with pytest.raises(BitstreamError, match=r"packet at dts 900: no Annex B start code"):
        writer.fragments([broken])


# -- helpers ----------------------------------------------------------------------------------


def _encode_high_profile_level_31() -> Clip:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 180, "yuv420p"
    encoder.time_base = Fraction(1, 90_000)
    encoder.framerate = Fraction(FPS, 1)
    # (ultrafast would leave out every High-profile tool and signal Baseline instead)
    encoder.options = {"preset": "veryfast", "profile": "high", "level": "3.1", "g": "10"}
    encoder.flags |= av.codec.context.Flags.global_header
    encoded = []
    for index in range(20):
        frame = av.VideoFrame(320, 180, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([index * 10 % 256]) * (plane.line_size * plane.height))
        frame.pts = index * 9000
        encoded += encoder.encode(frame)
    encoded += encoder.encode(None)
    codec = CodecConfig(
        MediaKind.VIDEO, "h264", 1, 90_000, 320, 180, extradata=bytes(encoder.extradata or b"")
    )
    packets = [
        MediaPacket("hq", p.pts or 0, p.dts or 0, 9000, p.is_keyframe, bytes(p), 0) for p in encoded
    ]
    return Clip(codec, packets, FPS)


def _with_length_size(packet: MediaPacket, size: int) -> MediaPacket:
    data, out, offset = packet.data, bytearray(), 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        out += length.to_bytes(size, "big") + data[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return MediaPacket(
        packet.stream, packet.pts, packet.dts, packet.duration, packet.keyframe, bytes(out), 0
    )
