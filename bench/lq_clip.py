"""A reference (LQ) stream encoded once: 320x180, 5 fps, about 120 kbit/s, H.264, a keyframe
every second, so a benchmark can replay the same packets for any number of cameras without
encoding anything while it measures.

The picture is FFmpeg's `testsrc2` (it moves, so every frame costs real bits). The encoder
runs in constant-bitrate mode like the agent's synthetic camera, with SPS/PPS in the codec's
extradata and repeated before every keyframe; packets are Annex B, time base 1/90000, no
B-frames. The clip's length is a whole number of GOPs, so it loops at a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
from av.codec.context import Flags
from av.video.frame import PictureType, VideoFrame

from shared.media import CodecConfig, MediaKind

TIME_BASE = Fraction(1, 90_000)


@dataclass(frozen=True, slots=True)
class ClipPacket:
    data: bytes
    keyframe: bool


@dataclass(frozen=True)
class LqClip:
    codec: CodecConfig
    packets: tuple[ClipPacket, ...]
    fps: int

    @property
    def frame_ticks(self) -> int:
        """One frame's duration in the time base."""
        return TIME_BASE.denominator // self.fps

    @property
    def bitrate_bps(self) -> float:
        """The clip's actual bit rate."""
        seconds = len(self.packets) / self.fps
        return sum(len(p.data) for p in self.packets) * 8 / seconds


def encode_lq_clip(
    *,
    seconds: int = 10,
    width: int = 320,
    height: int = 180,
    fps: int = 5,
    bitrate_bps: int = 120_000,
) -> LqClip:
    """Encode the clip (blocking, about a second)."""
    kbps = bitrate_bps // 1000
    context = av.CodecContext.create("libx264", "w")
    context.width = width
    context.height = height
    context.pix_fmt = "yuv420p"
    context.time_base = TIME_BASE
    context.framerate = Fraction(fps, 1)
    context.bit_rate = bitrate_bps
    context.gop_size = fps
    context.max_b_frames = 0
    context.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": (
            f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0"
            f":nal-hrd=cbr:vbv-maxrate={kbps}:vbv-bufsize={kbps}:repeat-headers=1"
        ),
    }
    context.flags |= Flags.global_header
    context.open()
    packets: list[ClipPacket] = []
    frames = seconds * fps
    source = av.open(f"testsrc2=size={width}x{height}:rate={fps}", format="lavfi")
    try:
        decoded = source.decode(video=0)
        for index in range(frames):
            frame: VideoFrame = next(decoded)
            frame.pts = index * (TIME_BASE.denominator // fps)
            frame.time_base = TIME_BASE
            frame.pict_type = PictureType.NONE  # let the encoder's GOP decide
            packets += [ClipPacket(bytes(p), p.is_keyframe) for p in context.encode(frame)]
        packets += [ClipPacket(bytes(p), p.is_keyframe) for p in context.encode(None)]
    finally:
        source.close()
    if len(packets) != frames or not packets[0].keyframe:
        raise RuntimeError(f"the encoder gave {len(packets)} packets for {frames} frames")
    codec = CodecConfig(
        MediaKind.VIDEO,
        "h264",
        TIME_BASE.numerator,
        TIME_BASE.denominator,
        width=width,
        height=height,
        extradata=bytes(context.extradata or b""),
    )
    return LqClip(codec, tuple(packets), fps)
