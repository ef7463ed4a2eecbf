"""A stand-in for the picamera2 library, for machines without a Raspberry Pi camera.

It reproduces the part of picamera2's API the agent relies on, with the same names, call
shapes and threading, and feeds real H.264 through it:

- `Picamera2(camera_num)`: `create_video_configuration(main=, lores=, controls=, display=,
  encode=, ...)` returns a configuration dict; `configure(config)`;
  `camera_configuration()`; `start_encoder(encoder=None, output=None, pts=None,
  quality=None, name=None)`; `start()`; `stop()`; `stop_encoder(encoders=None)`;
  `close()`. Errors are `RuntimeError`s with picamera2's wording.
- `H264Encoder(bitrate=None, repeat=True, iperiod=None, framerate=None, ...)`: its
  `output` accepts only `Output` instances; `start(quality=None)` / `stop()`.
- `Output(pts=None)`: `start()`, `stop()`, `outputframe(frame, keyframe=True,
  timestamp=None, packet=None, audio=False)`.

Behaviour mirrored: once started, the camera produces sensor frames at the rate set by
the `FrameDurationLimits` control, on its own thread, for both the "main" and the "lores"
output; it hands each frame to every running encoder through `encode(name, request)`.
Each encoder encodes on its own thread (here libx264 through PyAV, as the Pi's encoder:
Annex B, no B-frames, a keyframe every `iperiod` frames, SPS/PPS before every keyframe
when `repeat` is True and only before the first one otherwise) and calls its outputs'
`outputframe(bytes, keyframe, timestamp_us)`, the timestamp counted from that encoder's
first frame. The fake runs in real time (it is hardware), on the monotonic clock.

`FakePicamera2System` is one simulated board: it makes cameras, can pretend the camera is
unplugged or hangs, and returns the API bundle the agent's source takes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from av.codec.context import Flags
from av.video.frame import VideoFrame

from agent.sources.picamera2_source import Picamera2Api

_DEFAULT_MAIN_SIZE = (1280, 720)
_DEFAULT_FRAME_US = 33_333  # 30 fps
_ENCODER_BUFFERS = 16  # the Pi's encoder has 16 input buffers; encode() waits for one


class Output:
    """picamera2.outputs.Output: receives encoded frames from an encoder."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Called on the encoder's thread with one encoded frame."""


@dataclass
class _Request:
    """A completed capture request: one sensor frame for each configured output."""

    frames: dict[str, VideoFrame]
    metadata: dict[str, int] = field(default_factory=dict)


class H264Encoder:
    """picamera2.encoders.H264Encoder, backed by libx264."""

    def __init__(  # noqa: PLR0917 - picamera2's own signature
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        enable_sps_framerate: bool = False,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self.qp = qp
        self.profile = profile
        self.width = 0
        self.height = 0
        self.stride = 0
        self.format: str | None = None
        self.name: str | None = None
        self._output: list[Output] = []
        self._running = False
        self._lock = threading.Lock()
        self._frames: queue.Queue[tuple[VideoFrame, int] | None] = queue.Queue(_ENCODER_BUFFERS)
        self._thread: threading.Thread | None = None
        self.firsttimestamp: int | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def output(self) -> Output | list[Output]:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: Output | list[Output]) -> None:
        outputs = value if isinstance(value, list) else [value]
        if not all(isinstance(out, Output) for out in outputs):
            raise RuntimeError("Must pass Output")
        self._output = outputs

    def start(self, quality: Any = None) -> None:
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            context = self._make_context()
            self._running = True
            for out in self._output:
                out.start()
            self._thread = threading.Thread(
                target=self._encode_loop, args=(context,), name=f"fake-h264-{self.name}"
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._frames.put(None)
            if self._thread is not None:
                self._thread.join()
            for out in self._output:
                out.stop()

    def encode(self, stream: str, request: _Request) -> None:
        """Queue the request's frame of `stream`; waits while all input buffers are busy."""
        if not self._running:
            return
        sensor_us = request.metadata["SensorTimestamp"] // 1000
        if self.firsttimestamp is None:
            self.firsttimestamp = sensor_us
        self._frames.put((request.frames[stream], sensor_us - self.firsttimestamp))

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        for out in self._output:
            out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _make_context(self) -> Any:
        fps = self.framerate or 30.0
        bitrate = self.bitrate
        if bitrate is None:  # picamera2's "medium quality" rule of thumb
            bitrate = int(6_000_000 * self.width * self.height * fps / (1920 * 1080 * 30))
        context = av.CodecContext.create("libx264", "w")
        context.width = self.width
        context.height = self.height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 1_000_000)
        context.framerate = Fraction(round(fps * 1000), 1000)
        context.bit_rate = bitrate
        period = self.iperiod or 60
        context.gop_size = period
        context.max_b_frames = 0
        context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={period}:min-keyint={period}:scenecut=0",
        }
        if not self.repeat:
            # Headers only once: take them out of band and put them before frame one.
            context.flags |= Flags.global_header
        context.open()
        return context

    def _encode_loop(self, context: Any) -> None:
        headers = b"" if self.repeat else bytes(context.extradata or b"")
        while True:
            item = self._frames.get()
            if item is None:
                return
            frame, timestamp_us = item
            frame.pts = timestamp_us
            frame.time_base = Fraction(1, 1_000_000)
            for packet in context.encode(frame):
                data = bytes(packet)
                if headers and packet.is_keyframe:
                    data, headers = headers + data, b""
                self.outputframe(data, packet.is_keyframe, timestamp_us)


