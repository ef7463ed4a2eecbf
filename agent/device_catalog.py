"""The site's devices as the outside sees them: id, kind, the site's own name, and streams.

Built once from the configuration. A camera has `hq` and `lq` video; its microphone
(`<camera>.mic`) has `audio`; its motion metadata (`<camera>.motion`) has `motion`; an input
has `state`; outputs and speakers have no stream yet. The names are the ones given on the
site, which the central keeps as the "original names" beside its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agent.camera_recorder import MOTION_STREAM
from agent.config import AgentConfig
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
class StreamInfo:
    """One stream of a device: its name, what it carries, and how it is recorded here."""

    name: str
    media: MediaKind
    recording: str  # a recording mode of the configuration, e.g. "continuous", "relay_only"


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
        devices.append(
            DeviceInfo(
                camera.id,
                DeviceKind.CAMERA,
                camera.name,
                None,
                (
                    StreamInfo(STREAM_HQ, MediaKind.VIDEO, recording.hq.mode),
                    StreamInfo(STREAM_LQ, MediaKind.VIDEO, recording.lq.mode),
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
                    (StreamInfo(STREAM_AUDIO, MediaKind.AUDIO, recording.audio.mode),),
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
