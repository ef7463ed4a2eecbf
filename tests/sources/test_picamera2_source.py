"""The Pi camera source, driven through a fake picamera2 that encodes real H.264."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import defaultdict

import pytest

from agent.sources.annexb import iter_nal_units, nal_type
from agent.sources.base import SourceConfigError, SourceUnavailable
from agent.sources.picamera2_source import Picamera2Camera
from agent.sources.synthetic import VideoStreamSpec
from shared.clock import SystemClock
from shared.media import MediaKind, MediaPacket
from tests.fakes.fake_picamera2 import FakePicamera2System
from tests.sources.decoding import decode_video

FPS = 20
HQ = VideoStreamSpec(width=192, height=108, fps=FPS, bitrate_bps=300_000)
LQ = VideoStreamSpec(width=96, height=54, fps=FPS, bitrate_bps=80_000)


async def read_until_failure(camera: Picamera2Camera) -> None:
    while True:
        await camera.read()


@pytest.fixture
def board() -> FakePicamera2System:
    return FakePicamera2System()


def camera_on(board: FakePicamera2System, **kwargs: object) -> Picamera2Camera:
    options: dict[str, object] = {"hq": HQ, "lq": LQ, "read_timeout_s": 2.0, **kwargs}
    return Picamera2Camera(clock=SystemClock(), api_loader=board.api, **options)  # type: ignore[arg-type]


async def test_gives_hq_and_lq_that_decode(board: FakePicamera2System) -> None:
    camera = camera_on(board)
    configs = await camera.open()
    streams: dict[str, list[MediaPacket]] = defaultdict(list)
    try:
        while len(streams["hq"]) < 2 * FPS + 1 or len(streams["lq"]) < 2 * FPS + 1:
            packet = await camera.read()
            streams[packet.stream].append(packet)
    finally:
        await camera.close()

    assert set(configs) == {"hq", "lq"}
    for name, spec in (("hq", HQ), ("lq", LQ)):
        config = configs[name]
        assert (config.kind, config.codec, config.width, config.height) == (
            MediaKind.VIDEO,
            "h264",
            spec.width,
            spec.height,
        )
        assert config.time_base_den == 1_000_000
        assert [nal_type(u, "h264") for u in iter_nal_units(config.extradata)] == [7, 8]
        packets = streams[name]
        assert packets[0].keyframe
        # iperiod = fps: a keyframe every second, SPS/PPS repeated in front of each.
        keyframes = [i for i, p in enumerate(packets) if p.keyframe]
        assert keyframes[:3] == [0, FPS, 2 * FPS]
        for index in keyframes:
            kinds = [nal_type(u, "h264") for u in iter_nal_units(packets[index].data)]
            assert kinds[:2] == [7, 8]
        pts = [p.pts for p in packets]
        assert pts == sorted(set(pts))
        assert all(p.dts == p.pts for p in packets)
        # Sensor timestamps in microseconds: about 1/fps apart.
        steps = [b - a for a, b in itertools.pairwise(pts)]
        assert 0.5e6 / FPS < sum(steps) / len(steps) < 1.5e6 / FPS
        frames = decode_video(config, packets)
        assert len(frames) == len(packets)
        assert {(f.width, f.height) for f in frames} == {(spec.width, spec.height)}
    assert board.closed_cameras == 1
    assert not board.cameras[0].started


async def test_wall_times_follow_the_sensor_timestamps(board: FakePicamera2System) -> None:
    camera = camera_on(board)
    await camera.open()
    try:
        packets = [p for p in [await camera.read() for _ in range(20)] if p.stream == "hq"]
    finally:
        await camera.close()
    first = packets[0]
    for packet in packets:
        assert packet.wall_ns - first.wall_ns == (packet.pts - first.pts) * 1_000


async def test_a_full_queue_drops_up_to_the_next_keyframe(board: FakePicamera2System) -> None:
    camera = camera_on(board, max_queued_packets=4)
    await camera.open()
    streams: dict[str, list[MediaPacket]] = defaultdict(list)
    try:
        for _ in range(4):
            packet = await camera.read()
            streams[packet.stream].append(packet)
        await asyncio.sleep(1.5)  # the recorder stalls; the encoder must not wait for it
        while min(len(streams["hq"]), len(streams["lq"])) < 2 * FPS:
            packet = await camera.read()
            streams[packet.stream].append(packet)
    finally:
        await camera.close()
    frame_us = 1_000_000 // FPS
    for name, packets in streams.items():
        gaps = [
            (before, after)
            for before, after in itertools.pairwise(packets)
            if after.pts - before.pts > 1.5 * frame_us
        ]
        assert gaps, f"{name}: frames were dropped during the stall"
        # After every gap the stream resumes on a keyframe: no frame lost its reference.
        assert all(after.keyframe for _before, after in gaps), name


async def test_a_hung_sensor_is_reported_after_the_read_timeout(
    board: FakePicamera2System,
) -> None:
    camera = camera_on(board, read_timeout_s=0.5)
    await camera.open()
    await camera.read()
    board.hung.set()
    with pytest.raises(SourceUnavailable, match=r"no frames for 0\.5 s$"):
        await read_until_failure(camera)
    await camera.close()
    assert board.closed_cameras == 1


async def test_a_missing_camera_is_unavailable(board: FakePicamera2System) -> None:
    board.camera_present = False
    camera = camera_on(board)
    with pytest.raises(SourceUnavailable) as caught:
        await camera.open()
    await camera.close()
    assert str(caught.value) == (
        "pi camera 0: cannot open the camera "
        "(RuntimeError: Camera __init__ sequence did not complete.)"
    )


async def test_can_be_opened_again_after_close(board: FakePicamera2System) -> None:
    camera = camera_on(board)
    for _ in range(2):
        await camera.open()
        assert (await camera.read()).keyframe
        await camera.close()
    assert board.closed_cameras == 2


async def test_without_picamera2_installed_open_is_a_config_error() -> None:
    camera = Picamera2Camera(clock=SystemClock())  # the real loader
    assert "picamera2" not in sys.modules  # importing the source did not import it
    with pytest.raises(SourceConfigError, match="picamera2 library is not available"):
        await camera.open()
    await camera.close()


@pytest.mark.parametrize(
    ("lq", "message"),
    [
        (
            VideoStreamSpec(96, 54, 10, 80_000),
            f"lq.fps must equal hq.fps ({FPS}): the lores output runs at the sensor frame rate",
        ),
        (
            VideoStreamSpec(256, 144, FPS, 80_000),
            "lq must not be larger than hq: lores is the smaller output",
        ),
    ],
)
def test_lores_limits_are_checked_up_front(lq: VideoStreamSpec, message: str) -> None:
    with pytest.raises(SourceConfigError) as caught:
        Picamera2Camera(clock=SystemClock(), hq=HQ, lq=lq)
    assert str(caught.value) == message
