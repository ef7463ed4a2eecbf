"""A camera made in-process, so demos and tests need no hardware.

Theory of operation. One FFmpeg filter graph (PyAV's `lavfi` input) draws a single scene,
colour bars that never change, plus, when motion is on, a solid box that sweeps across the
picture during the active part of each motion period and is absent otherwise. The graph
splits the scene into the hq output and a scaled, frame-rate-reduced lq output (same
scene, like a camera's main and sub profile) and, optionally, a sine tone. The lavfi input
returns frames of all outputs in timestamp order; a worker thread encodes each with
libx264 (AAC for audio), releases each packet when its time has come on the injected
clock (or at once when `realtime` is False), stamps it with a wall time and hands it over
through a bounded queue. The event loop only ever awaits that queue.

What comes out, per stream:

- "hq", "lq": H.264, Annex B packets, time base 1/90000, keyframe every `fps` frames (one
  second), no B-frames (dts == pts), SPS/PPS in `CodecConfig.extradata` (Annex B) and
  repeated in band before every keyframe. The encoder runs in constant-bitrate mode with
  filler data, so each stream really occupies about `bitrate_bps` even while the picture
  is static: storage and link tests see realistic volumes.
- "audio" (optional): AAC-LC mono 16 kHz, time base 1/16000, AudioSpecificConfig in
  extradata. The first packet is the encoder's priming frame (pts -1024).

The first packet of each video stream is a keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.codec.context import Flags
from av.container import InputContainer
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame

from agent.sources.base import (
    STREAM_AUDIO,
    STREAM_HQ,
    STREAM_LQ,
    SourceConfigError,
    SourceUnavailable,
)
from agent.sources.handoff import ThreadHandoff
from agent.sources.pacing import ThreadPacer
from agent.sources.timing import WallClockMapper
from agent.sources.worker_source import WorkerFedSource
from agent.sources.workers import (
    crash_reporter,
    reject_threadsafe,
    resolve_threadsafe,
)
from shared.clock import NS_PER_S, Clock
from shared.media import CodecConfig, MediaKind, MediaPacket

_log = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90_000)
AUDIO_SAMPLE_RATE = 16_000
AUDIO_BITRATE_BPS = 32_000
AUDIO_FRAME_SAMPLES = 1024  # one AAC frame
OPEN_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class VideoStreamSpec:
    """Size, frame rate and bit rate of one encoded video stream."""

    width: int
    height: int
    fps: int
    bitrate_bps: int

    def check(self, field: str) -> None:
        """Raise `SourceConfigError` naming `field` if a value is out of range."""
        for name, value in (("width", self.width), ("height", self.height)):
            if not (16 <= value <= 4096 and value % 2 == 0):
                raise SourceConfigError(
                    f"{field}.{name} must be an even number from 16 to 4096, not {value}"
                )
        if not 1 <= self.fps <= 60:
            raise SourceConfigError(f"{field}.fps must be from 1 to 60, not {self.fps}")
        if not 16_000 <= self.bitrate_bps <= 50_000_000:
            raise SourceConfigError(
                f"{field}.bitrate_bps must be from 16000 to 50000000, not {self.bitrate_bps}"
            )


@dataclass(frozen=True, slots=True)
class MotionSpec:
    """A box moves for `active_s` at the start of every `period_s`; otherwise no motion."""

    period_s: float = 30.0
    active_s: float = 10.0
    sweep_s: float = 4.0  # the box crosses the picture once in this time, then starts over

    def check(self, field: str) -> None:
        """Raise `SourceConfigError` naming `field` if the periods do not make sense."""
        if not 0 < self.active_s < self.period_s <= 86_400:
            raise SourceConfigError(
                f"{field}: need 0 < active_s < period_s <= 86400, "
                f"not active_s={self.active_s}, period_s={self.period_s}"
            )
        if not 0 < self.sweep_s <= 3_600:
            raise SourceConfigError(f"{field}.sweep_s must be from 0 to 3600, not {self.sweep_s}")


DEFAULT_HQ = VideoStreamSpec(width=1920, height=1080, fps=25, bitrate_bps=4_000_000)
DEFAULT_LQ = VideoStreamSpec(width=640, height=360, fps=8, bitrate_bps=250_000)


def scene_graph(
    hq: VideoStreamSpec, lq: VideoStreamSpec, *, audio: bool, motion: MotionSpec | None
) -> str:
    """The lavfi graph: outputs out0 (hq), out1 (lq) and, with audio, out2.

    Built only from validated numbers, never from free text.
    """
    scene = f"smptehdbars=size={hq.width}x{hq.height}:rate={hq.fps},format=yuv420p"
    if motion is not None:
        box_w = max(2, hq.width // 6 // 2 * 2)
        box_h = max(2, hq.height // 4 // 2 * 2)
        # overlay (unlike drawbox) evaluates its position per frame, with t in seconds.
        # Commas inside an expression are escaped in filter-graph syntax. A steady
        # left-to-right sweep makes every frame of an active period differ from the one
        # before (a back-and-forth path would repeat positions at its turns).
        x = f"(W-w)*mod(t/{motion.sweep_s:g}\\,1)"
        enable = f"lt(mod(t\\,{motion.period_s:g})\\,{motion.active_s:g})"
        scene = (
            f"{scene}[bars];color=c=white:size={box_w}x{box_h}:rate={hq.fps}[box];"
            f"[bars][box]overlay=x='{x}':y=H/3:enable='{enable}',format=yuv420p"
        )
    graph = (
        f"{scene},split[hq][lq];[hq]null[out0];"
        f"[lq]fps={lq.fps},scale={lq.width}:{lq.height},format=yuv420p[out1]"
    )
    if audio:
        graph += (
            f";sine=frequency=440:sample_rate={AUDIO_SAMPLE_RATE}"
            f":samples_per_frame={AUDIO_FRAME_SAMPLES}[out2]"
        )
    return graph


class SyntheticCamera(WorkerFedSource):
    """An in-process camera giving "hq", "lq" and optionally "audio" (see module doc)."""

    def __init__(
        self,
        *,
        clock: Clock,
        hq: VideoStreamSpec = DEFAULT_HQ,
        lq: VideoStreamSpec = DEFAULT_LQ,
        audio: bool = False,
        motion: MotionSpec | None = None,
        realtime: bool = True,
        name: str = "synthetic",
        max_queued_packets: int = 64,
        x264_preset: str = "ultrafast",
    ) -> None:
        hq.check("hq")
        lq.check("lq")
        if motion is not None:
            motion.check("motion")
        if x264_preset not in {"ultrafast", "superfast", "veryfast", "faster", "fast"}:
            raise SourceConfigError(f"x264_preset {x264_preset!r} is not a fast preset")
        if max_queued_packets < 1:
            raise SourceConfigError("max_queued_packets must be at least 1")
        self._clock = clock
        self._hq = hq
        self._lq = lq
        self._audio = audio
        self._motion = motion
        self._realtime = realtime
        self._name = name
        self._preset = x264_preset
        super().__init__(capacity=max_queued_packets, stop_timeout_s=STOP_TIMEOUT_S)

    def describe(self) -> str:
        """A log-safe description."""
        parts = [
            f"hq {self._hq.width}x{self._hq.height}@{self._hq.fps}",
            f"lq {self._lq.width}x{self._lq.height}@{self._lq.fps}",
        ]
        if self._audio:
            parts.append("audio")
        if self._motion is not None:
            parts.append(f"motion {self._motion.active_s:g}/{self._motion.period_s:g} s")
        return f"synthetic camera {self._name} ({', '.join(parts)})"

    async def open(self) -> Mapping[str, CodecConfig]:
        """Start the encoder thread; return the stream configurations once it runs."""
        loop, handoff, workers = self._start_workers(f"synthetic-{self._name}")
        configs: asyncio.Future[dict[str, CodecConfig]] = loop.create_future()
        stop = workers.stop_requested

        def produce() -> None:
            self._produce(loop, configs, handoff, stop)

        on_crash = crash_reporter(loop, configs, handoff.finish, self.describe())
        workers.start("encoder", produce, on_crash=on_crash)
        return await self._opened_within(
            configs, timeout_s=OPEN_TIMEOUT_S, problem="encoder did not start"
        )

    # --- worker thread -------------------------------------------------------------------

    def _produce(
        self,
        loop: asyncio.AbstractEventLoop,
        configs: asyncio.Future[dict[str, CodecConfig]],
        handoff: ThreadHandoff[MediaPacket],
        stop: threading.Event,
    ) -> None:
        try:
            graph = scene_graph(self._hq, self._lq, audio=self._audio, motion=self._motion)
            container = av.open(graph, format="lavfi")
        except (av.FFmpegError, OSError) as exc:
            reason = f"{self.describe()}: cannot build the scene ({exc})"
            reject_threadsafe(loop, configs, SourceUnavailable(reason))
            handoff.finish(reason)
            return
        try:
            encoders: dict[int, _Encoder] = {
                0: _VideoEncoder(STREAM_HQ, self._hq, self._preset),
                1: _VideoEncoder(STREAM_LQ, self._lq, self._preset),
            }
            if self._audio:
                encoders[2] = _AudioEncoder()
            resolve_threadsafe(loop, configs, {e.stream: e.config for e in encoders.values()})
            self._encode_forever(container, encoders, loop, handoff, stop)
        except (av.FFmpegError, OSError) as exc:
            reason = f"{self.describe()}: encoding failed ({exc})"
            reject_threadsafe(loop, configs, SourceUnavailable(reason))
            handoff.finish(reason)
        finally:
            container.close()

    def _encode_forever(
        self,
        container: InputContainer,
        encoders: Mapping[int, _Encoder],
        loop: asyncio.AbstractEventLoop,
        handoff: ThreadHandoff[MediaPacket],
        stop: threading.Event,
    ) -> None:
        mapper = WallClockMapper(self._clock, follow_clock=self._realtime)
        pacer = ThreadPacer(self._clock, stop) if self._realtime else None
        for raw in container.demux():
            if stop.is_set():
                return
            encoder = encoders.get(raw.stream.index)
            if encoder is None:
                continue
            for frame in raw.decode():
                for packet in encoder.encode(frame):
                    media_ns = round(packet.pts * encoder.time_base * NS_PER_S)
                    if pacer is not None and not pacer.wait_until(media_ns):
                        return
                    wall_ns = mapper.wall_ns(packet.pts, encoder.time_base)
                    if not handoff.put(_with_wall(packet, wall_ns)):
                        return
        handoff.finish(f"{self.describe()}: the scene ended")


def _with_wall(packet: MediaPacket, wall_ns: int) -> MediaPacket:
    return MediaPacket(
        packet.stream,
        packet.pts,
        packet.dts,
        packet.duration,
        packet.keyframe,
        packet.data,
        wall_ns,
    )


class _Encoder(ABC):
    """One output stream: turns the graph's frames into packets (wall_ns left at 0)."""

    stream: str
    config: CodecConfig
    time_base: Fraction

    @abstractmethod
    def encode(self, frame: object) -> list[MediaPacket]:
        """Packets for one frame of the graph's output (possibly none yet)."""


