"""A media file played in a loop as if it were a camera.

The file's packets are remuxed, never transcoded: a worker thread per file demuxes with
PyAV and hands the packets over unchanged, except that

- H.264/H.265 stored as length-prefixed samples (MP4, MKV) go through FFmpeg's
  `*_mp4toannexb` bitstream filter, so every source in the agent delivers Annex B packets
  with Annex B parameter sets in `CodecConfig.extradata` (see `annexb`);
- pts and dts are shifted by the length of the file at every loop, so they keep rising;
- packets are released at the pace of their dts on the injected clock (`realtime=True`,
  the default) or as fast as the consumer takes them (`realtime=False`, for tests).

Streams: "hq" is the first video stream of `hq_path`; "audio" the first audio stream of
the same file (when present and `audio` is True); "lq" the first video stream of
`lq_path`. Without `lq_path` the camera has no "lq" stream at all: pass the same file
twice to get one. Each file is its own timeline and loops on its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.bitstream import BitStreamFilterContext
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream

from agent.sources.annexb import BitstreamError, extradata_to_annexb
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
    reject_threadsafe,
    resolve_threadsafe,
)
from shared.clock import NS_PER_S, Clock
from shared.media import CodecConfig, MediaKind, MediaPacket

_log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}
_FALLBACK_SPAN_NS = NS_PER_S // 25  # loop length of a file whose one frame has no duration


@dataclass(frozen=True, slots=True)
class _Track:
    """One stream of a file mapped to a camera stream name."""

    name: str
    index: int
    time_base: Fraction


class FileCamera(WorkerFedSource):
    """Loops one media file (hq, optional audio) and optionally a second one (lq)."""

    def __init__(
        self,
        hq_path: Path | str,
        lq_path: Path | str | None = None,
        *,
        clock: Clock,
        realtime: bool = True,
        loop: bool = True,
        audio: bool = True,
        max_queued_packets: int = 64,
    ) -> None:
        if max_queued_packets < 1:
            raise SourceConfigError("max_queued_packets must be at least 1")
        self._files: dict[str, Path] = {STREAM_HQ: Path(hq_path)}
        if lq_path is not None:
            self._files[STREAM_LQ] = Path(lq_path)
        self._clock = clock
        self._realtime = realtime
        self._loop = loop
        self._audio = audio
        super().__init__(capacity=max_queued_packets, stop_timeout_s=STOP_TIMEOUT_S)

    def describe(self) -> str:
        """A log-safe description: the file paths."""
        files = ", ".join(f"{role} {path}" for role, path in self._files.items())
        return f"file camera ({files})"

    async def open(self) -> Mapping[str, CodecConfig]:
        """Check the files, start one demux thread per file; return the stream configs.

        Raises `SourceConfigError` (missing file, not media, no video) or
        `SourceUnavailable` (the file could not be read now), naming the path.
        """
        if self._workers is not None:
            raise RuntimeError(f"{self.describe()} is already open")
        for role, path in self._files.items():
            if not path.is_file():
                raise SourceConfigError(f"{role} file {path} does not exist or is not a file")
        loop, handoff, workers = self._start_workers("file")
        pending = []
        for role, path in self._files.items():
            player = _FilePlayer(
                role=role,
                path=path,
                with_audio=self._audio and role == STREAM_HQ,
                clock=self._clock,
                realtime=self._realtime,
                loop_forever=self._loop,
                event_loop=loop,
                handoff=handoff,
                stop=workers.stop_requested,
            )
            pending.append(
                self._start_reporting_worker(role, player.run, label=f"{role} file {path}")
            )
        return await self._merged_configs_within(
            pending, timeout_s=OPEN_TIMEOUT_S, problem="opening took too long"
        )


class _FilePlayer:
    """The worker-thread side of one file: open, report configs, loop the packets."""

    def __init__(
        self,
        *,
        role: str,
        path: Path,
        with_audio: bool,
        clock: Clock,
        realtime: bool,
        loop_forever: bool,
        event_loop: asyncio.AbstractEventLoop,
        handoff: ThreadHandoff[MediaPacket],
        stop: threading.Event,
    ) -> None:
        self._role = role
        self._path = path
        self._with_audio = with_audio
        self._loop_forever = loop_forever
        self._event_loop = event_loop
        self._handoff = handoff
        self._stop = stop
        self._mapper = WallClockMapper(clock, follow_clock=realtime)
        self._pacer = ThreadPacer(clock, stop) if realtime else None

    def run(self, configs: asyncio.Future[dict[str, CodecConfig]]) -> None:
        try:
            container = self._open()
            tracks, stream_configs = self._select(container)
        except (SourceConfigError, SourceUnavailable) as exc:
            reject_threadsafe(self._event_loop, configs, exc)
            self._handoff.finish(str(exc))
            return
        resolve_threadsafe(self._event_loop, configs, stream_configs)
        offset_ns = 0
        try:
            while not self._stop.is_set():
                span_ns = self._play_once(container, tracks, offset_ns)
                container.close()
                if span_ns is None:  # stopping, or the consumer went away
                    return
                if not self._loop_forever:
                    self._handoff.finish(f"{self._role} file {self._path} ended")
                    return
                offset_ns += span_ns
                container = self._open()
                tracks, _ = self._select(container)
        except (SourceConfigError, SourceUnavailable) as exc:
            self._handoff.finish(str(exc))
        except av.FFmpegError as exc:
            self._handoff.finish(f"{self._role} file {self._path}: read failed ({exc})")
        finally:
            container.close()

    def _open(self) -> InputContainer:
        try:
            return av.open(str(self._path), mode="r")
        except (FileNotFoundError, IsADirectoryError):
            raise SourceConfigError(f"{self._role} file {self._path} does not exist") from None
        except PermissionError:
            raise SourceConfigError(
                f"{self._role} file {self._path} is not readable (permission denied)"
            ) from None
        except av.error.InvalidDataError:
            raise SourceConfigError(
                f"{self._role} file {self._path} is not a media file FFmpeg can read"
            ) from None
        except (av.FFmpegError, OSError) as exc:
            raise SourceUnavailable(
                f"{self._role} file {self._path}: cannot open ({exc})"
            ) from None

    def _select(self, container: InputContainer) -> tuple[list[_Track], dict[str, CodecConfig]]:
        if not container.streams.video:
            container.close()
            raise SourceConfigError(f"{self._role} file {self._path} has no video stream")
        video = container.streams.video[0]
        if video.codec_context.name not in _ANNEXB_FILTERS:
            container.close()
            # FFmpeg reads almost anything as "video" (even text, as ANSI art); the
            # recorder and the viewers take H.264 and H.265 only.
            raise SourceConfigError(
                f"{self._role} file {self._path} has video codec "
                f"{video.codec_context.name!r}; only h264 and hevc are supported"
            )
        chosen: list[tuple[str, Stream]] = [(self._role, video)]
        if self._with_audio and container.streams.audio:
            chosen.append((STREAM_AUDIO, container.streams.audio[0]))
        tracks: list[_Track] = []
        configs: dict[str, CodecConfig] = {}
        for name, stream in chosen:
            if stream.time_base is None:
                container.close()
                raise SourceConfigError(f"{self._role} file {self._path}: stream has no time base")
            tracks.append(_Track(name, stream.index, stream.time_base))
            configs[name] = self._config(stream)
        return tracks, configs

    def _config(self, stream: Stream) -> CodecConfig:
        context = stream.codec_context
        time_base = stream.time_base or Fraction(1, 90_000)
        codec = context.name
        raw_extradata = bytes(context.extradata or b"")
        if stream.type == "video":
            try:
                extradata = extradata_to_annexb(raw_extradata, codec)
            except BitstreamError as exc:
                raise SourceConfigError(
                    f"{self._role} file {self._path}: bad {codec} configuration ({exc})"
                ) from None
            return CodecConfig(
                kind=MediaKind.VIDEO,
                codec=codec,
                time_base_num=time_base.numerator,
                time_base_den=time_base.denominator,
                width=getattr(context, "width", 0),
                height=getattr(context, "height", 0),
                extradata=extradata,
            )
        return CodecConfig(
            kind=MediaKind.AUDIO,
            codec=codec,
            time_base_num=time_base.numerator,
            time_base_den=time_base.denominator,
            sample_rate=getattr(context, "sample_rate", 0),
            channels=getattr(getattr(context, "layout", None), "nb_channels", 0),
            extradata=raw_extradata,
        )

    def _play_once(
        self, container: InputContainer, tracks: list[_Track], offset_ns: int
    ) -> int | None:
        """Send one pass over the file; return its length in ns, or None to stop."""
        by_index = {track.index: track for track in tracks}
        streams = [container.streams[track.index] for track in tracks]
        filters: dict[int, BitStreamFilterContext] = {}
        for stream in streams:
            name = _ANNEXB_FILTERS.get(stream.codec_context.name)
            if name is not None and stream.type == "video":  # audio passes unchanged
                filters[stream.index] = BitStreamFilterContext(name, stream)
        start_ns: int | None = None
        end_ns: int | None = None
        for raw in container.demux(streams):
            if self._stop.is_set():
                return None
            if raw.size == 0 or (raw.pts is None and raw.dts is None):
                continue  # demuxer flush packets carry nothing
            track = by_index[raw.stream_index]
            bsf = filters.get(track.index)
            for packet in bsf.filter(raw) if bsf is not None else [raw]:
                pts, dts = _timestamps(packet)
                tb_ns = track.time_base * NS_PER_S
                # The span is measured on pts; dts keeps rising across loops because the
                # first dts of a pass precedes its first pts by the same decoder delay.
                first_ns = round(pts * tb_ns)
                last_ns = round((pts + max(packet.duration or 0, 0)) * tb_ns)
                start_ns = first_ns if start_ns is None else min(start_ns, first_ns)
                end_ns = last_ns if end_ns is None else max(end_ns, last_ns)
                shift = round(offset_ns / tb_ns)
                if not self._send(track, packet, pts + shift, dts + shift):
                    return None
        if start_ns is None or end_ns is None:
            raise SourceConfigError(f"{self._role} file {self._path} has no packets")
        return max(end_ns - start_ns, _FALLBACK_SPAN_NS)

    def _send(self, track: _Track, packet: Packet[Stream], pts: int, dts: int) -> bool:
        if self._pacer is not None and not self._pacer.wait_until(
            round(dts * track.time_base * NS_PER_S)
        ):
            return False
        media = MediaPacket(
            stream=track.name,
            pts=pts,
            dts=dts,
            duration=max(packet.duration or 0, 0),
            keyframe=packet.is_keyframe,
            data=bytes(packet),
            wall_ns=self._mapper.wall_ns(pts, track.time_base),
        )
        return self._handoff.put(media)


def _timestamps(packet: Packet[Stream]) -> tuple[int, int]:
    """(pts, dts) with a missing one taken from the other (callers drop packets with none)."""
    pts = packet.pts if packet.pts is not None else packet.dts
    dts = packet.dts if packet.dts is not None else pts
    assert pts is not None
    assert dts is not None
    return pts, dts
