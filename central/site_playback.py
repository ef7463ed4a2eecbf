"""Playback straight from a site, for devices recorded only there (the central as gateway).

The site's high-quality chunks of the range come over its link with the link's transfer
(each one checked against the site's key and chain before it is used, as any chunk that
reaches the central) and are played as they arrive, as fast as the link and the client
allow: no retrieval cap applies, and nothing is stored at the central. A bounded queue
between the transfer and the player holds a few chunks, so a slow client slows the
transfer down (its credit is granted only as chunks are taken) instead of filling memory.
Holes between chunks are announced as gaps (declared when the chunk after the hole says the
site did not record).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from central.playback import (
    PlaybackGap,
    PlaybackPiece,
    PlaybackWriter,
    whole_chunk_segment,
)
from shared.chunk import SignedChunk
from shared.link import messages as m
from shared.link_io.client import LinkClient
from shared.transfer_acceptance import AcceptedChunk, TransferCursor, TransferExpectation

QUEUED_CHUNKS = 4
JOIN_TOLERANCE_NS = 200_000_000  # holes shorter than this are jitter, not gaps


class SitePlaybackEnded(Exception):
    """The transfer failed before the range was played; the message says why."""


async def site_playback_pieces(
    link: LinkClient, expectation: TransferExpectation, start_ns: int, end_ns: int
) -> AsyncGenerator[PlaybackPiece, None]:
    """Pieces of [start_ns, end_ns) of `expectation`'s stream at the site. Raises
    `ChunkRejected`, `RequestFailed` or `LinkLost` from the transfer."""
    queue: asyncio.Queue[SignedChunk | None] = asyncio.Queue(QUEUED_CHUNKS)

    async def commit(accepted: AcceptedChunk) -> None:
        await queue.put(accepted.chunk)

    async def fetch() -> None:
        try:
            await link.transfer(
                expectation,
                TransferCursor(),
                start_ns,
                end_ns,
                commit=commit,
                priority=m.Priority.INTERACTIVE,
            )
        finally:
            await queue.put(None)

    fetching = asyncio.create_task(fetch(), name=f"site-playback-{expectation.device_id}")
    try:
        writer: PlaybackWriter | None = None
        previous_end_ns: int | None = None
        while (chunk := await queue.get()) is not None:
            header = chunk.header
            if not header.packets or header.end_ns <= start_ns:
                continue
            if writer is None:
                writer = PlaybackWriter(header.start_ns)
            elif previous_end_ns is not None and (
                header.start_ns - previous_end_ns > JOIN_TOLERANCE_NS
            ):
                yield PlaybackGap(previous_end_ns, header.start_ns, header.discontinuity)
            previous_end_ns = header.end_ns
            for piece in writer.pieces(whole_chunk_segment(chunk), chunk):
                yield piece
        await fetching  # its error, if it failed
    finally:
        if not fetching.done():
            fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fetching
