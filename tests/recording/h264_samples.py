"""Real H.264 test media: yuv420p frames drawn byte by byte, encoded with libx264 through PyAV.

Packets are placed on the wall clock as a camera source does: wall_ns = base + pts * time_base.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av

from shared.clock import NS_PER_S
from shared.media import CodecConfig, MediaKind, MediaPacket

BASE_NS = 1_700_000_000 * NS_PER_S
TIME_BASE_DEN = 90_000  # RTP's video clock, as a camera would send
WIDTH = 160
HEIGHT = 90


@dataclass(frozen=True)
class Box:
    """A filled rectangle in pixels."""

    x: int
    y: int
    width: int
    height: int
    luma: int = 230


@dataclass(frozen=True)
class Picture:
    """What one frame shows: a flat background, optionally a box."""

    background: int = 90
    box: Box | None = None


@dataclass(frozen=True)
class Clip:
    codec: CodecConfig
    packets: list[MediaPacket]
    fps: int


def luma_plane(picture: Picture, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    plane = bytearray([picture.background]) * (width * height)
    box = picture.box
    if box is not None:
        row = bytes([box.luma]) * box.width
        for y in range(box.y, box.y + box.height):
            plane[y * width + box.x : y * width + box.x + box.width] = row
    return bytes(plane)


def _frame(picture: Picture, width: int, height: int, pts: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    planes = frame.planes
    luma = luma_plane(picture, width, height)
    stride = planes[0].line_size
    if stride != width:  # pad each row to the plane's stride
        luma = b"".join(
            luma[r * width : (r + 1) * width] + bytes(stride - width) for r in range(height)
        )
    planes[0].update(luma)
    for chroma in planes[1:]:
        chroma.update(bytes([128]) * (chroma.line_size * chroma.height))
    frame.pts = pts
    return frame


def encode(
    pictures: Iterable[Picture],
    *,
    fps: int = 10,
    gop: int = 10,
    width: int = WIDTH,
    height: int = HEIGHT,
    stream: str = "lq",
    base_ns: int = BASE_NS,
) -> Clip:
    """Encode pictures at `fps` with a keyframe every `gop` frames and no B-frames."""
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, TIME_BASE_DEN)
    encoder.framerate = Fraction(fps, 1)
    encoder.gop_size = gop
    encoder.max_b_frames = 0
    encoder.thread_count = 1
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "bframes": "0",
        "keyint": str(gop),
        "min-keyint": str(gop),
        "scenecut": "0",
    }
    # Parameter sets go to the extradata, as a camera's SDP carries them: a chunk must then
    # decode with the codec configuration alone.
    encoder.flags |= av.codec.context.Flags.global_header
    ticks_per_frame = TIME_BASE_DEN // fps
    encoded = []
    for index, picture in enumerate(pictures):
        encoded.extend(encoder.encode(_frame(picture, width, height, index * ticks_per_frame)))
    encoded.extend(encoder.encode(None))
    codec = CodecConfig(
        kind=MediaKind.VIDEO,
        codec="h264",
        time_base_num=1,
        time_base_den=TIME_BASE_DEN,
        width=width,
        height=height,
        extradata=encoder.extradata or b"",
    )
    packets = []
    for encoded_packet in encoded:
        pts, dts = encoded_packet.pts, encoded_packet.dts
        assert pts is not None
        assert dts is not None
        packets.append(
            MediaPacket(
                stream=stream,
                pts=pts,
                dts=dts,
                duration=ticks_per_frame,
                keyframe=encoded_packet.is_keyframe,
                data=bytes(encoded_packet),
                wall_ns=base_ns + pts * NS_PER_S // TIME_BASE_DEN,
            )
        )
    return Clip(codec, packets, fps)


def decode_frame_count(codec: CodecConfig, packets: Sequence[MediaPacket]) -> int:
    """Frames a fresh decoder (given only the codec extradata) gets out of `packets`;
    raises if any packet fails to decode."""
    decoder = av.CodecContext.create(codec.codec, "r")
    assert isinstance(decoder, av.VideoCodecContext)
    decoder.extradata = codec.extradata
    count = 0
    for packet in packets:
        av_packet = av.Packet(packet.data)
        av_packet.pts = packet.pts
        av_packet.dts = packet.dts
        count += len(decoder.decode(av_packet))
    count += len(decoder.decode(None))
    return count


def static(count: int, background: int = 90) -> list[Picture]:
    return [Picture(background)] * count


def moving_box(count: int, *, step_px: int = 4, start_x: int = 10) -> list[Picture]:
    """A 24x24 box moving right `step_px` pixels per frame (bouncing at the edges)."""
    pictures = []
    span = WIDTH - 24 - start_x
    for index in range(count):
        offset = (index * step_px) % (2 * span)
        x = start_x + (offset if offset < span else 2 * span - offset)
        pictures.append(Picture(box=Box(x, 30, 24, 24)))
    return pictures
