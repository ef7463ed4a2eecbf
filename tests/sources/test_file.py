"""A media file looped as a camera: remuxed, with timestamps that keep rising."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import av
import pytest

from agent.sources.annexb import iter_nal_units, nal_type
from agent.sources.base import SourceConfigError, SourceUnavailable
from agent.sources.file import FileCamera
from shared.clock import NS_PER_S, ManualClock
from shared.media import MediaKind, MediaPacket
from tests.sources.decoding import decode_audio, decode_video

FPS = 10
SECONDS = 1


def write_clip(path: Path, *, width: int, height: int, audio: bool, b_frames: int) -> Path:
    """A short H.264 (+AAC) MP4: length-prefixed samples with avcC, like most files."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "g": str(FPS), "bf": str(b_frames)}
        sound = out.add_stream("aac", rate=16_000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for index in range(FPS * SECONDS):
            frame = av.VideoFrame(width, height, "yuv420p")
            for number, plane in enumerate(frame.planes):
                plane.update(bytes([(index * 9 + number * 60) % 256]) * plane.buffer_size)
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            out.mux(video.encode(frame))
        if sound is not None:
            for index in range(16_000 * SECONDS // 1024):
                samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
                samples.sample_rate = 16_000
                samples.planes[0].update(bytes(samples.planes[0].buffer_size))
                samples.pts, samples.time_base = index * 1024, Fraction(1, 16_000)
                out.mux(sound.encode(samples))
            out.mux(sound.encode(None))
        out.mux(video.encode(None))
    return path


@pytest.fixture
def hq_clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "hq.mp4", width=160, height=96, audio=True, b_frames=2)


@pytest.fixture
def lq_clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "lq.mp4", width=96, height=54, audio=False, b_frames=0)


async def read_until_failure(camera: FileCamera, into: list[MediaPacket]) -> None:
    while True:
        into.append(await camera.read())


def by_stream(packets: list[MediaPacket]) -> dict[str, list[MediaPacket]]:
    streams: dict[str, list[MediaPacket]] = defaultdict(list)
    for packet in packets:
        streams[packet.stream].append(packet)
    return streams


async def test_loops_with_rising_timestamps_and_decodes(hq_clip: Path, lq_clip: Path) -> None:
    camera = FileCamera(hq_clip, lq_clip, clock=ManualClock(), realtime=False)
    configs = await camera.open()
    try:
        packets: list[MediaPacket] = []
        while min(sum(p.keyframe for p in packets if p.stream == s) for s in ("hq", "lq")) < 3:
            packets.append(await camera.read())  # until three passes over each file
            assert len(packets) < 500
    finally:
        await camera.close()

    assert set(configs) == {"hq", "lq", "audio"}
    assert configs["hq"].kind == MediaKind.VIDEO
    assert (configs["hq"].width, configs["lq"].width) == (160, 96)
    assert configs["audio"].codec == "aac"
    # avcC from the MP4 became Annex B parameter sets.
    assert [nal_type(u, "h264") for u in iter_nal_units(configs["hq"].extradata)] == [7, 8]

    streams = by_stream(packets)
    for name in ("hq", "lq", "audio"):
        dts = [p.dts for p in streams[name]]
        assert dts == sorted(set(dts)), f"{name}: dts must rise strictly across loops"
    for name in ("hq", "lq"):
        keyframes = [p for p in streams[name] if p.keyframe]
        assert streams[name][0].keyframe
        assert len(keyframes) >= 3  # one per pass
        # Packets are Annex B and each keyframe carries its parameter sets in band.
        assert all(p.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for p in streams[name])
        kinds = [nal_type(u, "h264") for u in iter_nal_units(keyframes[1].data)]
        assert 7 in kinds
        assert 8 in kinds
        frames = decode_video(configs[name], streams[name])
        assert len(frames) == len(streams[name])
        pts = [f.pts or 0 for f in frames]
        assert pts == sorted(set(pts)), f"{name}: presentation times rise across loops"
    assert decode_audio(configs["audio"], streams["audio"])


async def test_realtime_paces_on_the_injected_clock(hq_clip: Path) -> None:
    clock = ManualClock()
    start = clock.monotonic_ns()
    camera = FileCamera(hq_clip, clock=clock, audio=False)  # realtime by default
    configs = await camera.open()
    try:
        packets = [await camera.read() for _ in range(2 * FPS * SECONDS + 1)]
    finally:
        await camera.close()
    assert set(configs) == {"hq"}  # no lq file: no lq stream
    span = (packets[-1].dts - packets[0].dts) * configs["hq"].time_base * NS_PER_S
    assert clock.monotonic_ns() - start >= span


async def test_loop_false_ends_after_one_pass(lq_clip: Path) -> None:
    camera = FileCamera(lq_clip, clock=ManualClock(), realtime=False, loop=False)
    await camera.open()
    packets: list[MediaPacket] = []
    try:
        with pytest.raises(SourceUnavailable, match=r"hq file .*lq\.mp4 ended"):
            await read_until_failure(camera, packets)
    finally:
        await camera.close()
    assert len(packets) == FPS * SECONDS


async def test_a_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    camera = FileCamera(missing, clock=ManualClock())
    with pytest.raises(SourceConfigError) as caught:
        await camera.open()
    assert str(caught.value) == f"hq file {missing} does not exist or is not a file"
    await camera.close()


async def test_a_file_that_is_not_media_is_a_config_error(tmp_path: Path, hq_clip: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4)
    camera = FileCamera(hq_clip, junk, clock=ManualClock())
    with pytest.raises(SourceConfigError) as caught:
        await camera.open()
    assert str(caught.value) == f"lq file {junk} is not a media file FFmpeg can read"
    await camera.close()


async def test_text_is_not_taken_for_video(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n" * 100)  # FFmpeg would render this as ANSI art
    camera = FileCamera(notes, clock=ManualClock())
    with pytest.raises(SourceConfigError) as caught:
        await camera.open()
    assert str(caught.value) == (
        f"hq file {notes} has video codec 'ansi'; only h264 and hevc are supported"
    )
    await camera.close()


async def test_a_file_without_video_is_a_config_error(tmp_path: Path) -> None:
    sound_only = tmp_path / "sound.m4a"
    with av.open(str(sound_only), "w") as out:
        sound = out.add_stream("aac", rate=16_000)
        sound.layout = "mono"
        samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        samples.sample_rate = 16_000
        samples.planes[0].update(bytes(samples.planes[0].buffer_size))
        samples.pts = 0
        out.mux(sound.encode(samples))
        out.mux(sound.encode(None))
    camera = FileCamera(sound_only, clock=ManualClock())
    with pytest.raises(SourceConfigError, match="has no video stream"):
        await camera.open()
    await camera.close()
