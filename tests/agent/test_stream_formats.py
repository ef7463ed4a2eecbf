"""The stream formats a site's device list reports: what the configuration fixes (a
synthetic or camera-module source), what an IP camera's source announced once it opened,
and unknown before that; configurations read by the real loader."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_agent_config
from agent.device_catalog import UNKNOWN_FORMAT, StreamFormat, device_catalog
from agent.stream_formats import with_seen_formats
from shared.media import CodecConfig, MediaKind
from tests.agent.site_config import small_camera, write_site_config

IP_CAMERA = """
[[cameras]]
id = "ipcam"
name = "Loading bay"
source = "rtsp"
[cameras.rtsp]
hq_url = "rtsp://10.0.0.5/main"
lq_url = "rtsp://10.0.0.5/sub"
audio = true
"""

CAMERA_MODULE = """
[[cameras]]
id = "picam"
source = "picamera2"
[cameras.picamera2]
hq = { width = 1280, height = 720, fps = 15 }
lq = { width = 424, height = 240, fps = 15 }
"""


def _video(codec: str, width: int, height: int) -> CodecConfig:
    return CodecConfig(MediaKind.VIDEO, codec, 1, 90_000, width=width, height=height)


def _formats(tmp_path: Path, devices_toml: str) -> dict[tuple[str, str], StreamFormat]:
    config = load_agent_config(write_site_config(tmp_path, devices_toml))
    return {(d.id, s.name): s.format for d in device_catalog(config) for s in d.streams}


def test_the_configuration_fixes_the_formats_of_the_streams_the_site_encodes(
    tmp_path: Path,
) -> None:
    formats = _formats(tmp_path, small_camera("cam-a", audio=True) + CAMERA_MODULE)
    assert formats["cam-a", "hq"] == StreamFormat("h264", 320, 180, 10.0)
    assert formats["cam-a", "lq"] == StreamFormat("h264", 160, 90, 5.0)
    assert formats["cam-a.mic", "audio"] == StreamFormat(codec="aac")
    assert formats["cam-a.motion", "motion"] == UNKNOWN_FORMAT
    assert formats["picam", "lq"] == StreamFormat("h264", 424, 240, 15.0)


def test_an_ip_cameras_formats_are_what_its_source_announced(tmp_path: Path) -> None:
    config = load_agent_config(write_site_config(tmp_path, IP_CAMERA))
    camera, microphone = device_catalog(config)[:2]
    # Not reached yet: the site does not know.
    assert [s.format for s in camera.streams] == [UNKNOWN_FORMAT, UNKNOWN_FORMAT]
    assert with_seen_formats(camera, {}) is camera

    # Opened: H.265 main profile, H.264 sub profile at 640x360, G.711 sound.
    codecs = {
        ("ipcam", "hq"): _video("hevc", 2560, 1440),
        ("ipcam", "lq"): _video("h264", 640, 360),
        ("ipcam.mic", "audio"): CodecConfig(
            MediaKind.AUDIO, "pcm_alaw", 1, 8000, sample_rate=8000, channels=1
        ),
        ("other", "lq"): _video("h264", 1, 1),  # another device's: not this one's
    }
    seen = with_seen_formats(camera, codecs)
    assert [(s.name, s.format) for s in seen.streams] == [
        ("hq", StreamFormat("hevc", 2560, 1440)),
        ("lq", StreamFormat("h264", 640, 360)),
    ]
    assert [s.recording for s in seen.streams] == [s.recording for s in camera.streams]
    assert with_seen_formats(microphone, codecs).streams[0].format == StreamFormat("pcm_alaw")

    # Reconfigured at the site: the sub profile smaller.
    codecs["ipcam", "lq"] = _video("h264", 480, 270)
    assert with_seen_formats(camera, codecs).streams[1].format == StreamFormat("h264", 480, 270)


def test_what_a_source_announced_wins_over_the_configuration_but_keeps_its_frame_rate(
    tmp_path: Path,
) -> None:
    config = load_agent_config(write_site_config(tmp_path, small_camera("cam-a")))
    camera = device_catalog(config)[0]
    seen = with_seen_formats(camera, {("cam-a", "lq"): _video("h264", 176, 96)})
    assert seen.streams[1].format == StreamFormat("h264", 176, 96, 5.0)
    assert seen.streams[0] == camera.streams[0]
