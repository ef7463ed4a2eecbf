"""A network camera read over RTSP: the main profile as "hq", the sub profile as "lq".

One worker thread per URL reads the session (RTP interleaved over the RTSP TCP connection,
so no UDP ports and no loss reordering); packets are remuxed, never decoded. Two readers:

- `READER_FFMPEG`: an `ffmpeg -c copy` child per URL demuxes the camera and writes NUT
  into a pipe (`ffmpeg_relay`; the URL and its password never reach its command line);
  the thread demuxes the pipe with PyAV in bursts (`burst_pipe`), every second, or every
  20 ms while someone watches live. The cheaper in CPU (docs/benchmarks.md) and the
  default where the program is installed. The first packets are read as they come, so
  the stream's wall-clock anchor is its arrival time; later packets are stamped at their
  burst's arrival, up to one interval late, which the wall-clock mapper takes as lateness
  that does not last, not as drift (`timing`).
- `READER_IN_PROCESS`: PyAV opens the URL itself in the thread; no program needed.

Per stream:

- "hq": the first video stream of `hq_url`; "audio": its first audio stream, if any and
  `audio` is True; "lq": the first video stream of `lq_url`, if given (without `lq_url`
  the camera has no "lq" stream).
- Video packets are Annex B as FFmpeg's RTP depacketizer makes them; `extradata` holds
  the parameter sets (from the session description, or from the first keyframe when the
  camera sends them only in band). Time bases are the RTP clocks (1/90000 for video).
- Delivery starts at each video stream's first keyframe; packets without any timestamp
  (FFmpeg emits a few before RTCP synchronisation) are dropped.
- `wall_ns` is mapped per stream from the arrival time of its first packet, following
  the injected clock (see `timing`).
- Packets reach the event loop in batches (`PacketBatcher`): every second, or at once
  while someone watches live.

Any failure (refused, timed out, the camera closed the session) makes `open` or `read`
raise `SourceUnavailable` with the redacted URL and the reason; the whole camera is then
down, and the supervisor reconnects both sessions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction

import av
from av.container import InputContainer
from av.stream import Stream

from agent.sources.annexb import BitstreamError, extradata_to_annexb, parameter_sets
from agent.sources.base import (
    STREAM_AUDIO,
    STREAM_HQ,
    STREAM_LQ,
    SourceConfigError,
    SourceUnavailable,
)
from agent.sources.burst_pipe import BurstPipeReader
from agent.sources.ffmpeg_relay import (
    FFmpegRelay,
    RelayStartError,
    concat_script,
    ffmpeg_available,
    relay_command,
)
from agent.sources.handoff import ThreadHandoff
from agent.sources.packet_batcher import PacketBatcher, StreamTimeline
from agent.sources.timing import WallClockMapper
from agent.sources.url_policy import redact_url, scrub_url_secrets, validate_camera_url
from agent.sources.worker_source import WorkerFedSource
from agent.sources.workers import (
    reject_threadsafe,
    resolve_threadsafe,
)
from shared.clock import Clock
from shared.media import CodecConfig, MediaKind, MediaPacket

_log = logging.getLogger(__name__)

# Defence in depth behind url_policy: FFmpeg itself refuses any other protocol, including
# ones a server could name in a redirect.
_PROTOCOL_WHITELIST = "rtsp,rtsps,tcp,tls,udp,rtp"
_US_PER_S = 1_000_000
_ANALYZE_DURATION_US = 1_000_000  # probe 1 s; the session description has the rest
_RELAY_PROBE_US = 100_000  # probing the relay's output: NUT's header has every parameter

READER_FFMPEG = "ffmpeg"
READER_IN_PROCESS = "in_process"
READER_AUTO = "auto"
READERS = (READER_AUTO, READER_FFMPEG, READER_IN_PROCESS)


def resolve_reader(reader: str) -> str:
    """`reader` with "auto" made concrete: the ffmpeg child if the program is installed."""
    if reader not in READERS:
        raise SourceConfigError(f"reader: must be one of {', '.join(READERS)}, not {reader!r}")
    if reader == READER_AUTO:
        return READER_FFMPEG if ffmpeg_available() else READER_IN_PROCESS
    if reader == READER_FFMPEG and not ffmpeg_available():
        raise SourceConfigError(
            "reader: 'ffmpeg' needs the ffmpeg program, which is not installed "
            "(apt-get install ffmpeg), or use reader = 'in_process'"
        )
    return reader


class RtspCamera(WorkerFedSource):
    """A camera with a main (hq) and an optional sub (lq) RTSP profile."""

    def __init__(
        self,
        hq_url: str,
        lq_url: str | None = None,
        *,
        clock: Clock,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        audio: bool = True,
        max_queued_packets: int = 128,
        reader: str = READER_AUTO,
    ) -> None:
        """Validate the URLs and the reader (`SourceConfigError` names `hq_url`, `lq_url`
        or `reader`)."""
        self._urls = {STREAM_HQ: validate_camera_url(hq_url, field="hq_url")}
        if lq_url is not None:
            self._urls[STREAM_LQ] = validate_camera_url(lq_url, field="lq_url")
        if open_timeout_s <= 0 or read_timeout_s <= 0:
            raise ValueError("open_timeout_s and read_timeout_s must be positive")
        if max_queued_packets < 1:
            raise ValueError("max_queued_packets must be at least 1")
        self._clock = clock
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._audio = audio
        self.reader = resolve_reader(reader)
        # A thread stuck in a read exits at its timeout.
        super().__init__(capacity=max_queued_packets, stop_timeout_s=read_timeout_s + 2)

    def describe(self) -> str:
        """The redacted URLs."""
        urls = ", ".join(f"{role} {redact_url(url)}" for role, url in self._urls.items())
        return f"rtsp camera ({urls}; {self.reader.replace('_', '-')} reader)"

    async def open(self) -> Mapping[str, CodecConfig]:
        """Connect every profile; return the stream configurations or raise SourceUnavailable."""
        loop, handoff, workers = self._start_workers("rtsp")
        pending = []
        for role, url in self._urls.items():
            session = _Session(
                role=role,
                url=url,
                with_audio=self._audio and role == STREAM_HQ,
                clock=self._clock,
                open_timeout_s=self._open_timeout_s,
                read_timeout_s=self._read_timeout_s,
                event_loop=loop,
                handoff=handoff,
                stop=workers.stop_requested,
                max_batch=max(1, self._capacity // 2),
                relayed=self.reader == READER_FFMPEG,
            )
            pending.append(
                self._start_reporting_worker(role, session.run, label=f"{role} {redact_url(url)}")
            )
        # The threads enforce the timeouts inside FFmpeg; this outer bound only catches a
        # library that ignores them.
        return await self._merged_configs_within(
            pending, timeout_s=self._open_timeout_s * 2 + 5, problem="connecting took too long"
        )


class _Session:
    """The worker-thread side of one RTSP URL."""

    def __init__(
        self,
        *,
        role: str,
        url: str,
        with_audio: bool,
        clock: Clock,
        open_timeout_s: float,
        read_timeout_s: float,
        event_loop: asyncio.AbstractEventLoop,
        handoff: ThreadHandoff[MediaPacket],
        stop: threading.Event,
        max_batch: int,
        relayed: bool,
    ) -> None:
        self._relayed = relayed
        self._relay: FFmpegRelay | None = None
        self._burst: BurstPipeReader | None = None
        self._role = role
        self._url = url
        self._with_audio = with_audio
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._event_loop = event_loop
        self._handoff = handoff
        self._stop = stop
        self._clock = clock
        self._max_batch = max_batch
        self._label = f"{role} {redact_url(url)}"

    def run(self, configs: asyncio.Future[dict[str, CodecConfig]]) -> None:
        try:
            container = self._connect()
        except SourceUnavailable as exc:
            self._fail(configs, exc)
            self._stop_relay()
            return
        try:
            self._stream(container, configs)
        except av.FFmpegError as exc:
            self._fail(configs, SourceUnavailable(f"{self._label}: {self._reason(exc)}"))
        except SourceUnavailable as exc:
            self._fail(configs, exc)
        finally:
            container.close()
            self._stop_relay()

    def _fail(
        self, configs: asyncio.Future[dict[str, CodecConfig]], error: SourceUnavailable
    ) -> None:
        reject_threadsafe(self._event_loop, configs, error)
        self._handoff.finish(str(error))

    def _connect(self) -> InputContainer:
        options = {
            "rtsp_transport": "tcp",
            "timeout": str(round(self._read_timeout_s * _US_PER_S)),  # socket I/O, in µs
            "allowed_media_types": "video+audio" if self._with_audio else "video",
            "analyzeduration": str(_ANALYZE_DURATION_US),
        }
        if self._relayed:
            return self._connect_relayed(options)
        try:
            return av.open(
                self._url,
                mode="r",
                options={**options, "protocol_whitelist": _PROTOCOL_WHITELIST},
                timeout=(self._open_timeout_s, self._read_timeout_s),
            )
        except (av.FFmpegError, OSError) as exc:
            raise SourceUnavailable(f"{self._label}: {self._reason(exc)}") from None

    def _connect_relayed(self, options: dict[str, str]) -> InputContainer:
        """Start the ffmpeg child and open its NUT output (see `ffmpeg_relay`)."""
        command = relay_command(
            video_only=not self._with_audio, analyze_duration_us=_RELAY_PROBE_US
        )
        # nobuffer: the packets the child reads while probing are dropped rather than sent
        # in a rush after it, so every packet reaches this process about when the camera
        # sent it, and the wall-clock mapper anchors on a true arrival time.
        script = concat_script(self._url, {**options, "fflags": "nobuffer"})
        try:
            relay = FFmpegRelay(command, script)
        except RelayStartError as exc:
            raise SourceUnavailable(f"{self._label}: {exc}") from None
        self._relay = relay
        # The child connects, sets the session up and probes before its first byte: the
        # open timeout bounds all of that, the read timeout every later silence.
        burst = BurstPipeReader(
            relay.stdout_fd,
            pipe_bytes=relay.pipe_bytes,
            interval_s=lambda: self._handoff.min_wake_interval_s,
            timeout_s=self._open_timeout_s,
            stop=self._stop,
        )
        burst.on_burst = relay.drain_stderr
        self._burst = burst
        try:
            container = av.open(
                burst,
                mode="r",
                format="nut",
                options={"analyzeduration": str(_RELAY_PROBE_US), "fflags": "nobuffer"},
                # PyAV then asks for a whole burst at a time, which is handed over uncopied.
                buffer_size=relay.pipe_bytes,
            )
        except (av.FFmpegError, OSError) as exc:
            raise SourceUnavailable(f"{self._label}: {self._relay_failure(exc)}") from None
        burst.timeout_s = self._read_timeout_s
        return container

    def _relay_failure(self, exc: BaseException | None) -> str:
        """Why the relayed stream failed or ended: the child's own words if it exited."""
        relay, burst = self._relay, self._burst
        if relay is None or burst is None:
            return "the camera ended the stream" if exc is None else self._reason(exc)
        if burst.timed_out:
            relay.stop()
            return f"timed out (no data for {burst.idle_s:.0f} s)"
        # The pipe closed: the child is exiting, or has.
        for _ in range(20):
            if relay.exit_status() is not None:
                break
            self._stop.wait(0.05)
        status = relay.exit_status()
        said = scrub_url_secrets(relay.last_error(), self._url)
        if said:
            return said
        if status:
            return f"ffmpeg exited with status {status}"
        return "the camera ended the stream" if exc is None else self._reason(exc)

    def _stop_relay(self) -> None:
        if self._relay is not None:
            self._relay.stop()

    def _stream(
        self, container: InputContainer, configs: asyncio.Future[dict[str, CodecConfig]]
    ) -> None:
        if not container.streams.video:
            raise SourceUnavailable(f"{self._label}: the camera offers no video stream")
        video = container.streams.video[0]
        names: dict[int, str] = {video.index: self._role}
        streams: list[Stream] = [video]
        if self._with_audio and container.streams.audio:
            audio = container.streams.audio[0]
            names[audio.index] = STREAM_AUDIO
            streams.append(audio)
        stream_configs = {names[s.index]: self._config(s) for s in streams}
        # Per stream index: its name, its time base, and its own wall-clock mapper (audio
        # and video run on separate RTP clocks whose timestamps need not share an origin).
        timelines = {
            s.index: StreamTimeline(
                names[s.index],
                s.time_base or Fraction(1, 90_000),
                WallClockMapper(self._clock, follow_clock=True),
            )
            for s in streams
        }
        awaited = None
        if stream_configs[self._role].extradata:
            resolve_threadsafe(self._event_loop, configs, stream_configs)
        else:
            awaited = _AwaitedParameterSets(
                self._role, stream_configs, configs, event_loop=self._event_loop
            )
        batcher = PacketBatcher(
            self._handoff, self._clock, max_batch=self._max_batch, flush_when_due=not self._relayed
        )
        if self._burst is not None:
            # Each burst's packets go to the event loop together, once it is demuxed.
            self._burst.before_wait = batcher.flush
        try:
            self._deliver(
                container.demux(streams), video.index, timelines, awaited, batcher,
                on_started=self._settle,
            )  # fmt: skip
        finally:
            # What was read before the end or a failure still reaches the recorder.
            batcher.flush()
        if not self._stop.is_set():
            if self._relayed:
                raise SourceUnavailable(f"{self._label}: {self._relay_failure(None)}")
            raise SourceUnavailable(f"{self._label}: the camera ended the stream")

    def _settle(self) -> None:
        """Delivery has begun: from now on the relayed pipe is read in bursts."""
        if self._burst is not None:
            self._burst.eager = False

    def _deliver(
        self,
        demuxed: Iterator[av.Packet[Stream]],
        video_index: int,
        timelines: dict[int, StreamTimeline],
        awaited: _AwaitedParameterSets | None,
        batcher: PacketBatcher,
        *,
        on_started: Callable[[], None],
    ) -> None:
        """Hand every packet from the first video keyframe on to `batcher`, until the
        stream ends or the session stops. Runs per packet: kept lean (see PacketBatcher)."""
        started = False  # delivery begins at the first video keyframe
        stop = self._stop
        for raw in demuxed:
            if stop.is_set():
                return
            pts, dts = raw.pts, raw.dts
            if pts is None:
                if dts is None:
                    continue  # FFmpeg emits a few before RTCP synchronisation
                pts = dts
            elif dts is None:
                dts = pts
            if raw.size == 0:
                continue
            is_video = raw.stream_index == video_index
            if not started:
                if not (is_video and raw.is_keyframe):
                    continue
                started = True
                on_started()
            data = bytes(raw)
            if awaited is not None:
                if not (is_video and awaited.found_in(data)):
                    continue
                awaited = None
            duration = raw.duration or 0
            timeline = timelines[raw.stream_index]
            if not batcher.add(timeline, pts, dts, max(duration, 0), raw.is_keyframe, data):
                return

    def _config(self, stream: Stream) -> CodecConfig:
        context = stream.codec_context
        time_base = stream.time_base or Fraction(1, 90_000)
        extradata = bytes(context.extradata or b"")
        if stream.type == "video":
            try:
                extradata = extradata_to_annexb(extradata, context.name)
            except BitstreamError:
                extradata = b""  # fall back to the parameter sets sent in band
            return CodecConfig(
                kind=MediaKind.VIDEO,
                codec=context.name,
                time_base_num=time_base.numerator,
                time_base_den=time_base.denominator,
                width=getattr(context, "width", 0),
                height=getattr(context, "height", 0),
                extradata=extradata,
            )
        return CodecConfig(
            kind=MediaKind.AUDIO,
            codec=context.name,
            time_base_num=time_base.numerator,
            time_base_den=time_base.denominator,
            sample_rate=getattr(context, "sample_rate", 0),
            channels=getattr(getattr(context, "layout", None), "nb_channels", 0),
            extradata=extradata,
        )

    def _reason(self, exc: BaseException) -> str:
        """A short cause without the URL: FFmpeg's messages repeat the URL with its password."""
        if isinstance(exc, av.error.ExitError):
            return "timed out"
        text = getattr(exc, "strerror", None) or type(exc).__name__
        return scrub_url_secrets(str(text), self._url)


class _AwaitedParameterSets:
    """A video stream whose parameter sets come in band: its configuration is reported
    once the first keyframe that carries them arrives."""

    def __init__(
        self,
        role: str,
        stream_configs: dict[str, CodecConfig],
        configs: asyncio.Future[dict[str, CodecConfig]],
        *,
        event_loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._role = role
        self._stream_configs = stream_configs
        self._configs = configs
        self._event_loop = event_loop

    def found_in(self, data: bytes) -> bool:
        """True (and the configurations reported) if this video packet carries them."""
        config = self._stream_configs[self._role]
        found = parameter_sets(data, config.codec)
        if not found:
            return False
        self._stream_configs[self._role] = dataclasses.replace(config, extradata=found)
        resolve_threadsafe(self._event_loop, self._configs, self._stream_configs)
        return True
