"""The site's devices as the outside sees them: id, kind, the site's own name, and streams.

Built once from the configuration. A camera has `hq` and `lq` video; its microphone
(`<camera>.mic`) has `audio`; its motion metadata (`<camera>.motion`) has `motion`; an input
has `state`; outputs and speakers have no stream yet. The names are the ones given on the
site, which the central keeps as the "original names" beside its own.

Each stream carries its format (codec, picture size, frame rate) as far as the
configuration fixes it: a synthetic or camera-module source encodes what it is told, an IP
camera or a file delivers what it was set to, which only its packets tell
(`with_seen_formats` adds that, see `stream_formats.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agent.camera_recorder import MOTION_STREAM
from agent.config import AgentConfig, Picamera2Settings, SyntheticSettings, VideoSpec
from agent.input_device import STATE_STREAM
from agent.sources.base import STREAM_AUDIO, STREAM_HQ, STREAM_LQ
from shared.media import MediaKind


class DeviceKind(StrEnum):
    CAMERA = "camera"
    MICROPHONE = "microphone"
    METADATA = "metadata"
    INPUT = "input"
    OUTPUT = "output"
    SPEAKER = "speaker"


@dataclass(frozen=True)
class StreamFormat:
    """What a stream's packets are, as far as the site knows; None is unknown."""

    codec: str | None = None  # the codec's short name: h264, hevc, aac, ...
    width: int | None = None  # pixels, video only
    height: int | None = None
    frame_rate: float | None = None  # frames per second, video only


UNKNOWN_FORMAT = StreamFormat()


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a device: its name, what it carries, how it is recorded here, and its
    format."""

    name: str
    media: MediaKind
    recording: str  # a recording mode of the configuration, e.g. "continuous", "relay_only"
    format: StreamFormat = UNKNOWN_FORMAT


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    kind: DeviceKind
    name: str
    parent: str | None  # the camera a microphone or motion device belongs to
    streams: tuple[StreamInfo, ...]

    def stream_names(self) -> tuple[str, ...]:
        return tuple(stream.name for stream in self.streams)


def device_catalog(config: AgentConfig) -> tuple[DeviceInfo, ...]:
    """Every device of the site, in the configuration's order (cameras with their parts first)."""
    devices: list[DeviceInfo] = []
    for camera in config.cameras:
        recording = camera.recording
        hq, lq, audio = _configured_formats(camera.settings)
        devices.append(
            DeviceInfo(
                camera.id,
                DeviceKind.CAMERA,
                camera.name,
                None,
                (
                    StreamInfo(STREAM_HQ, MediaKind.VIDEO, recording.hq.mode, hq),
                    StreamInfo(STREAM_LQ, MediaKind.VIDEO, recording.lq.mode, lq),
                ),
            )
        )
        if camera.has_microphone:
            devices.append(
                DeviceInfo(
                    camera.microphone_id,
                    DeviceKind.MICROPHONE,
                    f"{camera.name} microphone",
                    camera.id,
                    (StreamInfo(STREAM_AUDIO, MediaKind.AUDIO, recording.audio.mode, audio),),
                )
            )
        if camera.motion.enabled:
            devices.append(
                DeviceInfo(
                    camera.metadata_id,
                    DeviceKind.METADATA,
                    f"{camera.name} motion",
                    camera.id,
                    (StreamInfo(MOTION_STREAM, MediaKind.METADATA, "continuous"),),
                )
            )
    for device in config.inputs:
        devices.append(
            DeviceInfo(
                device.id,
                DeviceKind.INPUT,
                device.name,
                None,
                (StreamInfo(STATE_STREAM, MediaKind.EVENTS, "continuous"),),
            )
        )
    devices += [DeviceInfo(d.id, DeviceKind.OUTPUT, d.name, None, ()) for d in config.outputs]
    devices += [DeviceInfo(d.id, DeviceKind.SPEAKER, d.name, None, ()) for d in config.speakers]
    return tuple(devices)


def _configured_formats(settings: object) -> tuple[StreamFormat, StreamFormat, StreamFormat]:
    """The hq, lq and audio formats the camera's source settings fix (unknown otherwise)."""
    if isinstance(settings, SyntheticSettings):
        # The synthetic source encodes H.264 video and AAC sound (agent/sources/synthetic.py).
        return _h264(settings.hq), _h264(settings.lq), StreamFormat(codec="aac")
    if isinstance(settings, Picamera2Settings):
        # The camera module's hardware encoder makes H.264; it has no microphone.
        return _h264(settings.hq), _h264(settings.lq), UNKNOWN_FORMAT
    return UNKNOWN_FORMAT, UNKNOWN_FORMAT, UNKNOWN_FORMAT


def _h264(spec: VideoSpec) -> StreamFormat:
    return StreamFormat("h264", spec.width, spec.height, float(spec.fps))
