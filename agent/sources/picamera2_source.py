"""The Raspberry Pi camera, encoded by the Pi's hardware H.264 encoder through picamera2.

The camera is configured with two outputs of the same sensor frames: "main" at the hq size
and "lores" at the lq size. An H.264 encoder is started on each (`start_encoder(...,
name="main")` / `name="lores"`), with a one-second keyframe period (`iperiod` = fps) and
the parameter sets repeated before every keyframe (`repeat=True`). picamera2 calls the
`outputframe(frame, keyframe, timestamp)` method of each encoder's `Output` on the
encoder's own thread with one encoded frame (Annex B, as the hardware writes it) and the
sensor timestamp in microseconds; this source turns those calls into packets.

Per stream ("hq", "lq"): H.264 Annex B, time base 1/1000000 (the sensor timestamp), no
B-frames (dts == pts), SPS/PPS taken from the first keyframe into `extradata`. Delivery
starts at the first keyframe. Both outputs run at the sensor frame rate, so the lq spec's
fps must equal the hq spec's. No audio.

The encoder thread must never wait on us: if the queue is full (the recorder stalls) the
frame is dropped, and so is every frame up to the next keyframe, so the stream never
carries a frame whose reference is missing.

picamera2 is imported only inside `open` (through `api_loader`), so this module loads on
machines without it; tests pass a loader that returns a fake with the same API.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol, TypeVar

from agent.sources.annexb import parameter_sets
from agent.sources.base import STREAM_HQ, STREAM_LQ, SourceConfigError, SourceUnavailable
from agent.sources.handoff import ThreadHandoff
from agent.sources.synthetic import VideoStreamSpec
from agent.sources.timing import WallClockMapper
from agent.sources.worker_source import WorkerFedSource
from agent.sources.workers import (
    crash_reporter,
    reject_threadsafe,
    resolve_threadsafe,
)
from shared.clock import Clock
from shared.media import CodecConfig, MediaKind, MediaPacket

T = TypeVar("T")

_log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1_000_000)  # picamera2 timestamps are microseconds
_OUTPUT_NAMES = {STREAM_HQ: "main", STREAM_LQ: "lores"}
_US_PER_S = 1_000_000

DEFAULT_PI_HQ = VideoStreamSpec(width=1920, height=1080, fps=25, bitrate_bps=4_000_000)
DEFAULT_PI_LQ = VideoStreamSpec(width=640, height=360, fps=25, bitrate_bps=300_000)


class CameraDevice(Protocol):
    """The calls this source makes on a `picamera2.Picamera2` object."""

    def create_video_configuration(self, *args: Any, **kwargs: Any) -> Any: ...
    def configure(self, camera_config: Any) -> None: ...
    def camera_configuration(self) -> Any: ...
    def start_encoder(
        self,
        encoder: Any = None,
        output: Any = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def stop_encoder(self, encoders: Any = None) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Picamera2Api:
    """The parts of the picamera2 library this source uses."""

    camera_factory: Callable[[int], CameraDevice]  # picamera2.Picamera2(camera_num)
    h264_encoder: Callable[..., Any]  # picamera2.encoders.H264Encoder
    output_base: type  # picamera2.outputs.Output: encoders accept only its subclasses


def load_picamera2_api() -> Picamera2Api:
    """Import picamera2 (on a Pi); `SourceConfigError` where it is not installed."""
    try:
        picamera2 = importlib.import_module("picamera2")
        encoders = importlib.import_module("picamera2.encoders")
        outputs = importlib.import_module("picamera2.outputs")
    except ImportError as exc:
        raise SourceConfigError(
            f"the picamera2 library is not available on this machine ({exc.name})"
        ) from None
    return Picamera2Api(
        camera_factory=picamera2.Picamera2,
        h264_encoder=encoders.H264Encoder,
        output_base=outputs.Output,
    )


class Picamera2Camera(WorkerFedSource):
    """The Pi camera's main output as "hq" and its lores output as "lq" (see module doc)."""

    def __init__(
        self,
        *,
        clock: Clock,
        camera_num: int = 0,
        hq: VideoStreamSpec = DEFAULT_PI_HQ,
        lq: VideoStreamSpec = DEFAULT_PI_LQ,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        max_queued_packets: int = 128,
        api_loader: Callable[[], Picamera2Api] = load_picamera2_api,
    ) -> None:
        hq.check("hq")
        lq.check("lq")
        if lq.fps != hq.fps:
            raise SourceConfigError(
                f"lq.fps must equal hq.fps ({hq.fps}): the lores output runs at the "
                "sensor frame rate"
            )
        if lq.width > hq.width or lq.height > hq.height:
            raise SourceConfigError("lq must not be larger than hq: lores is the smaller output")
        if open_timeout_s <= 0 or read_timeout_s <= 0 or max_queued_packets < 1:
            raise ValueError("timeouts and max_queued_packets must be positive")
        self._clock = clock
        self._camera_num = camera_num
        self._specs = {STREAM_HQ: hq, STREAM_LQ: lq}
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._api_loader = api_loader
        super().__init__(capacity=max_queued_packets, stop_timeout_s=open_timeout_s)

    def describe(self) -> str:
        """Which camera, at which sizes."""
        hq, lq = self._specs[STREAM_HQ], self._specs[STREAM_LQ]
        return (
            f"pi camera {self._camera_num} (hq {hq.width}x{hq.height}, "
            f"lq {lq.width}x{lq.height}, {hq.fps} fps)"
        )

    async def open(self) -> Mapping[str, CodecConfig]:
        """Start the camera and both encoders; return the configs once both sent a keyframe."""
        loop, handoff, workers = self._start_workers(f"picamera2-{self._camera_num}")
        started: asyncio.Future[None] = loop.create_future()
        configs: dict[str, asyncio.Future[CodecConfig]] = {
            stream: loop.create_future() for stream in self._specs
        }
        sinks = {
            stream: _StreamSink(
                stream=stream,
                spec=spec,
                mapper=WallClockMapper(self._clock, follow_clock=True),
                handoff=handoff,
                event_loop=loop,
                config=configs[stream],
            )
            for stream, spec in self._specs.items()
        }
        control = _CameraControl(
            api_loader=self._api_loader,
            camera_num=self._camera_num,
            specs=self._specs,
            sinks=sinks,
            event_loop=loop,
            started=started,
            stop=workers.stop_requested,
        )
        on_crash = crash_reporter(loop, started, handoff.finish, self.describe())
        workers.start("control", control.run, on_crash=on_crash)

        async def both_started() -> list[CodecConfig]:
            await started
            return list(await asyncio.gather(*configs.values()))

        results = await self._opened_within(
            both_started(),
            timeout_s=self._open_timeout_s,
            problem="no keyframe from the encoders",
        )
        return dict(zip(configs, results, strict=True))

    async def read(self) -> MediaPacket:
        """The next encoded frame of either stream; SourceUnavailable if frames stop.

        The stall bound is an I/O timeout on the event loop's monotonic clock.
        """
        return await self._within_read_timeout(super().read())

    async def read_batch(self) -> list[MediaPacket]:
        """The frames queued (at least one); SourceUnavailable if frames stop (as `read`)."""
        return await self._within_read_timeout(super().read_batch())

    async def _within_read_timeout(self, reading: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._read_timeout_s):
                return await reading
        except TimeoutError:
            raise SourceUnavailable(
                f"{self.describe()}: no frames for {self._read_timeout_s:g} s"
            ) from None


