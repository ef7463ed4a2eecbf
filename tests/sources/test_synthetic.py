"""The in-process synthetic camera: real H.264 and AAC, a static scene, optional motion."""

from __future__ import annotations

import itertools
from collections import defaultdict
from fractions import Fraction

import pytest

from agent.sources.base import SourceConfigError, SourceUnavailable
from agent.sources.synthetic import MotionSpec, SyntheticCamera, VideoStreamSpec
from shared.clock import NS_PER_S, ManualClock
from shared.media import MediaKind, MediaPacket
from tests.sources.decoding import changed_pixels, decode_audio, decode_video

HQ = VideoStreamSpec(width=160, height=96, fps=10, bitrate_bps=200_000)
LQ = VideoStreamSpec(width=96, height=54, fps=5, bitrate_bps=60_000)
TB_90K = Fraction(1, 90_000)


async def read_seconds(camera: SyntheticCamera, seconds: float) -> list[MediaPacket]:
    """Packets until the hq stream covers `seconds` of media time."""
    packets: list[MediaPacket] = []
    while True:
        packet = await camera.read()
        packets.append(packet)
        if packet.stream == "hq" and packet.pts * TB_90K >= seconds:
            return packets


def by_stream(packets: list[MediaPacket]) -> dict[str, list[MediaPacket]]:
    streams: dict[str, list[MediaPacket]] = defaultdict(list)
    for packet in packets:
        streams[packet.stream].append(packet)
    return streams


async def test_gives_hq_lq_and_audio_that_decode() -> None:
    camera = SyntheticCamera(clock=ManualClock(), hq=HQ, lq=LQ, audio=True, realtime=False)
    configs = await camera.open()
    try:
        packets = await read_seconds(camera, 3.0)
    finally:
        await camera.close()

    assert set(configs) == {"hq", "lq", "audio"}
    for name, spec in (("hq", HQ), ("lq", LQ)):
        config = configs[name]
        assert (config.kind, config.codec) == (MediaKind.VIDEO, "h264")
        assert (config.width, config.height) == (spec.width, spec.height)
        assert config.time_base == TB_90K
        assert config.extradata.startswith(b"\x00\x00\x00\x01\x67")  # Annex B, SPS first
    audio = configs["audio"]
    assert (audio.kind, audio.codec, audio.sample_rate, audio.channels) == (
        MediaKind.AUDIO,
        "aac",
        16_000,
        1,
    )
    assert audio.time_base == Fraction(1, 16_000)
    assert audio.extradata  # AudioSpecificConfig

    streams = by_stream(packets)
    for name, spec in (("hq", HQ), ("lq", LQ)):
        frames = decode_video(configs[name], streams[name])
        assert len(frames) == len(streams[name])
        assert {(f.width, f.height) for f in frames} == {(spec.width, spec.height)}
    audio_frames = decode_audio(audio, streams["audio"])
    assert len(audio_frames) >= 40  # three seconds of 64 ms frames, less the priming one
    assert {f.sample_rate for f in audio_frames} == {16_000}


async def test_keyframe_every_second_and_rising_timestamps() -> None:
    camera = SyntheticCamera(clock=ManualClock(), hq=HQ, lq=LQ, audio=True, realtime=False)
    await camera.open()
    try:
        streams = by_stream(await read_seconds(camera, 4.0))
    finally:
        await camera.close()

    for name in ("hq", "lq"):
        packets = streams[name]
        assert packets[0].keyframe, f"{name} must start with a keyframe"
        keyframe_pts = [p.pts for p in packets if p.keyframe]
        assert [b - a for a, b in itertools.pairwise(keyframe_pts)] == [90_000] * (
            len(keyframe_pts) - 1
        )
        assert len(keyframe_pts) >= 4
        assert all(p.dts == p.pts for p in packets)  # no B-frames
    for name, packets in streams.items():
        dts = [p.dts for p in packets]
        assert dts == sorted(set(dts)), f"{name} dts must rise strictly"


