"""Playback that takes every moment the central holds from its own store, and asks the
site only for the moments it does not hold, whatever the device's recording setting.

The central's holdings of the range are planned as for an export
(`central/export/quality_plan.py`): retrieved HQ wherever it holds it, its LQ elsewhere,
switched at keyframes, and gaps where it holds neither. Each held segment is read whole and
checked against the site's key (in a worker thread) and played from the store. Each gap of
that plan is filled, when the site's link is open, with the site's quality stream over the
link (`central/site_playback.py`: interactive, no retrieval cap, nothing stored); what the
site does not have either stays a gap. With the site offline the held parts play and the
gaps are announced as they are.

Joining the site's chunks to the held ones follows the plan's switching rule. A chunk of
the site starts at its keyframe, usually a little before the moment the central stops
holding: the held segment before it is then cut in decode order at that keyframe (a held
segment is never dropped whole: a site chunk whose keyframe is not after the held
segment's own keyframe is skipped, and the time until the next one is a gap). The site's
last chunk of a gap is cut in decode order where the central's next held segment starts
(the plan's gaps end at a keyframe or at the end of the range). Holes between the site's
chunks shorter than `JOIN_TOLERANCE_NS` are jitter, not gaps.

Gap notices before the first picture are held back until it comes; if nothing plays at all
the generator raises before its first piece (`NothingHeldSiteOffline` when the site could
not be asked, else `NothingToPlay`), so the route can still refuse with an ordinary error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from central.export.chunk_source import ChunkSource
from central.export.exporter import authentic_chunk, planned_range
from central.export.quality_plan import PlanGap, PlanSegment, decode_order_prefix
from central.playback import (
    NothingToPlay,
    PlaybackGap,
    PlaybackPiece,
    PlaybackWriter,
    whole_chunk_segment,
)
from shared.chunk import ChunkHeader, SignedChunk

JOIN_TOLERANCE_NS = 200_000_000  # holes shorter than this between site chunks are jitter

SiteFetch = Callable[[int, int], AsyncGenerator[SignedChunk, None]]
"""(start_ns, end_ns) -> the site's chunks of the device's quality stream overlapping the
range, in order, each checked (`central.site_playback.site_chunks` bound to a link)."""


@dataclass(frozen=True, slots=True)
class HeldRecordings:
    """A device's recordings in the central's store, under the site's and the device's own
    ids (those its chunks are signed with), and the site's key to check them."""

    source: ChunkSource
    public_key: bytes
    site_id: str
    device_id: str


class NothingHeldSiteOffline(NothingToPlay):
    """The central holds nothing of the range and the site cannot be asked."""


async def held_first_pieces(
    held: HeldRecordings, site: SiteFetch | None, start_ns: int, end_ns: int
) -> AsyncGenerator[PlaybackPiece, None]:
    """The pieces of [start_ns, end_ns): the central's own chunks where it holds them, the
    site's (when `site` is given: its link is open) elsewhere. Raises `ExportError` when a
    held chunk is not authentic, and `ChunkRejected`, `RequestFailed` or `LinkLost` from the
    site's transfer; see the module docstring for the refusals before the first piece."""
    metas, plan = await asyncio.to_thread(
        planned_range, held.source, held.site_id, held.device_id, start_ns, end_ns
    )
    if site is None and plan.origin_ns is None:
        raise NothingHeldSiteOffline(
            f"the central holds no video of {held.device_id} between these instants"
        )
    output = _Output()
    items = plan.items
    feed: _SiteFeed | None = None
    try:
        for index, item in enumerate(items):
            following = items[index + 1] if index + 1 < len(items) else None
            if isinstance(item, PlanSegment):
                meta = metas[(item.stream, item.seq)]
                segment = item
                if site is not None and isinstance(following, PlanGap):
                    # The site's first chunk of the next gap may start before this segment
                    # ends: look now, to cut this segment at that chunk's keyframe.
                    feed = _SiteFeed(site(following.start_ns, following.end_ns))
                    joined = await feed.first_starting_after(item.start_ns)
                    if joined is not None:
                        segment = _cut(item, meta.header, joined.start_ns)
                chunk = await asyncio.to_thread(
                    authentic_chunk,
                    held.source,
                    held.site_id,
                    held.device_id,
                    meta,
                    held.public_key,
                )
                for piece in await asyncio.to_thread(output.segment, segment, chunk):
                    yield piece
            elif site is None:
                for piece in output.gap(item.start_ns, item.end_ns, item.declared):
                    yield piece
            else:
                if feed is None:
                    feed = _SiteFeed(site(item.start_ns, item.end_ns))
                async with contextlib.aclosing(_from_site(feed, item, output)) as pieces:
                    async for piece in pieces:
                        yield piece
                await feed.close()
                feed = None
    finally:
        if feed is not None:
            await feed.close()
    if not output.started:
        raise NothingToPlay(
            f"no video of {held.device_id} is recorded between these instants, at the "
            "central or at its site"
        )