class _StreamSink:
    """Receives one encoder's frames on the encoder's thread and queues them as packets."""

    def __init__(
        self,
        *,
        stream: str,
        spec: VideoStreamSpec,
        mapper: WallClockMapper,
        handoff: ThreadHandoff[MediaPacket],
        event_loop: asyncio.AbstractEventLoop,
        config: asyncio.Future[CodecConfig],
    ) -> None:
        self.stream = stream
        self._spec = spec
        self._frame_us = _US_PER_S // spec.fps
        self._mapper = mapper
        self._handoff = handoff
        self._event_loop = event_loop
        self._config = config
        self._width = spec.width
        self._height = spec.height
        self._have_config = False
        self._waiting_for_keyframe = True  # at the start, and after a drop
        self._last_pts: int | None = None
        self.dropped_frames = 0

    def set_size(self, width: int, height: int) -> None:
        """The size the camera actually configured (it may align the requested one)."""
        self._width, self._height = width, height

    def frame(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """One encoded frame, called on the encoder's thread; never blocks."""
        if self._waiting_for_keyframe and not keyframe:
            if self._last_pts is not None:
                self.dropped_frames += 1
            return
        if not self._have_config:
            found = parameter_sets(data, "h264")
            if not found:
                return  # a keyframe without SPS/PPS: wait for one that has them
            self._have_config = True
            config = CodecConfig(
                kind=MediaKind.VIDEO,
                codec="h264",
                time_base_num=TIME_BASE.numerator,
                time_base_den=TIME_BASE.denominator,
                width=self._width,
                height=self._height,
                extradata=found,
            )
            resolve_threadsafe(self._event_loop, self._config, config)
        pts = timestamp_us
        if pts is None:  # not every picamera2 version passes one: assume the nominal rate
            pts = 0 if self._last_pts is None else self._last_pts + self._frame_us
        packet = MediaPacket(
            stream=self.stream,
            pts=pts,
            dts=pts,
            duration=self._frame_us,
            keyframe=keyframe,
            data=data,
            wall_ns=self._mapper.wall_ns(pts, TIME_BASE),
        )
        self._last_pts = pts
        if self._handoff.offer(packet):
            self._waiting_for_keyframe = False
            return
        if not self._waiting_for_keyframe:
            _log.warning("%s: queue full, dropping frames until the next keyframe", self.stream)
        self._waiting_for_keyframe = True
        self.dropped_frames += 1


class _OutputBridge:
    """Mixed into picamera2's `Output` at open time: forwards `outputframe` to a sink."""

    def __init__(self, sink: _StreamSink) -> None:
        super().__init__()
        self._siteline_sink = sink

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: object = None,
        audio: bool = False,
    ) -> None:
        if audio:
            return
        self._siteline_sink.frame(bytes(frame), bool(keyframe), timestamp)