class _VideoEncoder(_Encoder):
    def __init__(self, stream: str, spec: VideoStreamSpec, preset: str) -> None:
        self.stream = stream
        self.time_base = VIDEO_TIME_BASE
        self._frame_ticks = VIDEO_TIME_BASE.denominator // spec.fps
        context = av.CodecContext.create("libx264", "w")
        context.width = spec.width
        context.height = spec.height
        context.pix_fmt = "yuv420p"
        context.time_base = VIDEO_TIME_BASE
        context.framerate = Fraction(spec.fps, 1)
        context.bit_rate = spec.bitrate_bps
        context.gop_size = spec.fps
        context.max_b_frames = 0
        kbps = spec.bitrate_bps // 1000
        context.options = {
            "preset": preset,
            "tune": "zerolatency",
            # A keyframe every second, never earlier on a scene cut; constant bit rate
            # with filler data (nal-hrd=cbr) so the stream has its nominal size.
            "x264-params": (
                f"keyint={spec.fps}:min-keyint={spec.fps}:scenecut=0:bframes=0"
                f":nal-hrd=cbr:vbv-maxrate={kbps}:vbv-bufsize={kbps}:repeat-headers=1"
            ),
        }
        # Global header: libx264 then puts SPS/PPS into extradata, which the recorder needs
        # to write MP4 (repeat-headers above keeps them in band for live viewers too).
        context.flags |= Flags.global_header
        context.open()
        self._context: VideoCodecContext = context
        self.config = CodecConfig(
            kind=MediaKind.VIDEO,
            codec="h264",
            time_base_num=VIDEO_TIME_BASE.numerator,
            time_base_den=VIDEO_TIME_BASE.denominator,
            width=spec.width,
            height=spec.height,
            extradata=bytes(context.extradata or b""),
        )

    def encode(self, frame: object) -> list[MediaPacket]:
        if not isinstance(frame, VideoFrame) or frame.pts is None or frame.time_base is None:
            return []
        frame.pts = round(frame.pts * frame.time_base / VIDEO_TIME_BASE)
        frame.time_base = VIDEO_TIME_BASE
        # FFmpeg's test sources mark every frame as an I picture, which libx264 obeys;
        # clear it so the encoder's own one-second GOP applies.
        frame.pict_type = PictureType.NONE
        return [
            MediaPacket(
                self.stream,
                packet.pts or 0,
                packet.dts if packet.dts is not None else packet.pts or 0,
                packet.duration or self._frame_ticks,
                packet.is_keyframe,
                bytes(packet),
                0,
            )
            for packet in self._context.encode(frame)
        ]


