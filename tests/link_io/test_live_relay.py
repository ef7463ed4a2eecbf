"""The live relay: cached GOP for a new viewer, a slow viewer skips to the next keyframe,
the site is told when a device gets its first viewer and loses its last, viewers that
take seals get each stored chunk's seal after its packets, and a notice wakes a viewer's
reader once."""

from __future__ import annotations

import asyncio

from shared.chunk import GENESIS_HASH, ChunkDraft, SignedChunk, seal_chunk
from shared.live_relay import (
    LIVE_NOTICE,
    LiveBatch,
    LiveRelay,
    LiveSeal,
    LiveViewer,
    codec_wire,
)
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.signing import SiteSigner

CODEC = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=64, height=64)
SIGNER = SiteSigner.generate()


def _packet(index: int, *, key: bool, size: int = 10) -> MediaPacket:
    return MediaPacket("lq", index, index, 1, key, bytes([index % 256]) * size, index)


async def test_a_new_viewer_starts_with_the_codec_and_the_cached_gop() -> None:
    relay = LiveRelay()
    relay.set_codec("cam", "lq", CODEC)
    for index in range(5):
        relay.publish("cam", _packet(index, key=index in (0, 3)))
    with relay.subscribe("cam", "lq") as viewer:
        codec, packets = await viewer.next_batch()
    assert codec is not None
    assert [p.pts for p in packets] == [3, 4]  # from the last keyframe


async def test_a_viewer_that_falls_behind_waits_for_the_next_keyframe() -> None:
    relay = LiveRelay(viewer_backlog_bytes=100)
    relay.set_codec("cam", "lq", CODEC)
    with relay.subscribe("cam", "lq") as viewer:
        relay.publish("cam", _packet(0, key=True, size=60))
        relay.publish("cam", _packet(1, key=False, size=60))  # overflows: backlog dropped
        relay.publish("cam", _packet(2, key=False, size=10))  # not a keyframe: skipped
        relay.publish("cam", _packet(3, key=True, size=10))
        _, packets = await viewer.next_batch()
    assert [p.pts for p in packets] == [3]
    assert viewer.dropped_packets == 3


def test_the_first_and_last_viewer_of_a_device_are_announced() -> None:
    relay = LiveRelay()
    calls: list[tuple[str, bool]] = []
    relay.on_watched = lambda device, watched: calls.append((device, watched))
    with relay.subscribe("cam", "lq"), relay.subscribe("cam", "hq"):
        assert calls == [("cam", True)]
    assert calls == [("cam", True), ("cam", False)]


# -- seals: a stored chunk's signed header follows its packets ----------------------------------


def _sealed(first: int, last: int) -> SignedChunk:
    """A real sealed chunk of the packets `first..last` (the relay passes it on untouched)."""
    packets = tuple(_packet(i, key=i == first) for i in range(first, last + 1))
    draft = ChunkDraft("cam", "lq", first, last + 1, CODEC, packets)
    return seal_chunk(
        draft,
        site_id="site",
        seq=first,
        prev_chunk_hash=GENESIS_HASH,
        discontinuity=False,
        signer=SIGNER,
    )


async def _drain(viewer: LiveViewer, count: int) -> list[LiveBatch | LiveSeal]:
    return [await viewer.next_item() for _ in range(count)]


async def test_a_viewer_with_seals_gets_each_seal_after_the_chunks_packets() -> None:
    relay = LiveRelay()
    relay.set_codec("cam", "lq", CODEC)
    with relay.subscribe("cam", "lq", seals=True) as viewer, relay.subscribe("cam", "lq") as plain:
        for index in range(3):
            relay.publish("cam", _packet(index, key=index == 0))
        relay.publish("cam", _packet(3, key=True))  # cuts chunk 0..2
        chunk = _sealed(0, 2)
        relay.publish_sealed(chunk)
        relay.publish("cam", _packet(4, key=False))
        first, seal, after = await _drain(viewer, 3)
        codec, packets = await plain.next_batch()
    assert isinstance(first, LiveBatch)
    assert first.codec is not None
    assert [p.pts for p in first.packets] == [0, 1, 2, 3]
    assert seal == LiveSeal(chunk.header_bytes, chunk.signature)
    assert isinstance(after, LiveBatch)
    assert after.codec is None
    assert [p.pts for p in after.packets] == [4]
    # A viewer that did not ask for seals sees the packets only.
    assert codec is not None
    assert [p.pts for p in packets] == [0, 1, 2, 3, 4]


