"""The live relay: cached GOP for a new viewer, a slow viewer skips to the next keyframe,
and the site is told when a device gets its first viewer and loses its last."""

from __future__ import annotations

from agent.live_relay import LiveRelay
from shared.media import CodecConfig, MediaKind, MediaPacket

CODEC = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=64, height=64)


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
