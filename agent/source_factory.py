"""Builds each camera's source from its configuration."""

from __future__ import annotations

from agent.config import (
    CameraConfig,
    FileSettings,
    Picamera2Settings,
    RtspSettings,
    SyntheticSettings,
    VideoSpec,
)
from agent.sources.base import CameraSource
from agent.sources.file import FileCamera
from agent.sources.picamera2_source import Picamera2Camera
from agent.sources.rtsp import RtspCamera
from agent.sources.synthetic import MotionSpec, SyntheticCamera, VideoStreamSpec
from shared.clock import Clock


def _spec(video: VideoSpec) -> VideoStreamSpec:
    return VideoStreamSpec(video.width, video.height, video.fps, video.bitrate_bps)


def build_source(camera: CameraConfig, *, clock: Clock) -> CameraSource:
    """The source a camera's configuration describes (nothing is opened yet)."""
    settings = camera.settings
    if isinstance(settings, SyntheticSettings):
        motion = (
            MotionSpec(period_s=settings.motion_period_s, active_s=settings.motion_duration_s)
            if settings.motion
            else None
        )
        return SyntheticCamera(
            clock=clock,
            hq=_spec(settings.hq),
            lq=_spec(settings.lq),
            audio=settings.audio,
            motion=motion,
            name=camera.id,
        )
    if isinstance(settings, RtspSettings):
        return RtspCamera(
            settings.hq_url,
            settings.lq_url,
            clock=clock,
            open_timeout_s=settings.open_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            audio=camera.has_microphone,
            reader=settings.reader,
        )
    if isinstance(settings, FileSettings):
        return FileCamera(settings.hq_path, settings.lq_path, clock=clock)
    if isinstance(settings, Picamera2Settings):
        return Picamera2Camera(clock=clock, hq=_spec(settings.hq), lq=_spec(settings.lq))
    raise TypeError(f"no source for settings {type(settings).__name__}")