async def _from_site(
    feed: _SiteFeed, gap: PlanGap, output: _Output
) -> AsyncGenerator[PlaybackPiece, None]:
    """The pieces that fill `gap` from the site's chunks, and gaps where it has none."""
    while (chunk := await feed.next()) is not None:
        header = chunk.header
        if header.start_ns >= gap.end_ns:
            break
        if not _can_start_a_segment(header):
            continue
        if output.played_to_ns is None:
            if header.end_ns <= gap.start_ns:
                continue
            # The first picture may come before the range, as a plan's first segment does.
            for piece in output.gap(gap.start_ns, header.start_ns, header.discontinuity):
                yield piece
        else:
            if header.start_ns < output.played_to_ns:
                continue  # its keyframe is in what was played: it cannot join there
            if header.start_ns - output.played_to_ns > JOIN_TOLERANCE_NS:
                hole = output.gap(output.played_to_ns, header.start_ns, header.discontinuity)
                for piece in hole:
                    yield piece
        segment = _cut(whole_chunk_segment(chunk), header, gap.end_ns)
        for piece in await asyncio.to_thread(output.segment, segment, chunk):
            yield piece
    played_to_ns = gap.start_ns if output.played_to_ns is None else output.played_to_ns
    if gap.end_ns - played_to_ns > JOIN_TOLERANCE_NS:
        for piece in output.gap(played_to_ns, gap.end_ns, gap.declared):
            yield piece


def _can_start_a_segment(header: ChunkHeader) -> bool:
    return bool(header.packets) and header.packets[0].keyframe and header.end_ns > header.start_ns


def _cut(segment: PlanSegment, header: ChunkHeader, cut_ns: int) -> PlanSegment:
    """`segment` cut in decode order just before `cut_ns` (which is after its start)."""
    if cut_ns >= segment.end_ns:
        return segment
    count = min(decode_order_prefix(header, cut_ns), segment.packet_count)
    return dataclasses.replace(segment, last_packet=segment.first_packet + count - 1, end_ns=cut_ns)


class _SiteFeed:
    """The site's chunks of one gap, one at a time, with the one looked at ahead kept."""

    def __init__(self, chunks: AsyncGenerator[SignedChunk, None]) -> None:
        self._chunks = chunks
        self._ahead: SignedChunk | None = None

    async def next(self) -> SignedChunk | None:
        if self._ahead is not None:
            chunk, self._ahead = self._ahead, None
            return chunk
        return await anext(self._chunks, None)

    async def first_starting_after(self, instant_ns: int) -> ChunkHeader | None:
        """The header of the first chunk that can start a segment after `instant_ns`, kept
        to be played next; the chunks before it are passed over."""
        while (chunk := await self.next()) is not None:
            header = chunk.header
            if _can_start_a_segment(header) and header.start_ns > instant_ns:
                self._ahead = chunk
                return header
        return None

    async def close(self) -> None:
        await self._chunks.aclose()


class _Output:
    """Pieces in play order: timed from the first picture played, with the gap notices
    before it held back until it comes. `segment` muxes: call it in a worker thread."""

    def __init__(self) -> None:
        self._writer: PlaybackWriter | None = None
        self._gaps_before_start: list[PlaybackPiece] = []
        self.played_to_ns: int | None = None

    @property
    def started(self) -> bool:
        return self._writer is not None

    def gap(self, start_ns: int, end_ns: int, declared: bool) -> list[PlaybackPiece]:
        if end_ns <= start_ns:
            return []
        gap = PlaybackGap(start_ns, end_ns, declared)
        if self._writer is None:
            self._gaps_before_start.append(gap)
            return []
        return [gap]

    def segment(self, segment: PlanSegment, chunk: SignedChunk) -> list[PlaybackPiece]:
        out: list[PlaybackPiece] = []
        if self._writer is None:
            self._writer = PlaybackWriter(segment.start_ns)
            out, self._gaps_before_start = self._gaps_before_start, []
        out.extend(self._writer.pieces(segment, chunk))
        self.played_to_ns = segment.end_ns
        return out