async def test_as_fast_as_possible_wall_times_follow_the_media_time() -> None:
    clock = ManualClock()
    start_ns = clock.now_ns()
    camera = SyntheticCamera(clock=clock, hq=HQ, lq=LQ, realtime=False)
    await camera.open()
    try:
        hq = by_stream(await read_seconds(camera, 2.0))["hq"]
    finally:
        await camera.close()
    assert clock.now_ns() == start_ns  # nothing waited on the clock
    assert [p.wall_ns - start_ns for p in hq] == [p.pts * NS_PER_S // 90_000 for p in hq]


async def test_realtime_pacing_waits_on_the_injected_clock() -> None:
    clock = ManualClock()
    start_mono = clock.monotonic_ns()
    start_wall = clock.now_ns()
    camera = SyntheticCamera(clock=clock, hq=HQ, lq=LQ, realtime=True)
    await camera.open()
    try:
        hq = by_stream(await read_seconds(camera, 3.0))["hq"]
    finally:
        await camera.close()
    # The encoder thread slept on the manual clock until each packet was due.
    assert clock.monotonic_ns() - start_mono >= 3 * NS_PER_S
    assert [p.wall_ns - start_wall for p in hq] == [p.pts * NS_PER_S // 90_000 for p in hq]


async def test_motion_periods_show_as_changing_frames_and_the_rest_is_static() -> None:
    motion = MotionSpec(period_s=2.0, active_s=1.0, sweep_s=1.0)
    camera = SyntheticCamera(clock=ManualClock(), hq=HQ, lq=LQ, motion=motion, realtime=False)
    configs = await camera.open()
    try:
        streams = by_stream(await read_seconds(camera, 4.0))
    finally:
        await camera.close()

    for name in ("hq", "lq"):
        frames = decode_video(configs[name], streams[name])
        moving, still = [], []
        for before, after in itertools.pairwise(frames):
            t_before, t_after = (
                float((f.pts or 0) * TB_90K) % motion.period_s for f in (before, after)
            )
            changed = changed_pixels(before, after)
            if t_before < motion.active_s and t_after < motion.active_s:
                moving.append(changed)
            elif t_before >= motion.active_s and t_after >= motion.active_s:
                still.append(changed)
        assert moving, name
        assert still, name
        assert min(moving) > 20, f"{name}: the box moves in every active frame"
        assert max(still) == 0, f"{name}: nothing changes outside the motion periods"


async def test_without_motion_the_picture_never_changes() -> None:
    camera = SyntheticCamera(clock=ManualClock(), hq=HQ, lq=LQ, realtime=False)
    configs = await camera.open()
    try:
        hq = by_stream(await read_seconds(camera, 2.5))["hq"]
    finally:
        await camera.close()
    frames = decode_video(configs["hq"], hq)
    assert all(changed_pixels(frames[0], frame) == 0 for frame in frames[1:])


async def test_constant_bitrate_fills_the_nominal_rate_even_when_static() -> None:
    spec = VideoStreamSpec(width=160, height=96, fps=10, bitrate_bps=400_000)
    camera = SyntheticCamera(clock=ManualClock(), hq=spec, lq=LQ, realtime=False)
    await camera.open()
    try:
        hq = by_stream(await read_seconds(camera, 4.0))["hq"]
    finally:
        await camera.close()
    seconds = (hq[-1].pts - hq[0].pts + hq[-1].duration) / 90_000
    bitrate = sum(len(p.data) for p in hq) * 8 / seconds
    assert 0.8 * spec.bitrate_bps < bitrate < 1.2 * spec.bitrate_bps


async def test_close_is_prompt_and_idempotent_and_read_after_close_fails() -> None:
    camera = SyntheticCamera(clock=ManualClock(), hq=HQ, lq=LQ, realtime=False)
    await camera.open()
    await camera.read()
    await camera.close()  # the encoder thread is blocked on a full queue: close frees it
    await camera.close()
    with pytest.raises(SourceUnavailable, match="not open"):
        await camera.read()
    assert "hq 160x96@10" in camera.describe()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"hq": VideoStreamSpec(161, 96, 10, 200_000)},
            "hq.width must be an even number from 16 to 4096, not 161",
        ),
        ({"lq": VideoStreamSpec(96, 54, 0, 60_000)}, "lq.fps must be from 1 to 60, not 0"),
        (
            {"lq": VideoStreamSpec(96, 54, 5, 10)},
            "lq.bitrate_bps must be from 16000 to 50000000, not 10",
        ),
        (
            {"motion": MotionSpec(period_s=5.0, active_s=5.0)},
            "motion: need 0 < active_s < period_s <= 86400, not active_s=5.0, period_s=5.0",
        ),
        ({"x264_preset": "placebo"}, "x264_preset 'placebo' is not a fast preset"),
    ],
)
def test_bad_settings_are_refused_with_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SourceConfigError) as caught:
        SyntheticCamera(clock=ManualClock(), **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message
