"""An RTSP camera against a real RTSP server (GStreamer, on loopback), with each reader:
the ffmpeg child (tests/sources/test_ffmpeg_reader.py has its own cases) and in-process PyAV."""

from __future__ import annotations

import socket
from collections import defaultdict

import pytest

from agent.sources.base import SourceConfigError, SourceUnavailable
from agent.sources.rtsp import RtspCamera
from shared.clock import SystemClock
from shared.media import MediaKind, MediaPacket
from tests.rtsp_server import RtspServerProcess
from tests.sources.decoding import decode_audio, decode_video

pytestmark = pytest.mark.rtsp


@pytest.fixture(params=["ffmpeg", "in_process"])
def reader(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def test_receives_hq_lq_and_audio_that_decode(
    rtsp_server: RtspServerProcess, reader: str
) -> None:
    clock = SystemClock()
    camera = RtspCamera(
        rtsp_server.url("/hq"),
        rtsp_server.url("/lq"),
        clock=clock,
        open_timeout_s=10,
        reader=reader,
    )
    configs = await camera.open()
    streams: dict[str, list[MediaPacket]] = defaultdict(list)
    try:
        while sum(p.keyframe for p in streams["lq"]) < 2 or len(streams["audio"]) < 5:
            packet = await camera.read()
            streams[packet.stream].append(packet)
    finally:
        await camera.close()

    assert set(configs) == {"hq", "lq", "audio"}
    for name, size in (("hq", (320, 240)), ("lq", (160, 120))):
        config = configs[name]
        assert (config.kind, config.codec, config.width, config.height) == (
            MediaKind.VIDEO,
            "h264",
            *size,
        )
        assert config.time_base_den == 90_000
        assert config.extradata.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        packets = streams[name]
        assert packets[0].keyframe, "delivery starts at a keyframe"
        dts = [p.dts for p in packets]
        assert dts == sorted(set(dts))
        frames = decode_video(config, packets)
        assert len(frames) >= len(packets) - 2
        assert {(f.width, f.height) for f in frames} == {size}
        # Arrival-stamped wall times lie around now and rise with the stream.
        walls = [p.wall_ns for p in packets]
        assert walls == sorted(walls)
        assert abs(walls[-1] - clock.now_ns()) < 2_000_000_000
    audio = configs["audio"]
    assert (audio.kind, audio.codec, audio.sample_rate, audio.channels) == (
        MediaKind.AUDIO,
        "pcm_alaw",
        8_000,
        1,
    )
    assert decode_audio(audio, streams["audio"])


async def test_a_refused_connection_names_the_url_without_the_password(reader: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"rtsp://admin:Sup3rSecret@127.0.0.1:{port}/hq"
    camera = RtspCamera(url, clock=SystemClock(), open_timeout_s=3, read_timeout_s=2, reader=reader)
    with pytest.raises(SourceUnavailable) as caught:
        await camera.open()
    await camera.close()
    assert str(caught.value) == f"hq rtsp://admin:***@127.0.0.1:{port}/hq: Connection refused"
    assert "Sup3rSecret" not in camera.describe()


async def test_an_unknown_mount_is_reported(rtsp_server: RtspServerProcess, reader: str) -> None:
    camera = RtspCamera(
        rtsp_server.url("/hq"),
        rtsp_server.url("/nothing-here"),
        clock=SystemClock(),
        open_timeout_s=5,
        read_timeout_s=2,
        reader=reader,
    )
    with pytest.raises(SourceUnavailable) as caught:
        await camera.open()
    await camera.close()
    assert str(caught.value) == (
        f"lq {rtsp_server.url('/nothing-here')}: Server returned 404 Not Found"
    )


def test_dangerous_urls_are_refused_before_anything_is_opened() -> None:
    with pytest.raises(SourceConfigError, match=r"^lq_url: the 'file:' protocol is not allowed"):
        RtspCamera("rtsp://cam/x", "file:///etc/passwd", clock=SystemClock())
    with pytest.raises(SourceConfigError, match=r"^hq_url: camera URL host .* embeds an IPv4"):
        RtspCamera("rtsp://[::ffff:127.0.0.1]/x", clock=SystemClock())