class _CameraControl:
    """Owns the picamera2 objects on one thread: set up, wait for stop, tear down."""

    def __init__(
        self,
        *,
        api_loader: Callable[[], Picamera2Api],
        camera_num: int,
        specs: Mapping[str, VideoStreamSpec],
        sinks: Mapping[str, _StreamSink],
        event_loop: asyncio.AbstractEventLoop,
        started: asyncio.Future[None],
        stop: threading.Event,
    ) -> None:
        self._api_loader = api_loader
        self._camera_num = camera_num
        self._specs = specs
        self._sinks = sinks
        self._event_loop = event_loop
        self._started = started
        self._stop = stop

    def run(self) -> None:
        try:
            api = self._api_loader()
        except SourceConfigError as exc:
            reject_threadsafe(self._event_loop, self._started, exc)
            return
        try:
            camera = api.camera_factory(self._camera_num)
        except Exception as exc:  # picamera2 raises RuntimeError, libcamera others
            error = SourceUnavailable(
                f"pi camera {self._camera_num}: cannot open the camera ({type(exc).__name__}: "
                f"{exc})"
            )
            reject_threadsafe(self._event_loop, self._started, error)
            return
        encoders: list[Any] = []
        try:
            self._start(api, camera, encoders)
            resolve_threadsafe(self._event_loop, self._started, None)
            self._stop.wait()
        except Exception as exc:
            error = SourceUnavailable(
                f"pi camera {self._camera_num}: cannot start ({type(exc).__name__}: {exc})"
            )
            reject_threadsafe(self._event_loop, self._started, error)
        finally:
            self._tear_down(camera, encoders)

    def _start(self, api: Picamera2Api, camera: CameraDevice, encoders: list[Any]) -> None:
        hq, lq = self._specs[STREAM_HQ], self._specs[STREAM_LQ]
        frame_us = _US_PER_S // hq.fps
        config = camera.create_video_configuration(
            main={"size": (hq.width, hq.height), "format": "YUV420"},
            lores={"size": (lq.width, lq.height), "format": "YUV420"},
            controls={"FrameDurationLimits": (frame_us, frame_us)},
            display=None,
            encode="main",
        )
        camera.configure(config)
        actual = camera.camera_configuration()
        output_class = type("SitelineStreamOutput", (_OutputBridge, api.output_base), {})
        for stream, sink in self._sinks.items():
            output_name = _OUTPUT_NAMES[stream]
            width, height = actual[output_name]["size"]
            sink.set_size(int(width), int(height))
            spec = self._specs[stream]
            encoder = api.h264_encoder(bitrate=spec.bitrate_bps, repeat=True, iperiod=spec.fps)
            camera.start_encoder(encoder, output_class(sink), name=output_name)
            encoders.append(encoder)
        camera.start()

    def _tear_down(self, camera: CameraDevice, encoders: list[Any]) -> None:
        # Each step on its own: a failure stopping one part must not leave the rest running.
        steps: list[tuple[str, Callable[[], None]]] = [("stop", camera.stop)]
        steps += [("stop_encoder", _bind_stop_encoder(camera, e)) for e in encoders]
        steps.append(("close", camera.close))
        for label, step in steps:
            try:
                step()
            except Exception:
                _log.warning("pi camera %d: %s failed", self._camera_num, label, exc_info=True)


def _bind_stop_encoder(camera: CameraDevice, encoder: Any) -> Callable[[], None]:
    def stop() -> None:
        camera.stop_encoder(encoder)

    return stop
