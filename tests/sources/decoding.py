"""Decoding what a source produced, to prove the packets are real, usable media."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame

from shared.media import CodecConfig, MediaPacket


def _packet(media: MediaPacket, time_base: Fraction) -> av.Packet[Any]:
    packet = av.Packet(media.data)
    packet.pts = media.pts
    packet.dts = media.dts
    packet.time_base = time_base
    return packet


def decode_video(config: CodecConfig, packets: Iterable[MediaPacket]) -> list[VideoFrame]:
    """Every picture the packets decode to, with the stream's extradata as the decoder's."""
    context = av.CodecContext.create(config.codec, "r")
    assert isinstance(context, VideoCodecContext)
    context.extradata = config.extradata or None
    frames: list[VideoFrame] = []
    for media in packets:
        frames.extend(context.decode(_packet(media, config.time_base)))
    frames.extend(context.decode(None))
    return frames


def decode_audio(config: CodecConfig, packets: Iterable[MediaPacket]) -> list[AudioFrame]:
    """Every audio frame the packets decode to."""
    context = av.CodecContext.create(config.codec, "r")
    assert isinstance(context, AudioCodecContext)
    if config.extradata:
        context.extradata = config.extradata
    if config.sample_rate:
        context.sample_rate = config.sample_rate
        context.layout = "mono" if config.channels == 1 else "stereo"
    frames: list[AudioFrame] = []
    for media in packets:
        frames.extend(context.decode(_packet(media, config.time_base)))
    return frames


def luma(frame: VideoFrame) -> bytes:
    """The picture's luma samples, row after row, without the line padding."""
    plane = frame.planes[0]
    data = bytes(plane)
    width = frame.width
    return b"".join(
        data[row * plane.line_size : row * plane.line_size + width] for row in range(frame.height)
    )


def changed_pixels(before: VideoFrame, after: VideoFrame, *, threshold: int = 48) -> int:
    """How many luma samples differ by more than `threshold` (coding noise stays below)."""
    return sum(1 for a, b in zip(luma(before), luma(after), strict=True) if abs(a - b) > threshold)
