"""The whole agent recording real H.264 into a real store, read back, decoded and verified."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from pathlib import Path

import av

from agent.config import load_agent_config
from agent.store_audit import audit_store
from agent.system_events import SystemEventKind
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S
from tests.agent.site_config import small_camera, write_site_config
from tests.agent.site_run import read_stream, record_site
from tests.rtsp_server import RtspServerProcess


def _decode_frames(chunk: SignedChunk) -> Iterator[av.VideoFrame]:
    codec = chunk.header.codec
    context = av.CodecContext.create(codec.codec, "r")
    context.extradata = codec.extradata or None
    for entry, data in chunk.iter_packets():
        packet = av.Packet(data)
        packet.pts = entry.pts
        packet.dts = entry.dts
        yield from context.decode(packet)
    yield from context.decode(None)


async def test_synthetic_site_records_every_device_and_verifies(tmp_path: Path) -> None:
    devices = small_camera("cam-a", audio=True) + small_camera(
        "cam-b", hq_mode="motion", motion_period_s=30, motion_duration_s=2
    )
    devices += '\n[[inputs]]\nid = "door"\nperiod_s = 4\n'
    config = load_agent_config(write_site_config(tmp_path, devices))
    site = await record_site(config, 9.0)

    kinds = {event.kind for event in site.events.recent()}
    assert SystemEventKind.MOTION_STARTED in kinds
    assert SystemEventKind.INPUT_ACTIVE in kinds

    hq = read_stream(config, "cam-a", "hq")
    assert len(hq) >= 6  # about one GOP per second over 9 s
    for chunk in hq:
        frames = list(_decode_frames(chunk))
        assert len(frames) == len(chunk.header.packets)
        assert (frames[0].width, frames[0].height) == (320, 180)
        assert chunk.header.packets[0].keyframe
    # One continuous timeline: each chunk ends where the next starts.
    for before, after in itertools.pairwise(hq):
        assert after.header.start_ns == before.header.end_ns
        assert after.header.seq == before.header.seq + 1
    covered_s = (hq[-1].header.end_ns - hq[0].header.start_ns) / NS_PER_S
    assert 6.0 <= covered_s <= 9.5

    lq = read_stream(config, "cam-a", "lq")
    assert len(list(_decode_frames(lq[0]))) == len(lq[0].header.packets)
    assert read_stream(config, "cam-a.mic", "audio")
    assert read_stream(config, "cam-a.motion", "motion")
    assert read_stream(config, "door", "state")

    # Motion mode: hq of cam-b only around motion, lq of cam-b all the time.
    motion_hq = read_stream(config, "cam-b", "hq")
    all_lq = read_stream(config, "cam-b", "lq")
    assert motion_hq
    assert len(motion_hq) < len(all_lq)

    audit = audit_store(config)
    assert audit.store.ok, audit.store.violations
    assert all(stream.verification.ok for stream in audit.streams), [
        (s.summary.device_id, s.verification.problems) for s in audit.streams
    ]


async def test_restart_continues_the_chain_with_a_declared_gap(tmp_path: Path) -> None:
    config = load_agent_config(write_site_config(tmp_path, small_camera("cam-a")))
    await record_site(config, 3.5)
    first = read_stream(config, "cam-a", "hq")
    await record_site(config, 3.5)
    both = read_stream(config, "cam-a", "hq")
    restarted = both[len(first)]
    assert restarted.header.seq == first[-1].header.seq + 1
    assert restarted.header.prev_chunk_hash == first[-1].chunk_hash
    assert restarted.header.discontinuity
    assert audit_store(config).ok


async def test_rtsp_camera_is_recorded_without_transcoding(
    tmp_path: Path, rtsp_server: RtspServerProcess
) -> None:
    devices = f"""
[[cameras]]
id = "ipcam"
source = "rtsp"
[cameras.rtsp]
hq_url = "{rtsp_server.url("/hq")}"
lq_url = "{rtsp_server.url("/lq")}"
[cameras.motion]
enabled = false
"""
    config = load_agent_config(write_site_config(tmp_path, devices))
    await record_site(config, 6.0)
    for stream in ("hq", "lq"):
        chunks = read_stream(config, "ipcam", stream)
        assert len(chunks) >= 2, stream
        assert chunks[0].header.codec.codec == "h264"
        frames = list(_decode_frames(chunks[-1]))
        assert len(frames) == len(chunks[-1].header.packets)
    assert audit_store(config).ok


async def test_a_camera_that_is_down_is_an_event_and_the_others_record(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    devices = (
        small_camera("cam-a")
        + f"""
[[cameras]]
id = "gone"
source = "rtsp"
[cameras.rtsp]
hq_url = "rtsp://127.0.0.1:{dead_port}/hq"
lq_url = "rtsp://127.0.0.1:{dead_port}/lq"
open_timeout_s = 1
[cameras.motion]
enabled = false
"""
    )
    config = load_agent_config(write_site_config(tmp_path, devices))
    site = await record_site(config, 5.0)
    lost = [e for e in site.events.recent() if e.kind is SystemEventKind.CAMERA_LOST]
    assert [e.device_id for e in lost] == ["gone"]  # once per outage, not once per retry
    assert "127.0.0.1" in lost[0].detail
    assert len(read_stream(config, "cam-a", "hq")) >= 3
    assert read_stream(config, "gone", "hq") == []
    assert audit_store(config).ok


async def test_event_mode_records_around_the_inputs_each_camera_listens_to(
    tmp_path: Path,
) -> None:
    def listening(camera_id: str, input_id: str) -> str:
        return small_camera(camera_id, hq_mode="event").replace(
            "post_buffer_s = 1", f'post_buffer_s = 1\ntrigger_inputs = ["{input_id}"]'
        )

    devices = listening("cam-a", "door") + listening("cam-b", "gate")
    devices += '\n[[inputs]]\nid = "door"\nperiod_s = 3\n'  # active at 2 s, 5 s, 8 s
    devices += '\n[[inputs]]\nid = "gate"\nperiod_s = 400\n'  # not before 300 s
    config = load_agent_config(write_site_config(tmp_path, devices))
    await record_site(config, 8.0)
    assert read_stream(config, "cam-a", "hq")  # recorded around the door's events
    assert read_stream(config, "cam-b", "hq") == []  # its gate never opened
    assert len(read_stream(config, "cam-b", "lq")) >= 5  # continuous, as configured
    assert audit_store(config).ok