class Picamera2:
    """picamera2.Picamera2 for one simulated camera."""

    def __init__(self, system: FakePicamera2System, camera_num: int = 0) -> None:
        if not system.camera_present:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self._system = system
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True
        self._encoders: set[H264Encoder] = set()
        self._capture: threading.Thread | None = None
        self._capture_stop = threading.Event()
        self.frames_captured = 0

    # --- configuration ----------------------------------------------------------------

    def create_video_configuration(  # noqa: PLR0917 - picamera2's own signature
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        main_config = {"format": "XBGR8888", "size": _DEFAULT_MAIN_SIZE, **(main or {})}
        lores_config = None if lores is None else {"format": "YUV420", **lores}
        frame_us = _DEFAULT_FRAME_US
        return {
            "use_case": use_case,
            "buffer_count": buffer_count,
            "main": main_config,
            "lores": lores_config,
            "raw": raw,
            "controls": {"FrameDurationLimits": (frame_us, frame_us), **(controls or {})},
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = {key: value for key, value in camera_config.items()}
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is None:
                continue
            width, height = stream["size"]
            if width % 2 or height % 2:
                raise RuntimeError(f"{name} stream size must be even")
            config[name] = {**stream, "stride": width}
        lores = config.get("lores")
        if lores is not None:
            main_w, main_h = config["main"]["size"]
            lores_w, lores_h = lores["size"]
            if lores_w > main_w or lores_h > main_h:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any]:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        return self.camera_config

    @property
    def encode_stream_name(self) -> str:
        return str(self.camera_configuration().get("encode") or "main")

    # --- encoders ---------------------------------------------------------------------

    def start_encoder(
        self,
        encoder: H264Encoder | None = None,
        output: Output | None = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        if encoder is None:
            if len(self._encoders) != 1:
                raise RuntimeError("No encoder specified")
            encoder = next(iter(self._encoders))
        if output is not None:
            encoder.output = output
        streams = self.camera_configuration()
        name = name or self.encode_stream_name
        if streams.get(name) is None:
            raise RuntimeError(f"Encode stream {name} was not defined")
        encoder.name = name
        encoder.width, encoder.height = streams[name]["size"]
        encoder.format = streams[name]["format"]
        encoder.stride = streams[name]["stride"]
        if encoder.framerate is None:
            frame_us = max(streams["controls"]["FrameDurationLimits"][0], 33_333)
            encoder.framerate = 1_000_000 / frame_us
        encoder.start(quality=quality)
        self._encoders.add(encoder)

    def stop_encoder(self, encoders: H264Encoder | Iterable[H264Encoder] | None = None) -> None:
        if encoders is None:
            chosen = list(self._encoders)
        elif isinstance(encoders, H264Encoder):
            chosen = [encoders]
        else:
            chosen = list(encoders)
        for encoder in chosen:
            encoder.stop()
            self._encoders.discard(encoder)

    # --- running ----------------------------------------------------------------------

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        config_now = self.camera_configuration()
        if self.started:
            return
        self.started = True
        self._capture_stop.clear()
        frame_us = int(config_now["controls"]["FrameDurationLimits"][0])
        self._capture = threading.Thread(
            target=self._capture_loop, args=(config_now, frame_us), name="fake-picamera2-capture"
        )
        self._capture.start()

    def stop(self) -> None:
        if not self.started:
            return
        self._capture_stop.set()
        if self._capture is not None:
            self._capture.join()
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.stop_encoder()
        self.is_open = False
        self._system.closed_cameras += 1

    def _capture_loop(self, config: dict[str, Any], frame_us: int) -> None:
        interval_s = frame_us / 1_000_000
        next_due = time.monotonic()
        while not self._capture_stop.wait(max(0.0, next_due - time.monotonic())):
            next_due += interval_s
            if self._system.hung.is_set():
                continue  # a hung sensor: the thread lives on, no frames come out
            sensor_ns = time.monotonic_ns()
            request = _Request(
                frames=self._render(config, self.frames_captured),
                metadata={"SensorTimestamp": sensor_ns},
            )
            self.frames_captured += 1
            for encoder in list(self._encoders):
                if encoder.name in request.frames:
                    encoder.encode(encoder.name, request)

    @staticmethod
    def _render(config: dict[str, Any], index: int) -> dict[str, VideoFrame]:
        """A grey picture with a bright band moving right; lores is the same, scaled."""
        width, height = config["main"]["size"]
        frame = VideoFrame(width, height, "yuv420p")
        band_x = (index * 4) % max(1, width - 16)
        luma = frame.planes[0]
        row = b"\x40" * band_x + b"\xc0" * 16 + b"\x40" * (luma.line_size - band_x - 16)
        luma.update(row * height)
        for chroma in frame.planes[1:]:
            chroma.update(b"\x80" * chroma.buffer_size)
        frames = {"main": frame}
        lores = config.get("lores")
        if lores is not None:
            lores_w, lores_h = lores["size"]
            frames["lores"] = frame.reformat(width=lores_w, height=lores_h)
        return frames


class FakePicamera2System:
    """One simulated Pi with its camera; `api()` is what the agent's source takes."""

    def __init__(self) -> None:
        self.camera_present = True
        self.hung = threading.Event()  # set: the sensor stops delivering frames
        self.cameras: list[Picamera2] = []
        self.closed_cameras = 0

    def open_camera(self, camera_num: int = 0) -> Picamera2:
        camera = Picamera2(self, camera_num)
        self.cameras.append(camera)
        return camera

    def api(self) -> Picamera2Api:
        return Picamera2Api(
            camera_factory=self.open_camera,
            h264_encoder=H264Encoder,
            output_base=Output,
        )
