"""Playback held first, the site for the rest, on real H.264 in a real chunk store: the
central's LQ with a hole the site fills with its HQ, joined at keyframes in decode order
(B-frames) and decoded across both switches; the site asked only for the hole, and not at
all when the central holds the whole range; with no site, the hole is a gap; nothing held
and no site, or nothing anywhere, is refused before the first piece.

The site here is the `SiteFetch` the route binds to a link: a generator over the site's
real signed chunks (the link itself is exercised in
tests/central/api/test_playback_from_the_central.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest

from central.export.quality_plan import decode_order_prefix
from central.held_first_playback import (
    HeldRecordings,
    NothingHeldSiteOffline,
    held_first_pieces,
)
from central.playback import NothingToPlay, PlaybackGap, PlaybackInit, PlaybackMedia, PlaybackPiece
from shared.chunk import SignedChunk
from shared.clock import ManualClock
from shared.signing import SiteSigner
from shared.store import ChunkStore
from tests.central.export.recorded_site import (
    BASE_NS,
    MS,
    SITE,
    at,
    hq_clip,
    lq_clip,
    seal,
)

DEVICE = "cam-1"
MISSING_LQ_SEQ = 2  # the central lacks LQ 2 s to 3 s


@dataclass(frozen=True)
class Recorded:
    """What the site recorded (LQ chunks of 1 s from 0 s, HQ chunks of 1 s from 0.5 s)."""

    public_key: bytes
    lq: list[SignedChunk]
    hq: list[SignedChunk]


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    signer = SiteSigner.generate()
    lq = lq_clip()
    hq = hq_clip()
    return Recorded(
        signer.public_key,
        seal(lq, device_id=DEVICE, signer=signer),
        seal(hq, device_id=DEVICE, signer=signer),
    )


@dataclass
class SiteOverTheLink:
    """The site's HQ chunks as the link's transfer gives them: those overlapping the asked
    range, in order; each range asked is noted."""

    chunks: Sequence[SignedChunk]
    asked: list[tuple[int, int]] = field(default_factory=list)

    async def fetch(self, start_ns: int, end_ns: int) -> AsyncGenerator[SignedChunk, None]:
        self.asked.append((start_ns, end_ns))
        for chunk in self.chunks:
            if chunk.header.end_ns > start_ns and chunk.header.start_ns < end_ns:
                await asyncio.sleep(0)
                yield chunk


@pytest.fixture
def central_store(tmp_path: Path) -> Iterator[ChunkStore]:
    store = ChunkStore.open(
        tmp_path / "store", quota_bytes=256 << 20, hold_budget_bytes=0, clock=ManualClock()
    )
    try:
        yield store
    finally:
        store.close()


async def _hold(store: ChunkStore, chunks: Sequence[SignedChunk]) -> None:
    for chunk in chunks:
        assert await asyncio.to_thread(store.put, chunk)


async def _pieces(
    store: ChunkStore, recorded: Recorded, site: SiteOverTheLink | None, start_ms: int, end_ms: int
) -> list[PlaybackPiece]:
    held = HeldRecordings(store, recorded.public_key, SITE, DEVICE)
    fetch = None if site is None else site.fetch
    return [piece async for piece in held_first_pieces(held, fetch, at(start_ms), at(end_ms))]


def _shown(pieces: Sequence[PlaybackPiece]) -> list[tuple[object, ...]]:
    """Segments as (stream, start ms, end ms) and gaps as ("gap", start, end, declared)."""
    shown: list[tuple[object, ...]] = []
    for piece in pieces:
        if isinstance(piece, PlaybackMedia):
            shown.append((piece.stream, _ms(piece.start_ns), _ms(piece.end_ns)))
        elif isinstance(piece, PlaybackGap):
            shown.append(("gap", _ms(piece.start_ns), _ms(piece.end_ns), piece.declared))
    return shown


def _ms(instant_ns: int) -> int:
    return (instant_ns - BASE_NS) // MS


def _decoded_pictures(pieces: Sequence[PlaybackPiece], folder: Path) -> list[int]:
    """Pictures decoded from each run of pieces under one init segment (errors raise)."""
    runs: list[bytes] = []
    for piece in pieces:
        if isinstance(piece, PlaybackInit):
            runs.append(piece.data)
        elif isinstance(piece, PlaybackMedia):
            runs[-1] += piece.data
    counts = []
    for index, data in enumerate(runs):
        path = folder / f"run-{index}.mp4"
        path.write_bytes(data)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            counts.append(sum(len(packet.decode()) for packet in container.demux(stream)))
    return counts


async def test_a_hole_in_the_central_is_filled_from_the_site_joined_at_keyframes(
    central_store: ChunkStore, recorded: Recorded, tmp_path: Path
) -> None:
    await _hold(central_store, [c for c in recorded.lq if c.header.seq != MISSING_LQ_SEQ])
    site = SiteOverTheLink(recorded.hq)

    pieces = await _pieces(central_store, recorded, site, 0, 5000)

    # LQ 1 is cut at the site's HQ keyframe at 1.5 s, HQ 2 where LQ 3 starts: no gap.
    assert _shown(pieces) == [
        ("lq", 0, 1000),
        ("lq", 1000, 1500),
        ("hq", 1500, 2500),
        ("hq", 2500, 3000),
        ("lq", 3000, 4000),
        ("lq", 4000, 5000),
    ]
    assert site.asked == [(at(2000), at(3000))]  # only what the central lacks
    assert sum(isinstance(p, PlaybackInit) for p in pieces) == 3  # LQ, HQ, LQ
    lq_1, hq_2 = recorded.lq[1].header, recorded.hq[2].header
    expected = [
        5 + decode_order_prefix(lq_1, at(1500)),
        10 + decode_order_prefix(hq_2, at(3000)),
        5 + 5,
    ]
    assert expected == [8, 10 + 4, 10]  # HQ 2's prefix keeps I P B B (the next B is after)
    assert await asyncio.to_thread(_decoded_pictures, pieces, tmp_path) == expected


async def test_a_range_that_starts_in_the_hole_begins_at_the_sites_keyframe(
    central_store: ChunkStore, recorded: Recorded, tmp_path: Path
) -> None:
    await _hold(central_store, [c for c in recorded.lq if c.header.seq != MISSING_LQ_SEQ])
    site = SiteOverTheLink(recorded.hq)

    pieces = await _pieces(central_store, recorded, site, 2200, 3600)

    assert _shown(pieces) == [("hq", 1500, 2500), ("hq", 2500, 3000), ("lq", 3000, 3600)]
    assert site.asked == [(at(2200), at(3000))]
    assert await asyncio.to_thread(_decoded_pictures, pieces, tmp_path) == [14, 3]


async def test_the_site_is_not_asked_for_what_the_central_holds(
    central_store: ChunkStore, recorded: Recorded
) -> None:
    await _hold(central_store, recorded.lq)
    await _hold(central_store, [c for c in recorded.hq if c.header.seq in (1, 2)])
    site = SiteOverTheLink(recorded.hq)

    pieces = await _pieces(central_store, recorded, site, 0, 5000)

    assert site.asked == []
    assert _shown(pieces) == [
        ("lq", 0, 1000),
        ("lq", 1000, 1500),
        ("hq", 1500, 2500),
        ("hq", 2500, 3000),
        ("lq", 3000, 4000),
        ("lq", 4000, 5000),
    ]


async def test_with_the_site_offline_the_held_parts_play_and_the_hole_is_a_gap(
    central_store: ChunkStore, recorded: Recorded, tmp_path: Path
) -> None:
    await _hold(central_store, [c for c in recorded.lq if c.header.seq != MISSING_LQ_SEQ])

    pieces = await _pieces(central_store, recorded, None, 0, 5000)

    assert _shown(pieces) == [
        ("lq", 0, 1000),
        ("lq", 1000, 2000),
        ("gap", 2000, 3000, False),
        ("lq", 3000, 4000),
        ("lq", 4000, 5000),
    ]
    assert await asyncio.to_thread(_decoded_pictures, pieces, tmp_path) == [20]


async def test_what_the_site_lacks_too_is_a_gap(
    central_store: ChunkStore, recorded: Recorded
) -> None:
    await _hold(central_store, [c for c in recorded.lq if c.header.seq != MISSING_LQ_SEQ])
    site = SiteOverTheLink([c for c in recorded.hq if c.header.seq != 1])  # 1.5 s to 2.5 s

    pieces = await _pieces(central_store, recorded, site, 0, 5000)

    assert _shown(pieces) == [
        ("lq", 0, 1000),
        ("lq", 1000, 2000),
        ("gap", 2000, 2500, False),
        ("hq", 2500, 3000),
        ("lq", 3000, 4000),
        ("lq", 4000, 5000),
    ]


async def test_nothing_to_play_is_refused_before_the_first_piece(
    central_store: ChunkStore, recorded: Recorded
) -> None:
    with pytest.raises(NothingHeldSiteOffline, match="holds no video of cam-1"):
        await _pieces(central_store, recorded, None, 0, 5000)
    site = SiteOverTheLink(recorded.hq)
    with pytest.raises(NothingToPlay, match="at the central or at its site") as raised:
        await _pieces(central_store, recorded, site, 10_000, 12_000)
    assert not isinstance(raised.value, NothingHeldSiteOffline)
    assert site.asked == [(at(10_000), at(12_000))]
