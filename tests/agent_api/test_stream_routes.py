"""The REST API's streams against a real agent API on loopback: site events as Server-Sent
Events, stored chunks as a download that verifies and resumes, live video as fragmented MP4
that decodes. Events and packets go into the real event hub and live relay, as the
recorders put them there."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import av
import pytest

from agent.event_stream import event_id
from agent.system_events import SystemEvent, SystemEventKind
from shared.api_input import format_instant
from shared.chunk import SignedChunk
from shared.chunk_records import MEDIA_TYPE, ChunkRecordReader, read_chunk_records
from shared.clock import NS_PER_S
from shared.fragmented_mp4 import mime_type
from shared.media import MediaPacket
from shared.transfer_acceptance import (
    TransferCursor,
    TransferExpectation,
    accept_chunk,
)
from tests.agent_api.api_site import ApiSite, running_api
from tests.recording.h264_samples import Clip, encode, moving_box
from tests.shared.mp4_layout import Box, read_boxes, track_run
from tests.store.store_chunks import ChunkFactory

S = NS_PER_S
T0_NS = 1_700_000_000 * S
GUARD_S = 30.0  # a broken stream fails the test here instead of at pytest's timeout
EVENTS = "/api/v1/events"
GOP = 10


@pytest.fixture(scope="module")
def clip() -> Clip:
    return encode(moving_box(40), fps=10, gop=GOP, stream="lq")


# -- helpers ----------------------------------------------------------------------------------


class EventStream:
    """The client side of a text/event-stream response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def block(self) -> dict[str, str] | None:
        """The next block's fields (comments under ":"); None at the end of the stream."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(GUARD_S):
            while True:
                line = await self.response.content.readline()
                if not line:
                    return None
                text = line.decode("utf-8").rstrip("\n")
                if not text:
                    if fields:
                        return fields
                    continue
                name, _, value = text.partition(":")
                fields[name] = value.removeprefix(" ")

    async def event(self) -> dict[str, str]:
        """The next event, skipping comments and control blocks."""
        while True:
            block = await self.block()
            assert block is not None, "the stream ended"
            if "event" in block:
                return block


OpenEvents = Callable[..., Awaitable[EventStream]]
"""(token, query="", headers=None) -> an open event stream."""


@pytest.fixture
async def open_events(api: ApiSite) -> AsyncIterator[OpenEvents]:
    """Opens event streams; closes them after the test."""
    responses: list[aiohttp.ClientResponse] = []

    async def opener(
        token: str, query: str = "", headers: dict[str, str] | None = None
    ) -> EventStream:
        response = await api.client.get(
            api.url(EVENTS + query),
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
        )
        responses.append(response)
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        stream = EventStream(response)
        opening = await stream.block()  # the subscription exists once this arrived
        assert opening is not None
        assert opening["retry"] == "3000"
        return stream

    yield opener
    for response in responses:
        response.close()


def _event(kind: SystemEventKind, device_id: str, at_s: int, detail: str = "") -> SystemEvent:
    return SystemEvent(kind, device_id, T0_NS + at_s * S, detail)


def _seen(block: dict[str, str]) -> tuple[str, str | None]:
    data = json.loads(block["data"])
    assert block["event"] == data["kind"]
    return data["kind"], data["device_id"]


async def _download(api: ApiSite, token: str, path: str, **params: str) -> bytes:
    async with api.client.get(
        api.url(path), headers={"Authorization": f"Bearer {token}"}, params=params
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == MEDIA_TYPE
        return await response.read()


def _verified(api: ApiSite, chunks: list[SignedChunk], stream: str) -> list[int]:
    """The seqs of chunks that pass the receiver's checks in order (signature, payload,
    each naming the one before it)."""
    expectation = TransferExpectation(api.config.site.id, "cam-a", stream, api.signer.public_key)
    cursor = TransferCursor()
    for chunk in chunks:
        accepted = accept_chunk(
            expectation, cursor, chunk.header_bytes, chunk.signature, chunk.payload
        )
        assert accepted.missing_before == 0
        cursor = cursor.after(accepted.chunk)
    return [chunk.header.seq for chunk in chunks]


def _samples(boxes: list[Box]) -> int:
    return sum(len(track_run(b.child("traf/trun")).sizes) for b in boxes if b.kind == b"moof")


def _whole_boxes(data: bytes) -> list[Box]:
    """The complete top-level boxes at the start of `data`."""
    end = 0
    while end + 8 <= len(data):
        size = int.from_bytes(data[end : end + 4], "big")
        if end + size > len(data):
            break
        end += size
    return read_boxes(data[:end])


def _decode(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        return list(container.decode(video=0))


def _luma(frame: av.VideoFrame) -> bytes:
    plane = frame.planes[0]
    rows = bytes(plane)
    return b"".join(
        rows[r * plane.line_size : r * plane.line_size + frame.width] for r in range(frame.height)
    )


def _ffprobe_frames(path: Path) -> str:
    return subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"),
            *("-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


# -- events -----------------------------------------------------------------------------------


async def test_events_arrive_as_server_sent_events_only_for_granted_devices(
    api: ApiSite, open_events: OpenEvents
) -> None:
    admin = await open_events(await api.login())
    clerk = await open_events(await api.login("clerk"))
    published = [
        _event(SystemEventKind.CAMERA_LOST, "cam-b", 1, "no packets for 10 s"),
        _event(SystemEventKind.MOTION_STARTED, "cam-a", 2),
        _event(SystemEventKind.STORAGE_LOW, "", 3, "disk nearly full"),
        _event(SystemEventKind.INPUT_ACTIVE, "door", 4),
    ]
    for event in published:
        api.events.publish(event)
    admin_seen = [await admin.event() for _ in published]
    clerk_seen = [await clerk.event() for _ in published[1:]]
    assert [_seen(b) for b in admin_seen] == [
        ("camera_lost", "cam-b"),
        ("motion_started", "cam-a"),
        ("storage_low", None),  # the site's own event: no device
        ("input_active", "door"),
    ]
    # The clerk may use cam-a and the door, not cam-b; the site's own events go to everyone.
    assert [_seen(b) for b in clerk_seen] == [_seen(b) for b in admin_seen[1:]]
    first = admin_seen[0]
    assert first["id"] == event_id(published[0])
    assert json.loads(first["data"]) == {
        "kind": "camera_lost",
        "device_id": "cam-b",
        "at": format_instant(T0_NS + S),
        "at_ns": T0_NS + S,
        "details": {"detail": "no packets for 10 s"},
    }


async def test_events_filtered_by_device_and_kind(api: ApiSite, open_events: OpenEvents) -> None:
    token = await api.login()
    stream = await open_events(token, "?device=cam-a&device=door&kind=motion_started")
    api.events.publish(_event(SystemEventKind.MOTION_STARTED, "cam-b", 1))
    api.events.publish(_event(SystemEventKind.CAMERA_LOST, "cam-a", 2))
    api.events.publish(_event(SystemEventKind.STORAGE_FULL, "", 3))
    api.events.publish(_event(SystemEventKind.MOTION_STARTED, "door", 4))
    api.events.publish(_event(SystemEventKind.MOTION_STARTED, "cam-a", 5))
    assert [_seen(await stream.event()) for _ in range(2)] == [
        ("motion_started", "door"),
        ("motion_started", "cam-a"),
    ]


async def test_event_filters_refuse_bad_values_by_name(api: ApiSite) -> None:
    token = await api.login()
    clerk = await api.login("clerk")
    cases = [
        (token, "?kind=explosion", 400, "kind: not an event kind: 'explosion' (known: "),
        (token, "?since=1", 400, "since: unknown parameter"),
        (token, "?device=cam-z", 404, "no device 'cam-z'"),
        (clerk, "?device=cam-b", 404, "no device 'cam-b'"),
    ]
    for who, query, status, message in cases:
        answer, data, _ = await api.call("GET", EVENTS + query, token=who)
        assert answer == status, (query, data)
        assert isinstance(data, dict)
        assert data["error"]["message"].startswith(message), data
    answer, data, _ = await api.call(
        "GET", EVENTS, token=token, headers={"Last-Event-ID": "yesterday"}
    )
    assert (answer, data) == (
        400,
        {
            "error": {
                "code": "bad_request",
                "message": "Last-Event-ID: not an event id of this API: 'yesterday'",
            }
        },
    )


async def test_last_event_id_resumes_from_the_history(
    api: ApiSite, open_events: OpenEvents
) -> None:
    earlier = [
        _event(SystemEventKind.MOTION_STARTED, "cam-a", 1),
        _event(SystemEventKind.MOTION_ENDED, "cam-a", 2),
        _event(SystemEventKind.CAMERA_LOST, "cam-a", 3),
        _event(SystemEventKind.CAMERA_RESTORED, "cam-a", 4),
    ]
    for event in earlier:
        api.events.publish(event)
    token = await api.login()
    resumed = await open_events(token, headers={"Last-Event-ID": event_id(earlier[1])})
    api.events.publish(_event(SystemEventKind.MOTION_STARTED, "cam-a", 5))
    assert [_seen(await resumed.event())[0] for _ in range(3)] == [
        "camera_lost",
        "camera_restored",
        "motion_started",
    ]
    # An id no longer in the history resumes after its instant.
    gone = f"{T0_NS + 3 * S}-00000000"
    by_time = await open_events(token, headers={"Last-Event-ID": gone})
    assert [_seen(await by_time.event())[0] for _ in range(2)] == [
        "camera_restored",
        "motion_started",
    ]


async def test_a_client_that_falls_behind_is_told_how_many_events_it_lost(
    api: ApiSite, open_events: OpenEvents
) -> None:
    stream = await open_events(await api.login())
    # More events in one go than a subscriber's queue holds (1000): the oldest are dropped.
    for second in range(1005):
        api.events.publish(_event(SystemEventKind.MOTION_STARTED, "cam-a", second))
    notice = await stream.block()
    assert notice is not None
    assert (notice["event"], json.loads(notice["data"])) == ("events_dropped", {"dropped": 5})
    assert "id" not in notice  # a reconnection resumes after the last real event
    first = await stream.event()
    assert json.loads(first["data"])["at_ns"] == T0_NS + 5 * S


async def test_heartbeats_keep_the_stream_open_and_it_ends_cleanly_at_shutdown(
    tmp_path: Path,
) -> None:
    async with running_api(tmp_path / "site", heartbeat_s=0.05) as site:
        token = await site.login()
        async with site.client.get(
            site.url(EVENTS), headers={"Authorization": f"Bearer {token}"}
        ) as response:
            stream = EventStream(response)
            await stream.block()  # retry and the opening comment
            assert await stream.block() == {"": "heartbeat"}
            await site.app.shutdown()  # what the server runs first when it stops
            while (block := await stream.block()) is not None:
                assert block == {"": "heartbeat"}
            assert response.content.is_eof()  # a clean end: the body was terminated


async def test_the_event_stream_ends_with_its_session(tmp_path: Path) -> None:
    async with running_api(tmp_path / "site", heartbeat_s=0.05) as site:
        token = await site.login()
        async with site.client.get(
            site.url(EVENTS), headers={"Authorization": f"Bearer {token}"}
        ) as response:
            stream = EventStream(response)
            await stream.block()
            assert (await site.call("POST", "/api/v1/auth/logout", token=token))[0] == 204
            while await stream.block() is not None:
                pass
            assert response.content.is_eof()


# -- chunk download ---------------------------------------------------------------------------


async def test_a_range_downloads_in_seq_order_and_verifies(api: ApiSite) -> None:
    factory = ChunkFactory(api.signer, site_id=api.config.site.id)
    stored = factory.run(10, device_id="cam-a", stream="hq", payload_size=20_000)
    await api.put(stored)
    await api.put(factory.run(3, device_id="cam-a", stream="lq"))
    token = await api.login("clerk")
    path = "/api/v1/devices/cam-a/chunks"
    # Chunks are 2 s long from T0: [T0+4 s, T0+16 s) overlaps chunks 2..7.
    body = await _download(
        api,
        token,
        path,
        stream="hq",
        start=format_instant(T0_NS + 4 * S),
        end=format_instant(T0_NS + 16 * S),
    )
    chunks = list(read_chunk_records(io.BytesIO(body)))
    assert _verified(api, chunks, "hq") == [2, 3, 4, 5, 6, 7]
    assert chunks == stored[2:8]
    # A range starting days before the recordings finds them (and only them).
    everything = await _download(
        api,
        token,
        path,
        stream="hq",
        start=format_instant(T0_NS - 3 * 86_400 * S),
        end=format_instant(T0_NS + 3600 * S),
    )
    assert _verified(api, list(read_chunk_records(io.BytesIO(everything))), "hq") == list(range(10))
    nothing = await _download(
        api,
        token,
        path,
        stream="hq",
        start=format_instant(T0_NS + 3600 * S),
        end=format_instant(T0_NS + 7200 * S),
    )
    assert nothing == b""


async def test_a_cut_download_resumes_with_after_seq_to_the_same_bytes(api: ApiSite) -> None:
    factory = ChunkFactory(api.signer, site_id=api.config.site.id)
    await api.put(factory.run(8, device_id="cam-a", stream="hq", payload_size=50_000))
    token = await api.login()
    path = "/api/v1/devices/cam-a/chunks"
    query = {"stream": "hq", "start": format_instant(T0_NS), "end": format_instant(T0_NS + 60 * S)}
    whole = await _download(api, token, path, **query)
    # The connection breaks in the middle of the fourth record.
    async with api.client.get(
        api.url(path), headers={"Authorization": f"Bearer {token}"}, params=query
    ) as response:
        received = await response.content.readexactly(int(len(whole) * 3.5 / 8))
    reader = ChunkRecordReader()
    kept = reader.feed(received)
    assert [c.header.seq for c in kept] == [0, 1, 2]
    rest = await _download(api, token, path, **query, after_seq=str(kept[-1].header.seq))
    assert received[: reader.bytes_read] + rest == whole
    assert _verified(api, [*kept, *read_chunk_records(io.BytesIO(rest))], "hq") == list(range(8))


async def test_download_parameters_are_checked_by_name(api: ApiSite) -> None:
    token = await api.login()
    path = "/api/v1/devices/cam-a/chunks"
    good = {"stream": "hq", "start": "2023-11-14T22:00:00Z", "end": "2023-11-14T23:00:00Z"}
    cases = [
        ({"start": good["start"], "end": good["end"]}, "stream: missing (required)"),
        ({**good, "stream": "audio"}, "stream: 'audio' is not a stream of device 'cam-a'"),
        ({**good, "start": "noon"}, "start: not an ISO 8601 instant: 'noon'"),
        ({**good, "end": good["start"]}, "end: must be after start"),
        ({**good, "after_seq": "-1"}, "after_seq: not a chunk seq"),
        ({**good, "after_seq": "x" * 40}, "after_seq: not a chunk seq"),
        ({**good, "limit": "3"}, "limit: unknown parameter"),
    ]
    for params, message in cases:
        status, data, _ = await api.call("GET", path, token=token, params=params)
        assert status == 400, (params, data)
        assert isinstance(data, dict)
        assert data["error"]["message"].startswith(message), data


# -- live -------------------------------------------------------------------------------------


async def test_live_mp4_starts_with_the_cached_gop_and_decodes(
    api: ApiSite, clip: Clip, tmp_path: Path
) -> None:
    """A viewer arriving mid-GOP gets the GOP so far at once, then the rest as it comes."""
    api.live.set_codec("cam-a", "lq", clip.codec)
    for packet in clip.packets[: GOP + 5]:
        api.live.publish("cam-a", packet)
    token = await api.login("clerk")
    received = b""
    async with api.client.get(
        api.url("/api/v1/devices/cam-a/live"),
        headers={"Authorization": f"Bearer {token}"},
        params={"stream": "lq"},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == mime_type(clip.codec)
        async with asyncio.timeout(GUARD_S):
            # The cached part of the second GOP arrives before anything new is published.
            while _samples(_whole_boxes(received)) < 5:
                received += await response.content.readany()
            for packet in clip.packets[GOP + 5 :]:
                api.live.publish("cam-a", packet)
            while _samples(_whole_boxes(received)) < len(clip.packets) - GOP:
                received += await response.content.readany()
    boxes = read_boxes(received)
    assert [b.kind for b in boxes[:3]] == [b"ftyp", b"moov", b"moof"]
    frames = await asyncio.to_thread(_decode, received)
    assert frames[0].key_frame
    expected = await asyncio.to_thread(_decode_packets, clip, clip.packets[GOP:])
    assert [_luma(f) for f in frames] == expected
    path = tmp_path / "live.mp4"
    path.write_bytes(received)
    assert await asyncio.to_thread(_ffprobe_frames, path) == str(len(clip.packets) - GOP)


async def test_a_viewer_that_leaves_is_unsubscribed(api: ApiSite, clip: Clip) -> None:
    api.live.set_codec("cam-a", "hq", clip.codec)
    hq = [_on_stream(p, "hq") for p in clip.packets]
    api.live.publish("cam-a", hq[0])
    token = await api.login()
    async with api.client.get(
        api.url("/api/v1/devices/cam-a/live"),
        headers={"Authorization": f"Bearer {token}"},
        params={"stream": "hq"},
    ) as response:
        assert response.status == 200
        await response.content.readany()
        assert api.live.viewers("cam-a", "hq") == 1
    # The handler finds the client gone at its next write.
    for packet in hq[1:]:
        if api.live.viewers("cam-a", "hq") == 0:
            break
        api.live.publish("cam-a", packet)
        await asyncio.sleep(0.05)
    assert api.live.viewers("cam-a", "hq") == 0


async def test_a_viewer_waiting_for_a_silent_camera_is_unsubscribed_when_it_leaves(
    tmp_path: Path,
) -> None:
    async with running_api(tmp_path / "site", heartbeat_s=0.05) as site:
        token = await site.login()
        # cam-b has no codec yet: the response waits for its first pictures.
        waiting = asyncio.create_task(
            site.client.get(
                site.url("/api/v1/devices/cam-b/live"),
                headers={"Authorization": f"Bearer {token}"},
                params={"stream": "lq"},
            )
        )
        for _ in range(200):
            if site.live.viewers("cam-b", "lq") == 1:
                break
            await asyncio.sleep(0.01)
        assert site.live.viewers("cam-b", "lq") == 1
        waiting.cancel()  # the client gives up: its connection closes
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(200):
            if site.live.viewers("cam-b", "lq") == 0:
                break
            await asyncio.sleep(0.01)
        assert site.live.viewers("cam-b", "lq") == 0


async def test_live_ends_cleanly_when_the_agent_stops(api: ApiSite, clip: Clip) -> None:
    api.live.set_codec("cam-a", "lq", clip.codec)
    api.live.publish("cam-a", clip.packets[0])
    token = await api.login()
    async with api.client.get(
        api.url("/api/v1/devices/cam-a/live"),
        headers={"Authorization": f"Bearer {token}"},
        params={"stream": "lq"},
    ) as response:
        await response.content.readany()
        await api.app.shutdown()
        async with asyncio.timeout(GUARD_S):
            await response.read()
        assert response.content.is_eof()
    assert api.live.viewers("cam-a", "lq") == 0


async def test_live_refuses_streams_that_are_not_video(api: ApiSite) -> None:
    token = await api.login()
    cases = [
        ("cam-a.mic", {"stream": "audio"}, "stream: 'audio' of device 'cam-a.mic' carries audio"),
        ("door", {"stream": "state"}, "stream: 'state' of device 'door' carries events"),
        ("cam-a", {"stream": "mq"}, "stream: 'mq' is not a stream of device 'cam-a'"),
        ("cam-a", {}, "stream: missing (required)"),
    ]
    for device_id, params, message in cases:
        status, data, _ = await api.call(
            "GET", f"/api/v1/devices/{device_id}/live", token=token, params=params
        )
        assert status == 400, (device_id, data)
        assert isinstance(data, dict)
        assert data["error"]["message"].startswith(message), data


def _on_stream(packet: MediaPacket, stream: str) -> MediaPacket:
    return MediaPacket(
        stream, packet.pts, packet.dts, packet.duration, packet.keyframe, packet.data, 0
    )


def _decode_packets(clip: Clip, packets: list[MediaPacket]) -> list[bytes]:
    decoder = av.CodecContext.create("h264", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    decoder.extradata = clip.codec.extradata
    frames = []
    for packet in packets:
        av_packet = av.Packet(packet.data)
        av_packet.pts, av_packet.dts = packet.pts, packet.dts
        frames += decoder.decode(av_packet)
    return [_luma(f) for f in frames + decoder.decode(None)]