class _AudioEncoder(_Encoder):
    def __init__(self) -> None:
        self.stream = STREAM_AUDIO
        self.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        self._resampler = AudioResampler(format="fltp", layout="mono", rate=AUDIO_SAMPLE_RATE)
        context = av.CodecContext.create("aac", "w")
        context.sample_rate = AUDIO_SAMPLE_RATE
        context.layout = "mono"
        context.format = "fltp"
        context.time_base = self.time_base
        context.bit_rate = AUDIO_BITRATE_BPS
        context.flags |= Flags.global_header
        context.open()
        self._context: AudioCodecContext = context
        self.config = CodecConfig(
            kind=MediaKind.AUDIO,
            codec="aac",
            time_base_num=1,
            time_base_den=AUDIO_SAMPLE_RATE,
            sample_rate=AUDIO_SAMPLE_RATE,
            channels=1,
            extradata=bytes(context.extradata or b""),
        )

    def encode(self, frame: object) -> list[MediaPacket]:
        if not isinstance(frame, AudioFrame):
            return []
        packets: list[MediaPacket] = []
        for converted in self._resampler.resample(frame):
            for packet in self._context.encode(converted):
                pts = packet.pts or 0
                packets.append(
                    MediaPacket(
                        self.stream,
                        pts,
                        packet.dts if packet.dts is not None else pts,
                        packet.duration or AUDIO_FRAME_SAMPLES,
                        True,
                        bytes(packet),
                        0,
                    )
                )
        return packets