async def test_a_viewer_that_falls_behind_keeps_its_seals() -> None:
    relay = LiveRelay(viewer_backlog_bytes=2000)
    relay.set_codec("cam", "lq", CODEC)
    with relay.subscribe("cam", "lq", seals=True) as viewer:
        relay.publish("cam", _packet(0, key=True, size=100))
        relay.publish_sealed(chunk := _sealed(0, 0))
        relay.publish("cam", _packet(1, key=False, size=1900))  # overflows: packets dropped
        relay.publish("cam", _packet(2, key=True, size=10))
        seal, batch = await _drain(viewer, 2)
    assert seal == LiveSeal(chunk.header_bytes, chunk.signature)
    assert isinstance(batch, LiveBatch)
    assert [p.pts for p in batch.packets] == [2]
    assert viewer.dropped_packets == 2
    assert viewer.dropped_seals == 0


async def test_seals_alone_are_bounded_by_the_backlog_oldest_first() -> None:
    relay = LiveRelay(viewer_backlog_bytes=1000)
    relay.set_codec("cam", "lq", CODEC)
    chunks = [_sealed(i, i) for i in range(10)]
    with relay.subscribe("cam", "lq", seals=True) as viewer:
        for chunk in chunks:
            relay.publish_sealed(chunk)
        size = len(chunks[0].header_bytes) + 64
        kept = 1000 // size
        items = await _drain(viewer, kept)
    assert viewer.dropped_seals == 10 - kept
    assert items == [LiveSeal(c.header_bytes, c.signature) for c in chunks[10 - kept :]]


async def test_a_codec_change_comes_with_the_packets_after_it() -> None:
    relay = LiveRelay()
    relay.set_codec("cam", "lq", CODEC)
    other = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=32, height=32)
    with relay.subscribe("cam", "lq", seals=True) as viewer:
        relay.publish("cam", _packet(0, key=True))
        relay.publish_sealed(chunk := _sealed(0, 0))
        relay.set_codec("cam", "lq", other)
        relay.publish("cam", _packet(1, key=True))
        old, seal, new = await _drain(viewer, 3)
    assert isinstance(old, LiveBatch)
    assert old.codec == codec_wire(CODEC)
    assert [p.pts for p in old.packets] == [0]
    assert seal == LiveSeal(chunk.header_bytes, chunk.signature)
    assert isinstance(new, LiveBatch)
    assert new.codec == codec_wire(other)
    assert [p.pts for p in new.packets] == [1]


async def test_a_notice_wakes_the_viewer_once_ahead_of_the_waiting_packets() -> None:
    relay = LiveRelay()
    relay.set_codec("cam", "lq", CODEC)
    with relay.subscribe("cam", "lq") as viewer:
        waiting = asyncio.create_task(viewer.next_batch_or_notice())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing to take yet
        viewer.notify()
        assert await asyncio.wait_for(waiting, 1) is LIVE_NOTICE
        relay.publish("cam", _packet(0, key=True))
        relay.publish("cam", _packet(1, key=False))
        viewer.notify()
        viewer.notify()  # two notices before the reader came: it hears of them once
        notice = await viewer.next_batch_or_notice()
        batch = await viewer.next_batch_or_notice()
        waiting = asyncio.create_task(viewer.next_batch_or_notice())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # the notice was taken once, the packets once
        waiting.cancel()
    assert notice is LIVE_NOTICE
    assert isinstance(batch, LiveBatch)
    assert batch.codec is not None
    assert [p.pts for p in batch.packets] == [0, 1]


async def test_a_reader_of_batches_only_is_not_woken_by_a_notice() -> None:
    relay = LiveRelay()
    relay.set_codec("cam", "lq", CODEC)
    with relay.subscribe("cam", "lq") as viewer:
        reading = asyncio.create_task(viewer.next_batch())
        viewer.notify()
        await asyncio.sleep(0.01)
        assert not reading.done()
        relay.publish("cam", _packet(0, key=True))
        _, packets = await asyncio.wait_for(reading, 1)
    assert [p.pts for p in packets] == [0]
