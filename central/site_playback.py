"""Chunks straight from a site for playback (the central as gateway), for what the central
does not hold itself (`central/held_first_playback.py`).

The site's chunks of a range come over its link with the link's transfer at interactive
priority (each one checked against the site's key and chain before it is used, as any chunk
that reaches the central) and are handed on as they arrive, as fast as the link and the
client allow: no retrieval cap applies, and nothing is stored at the central. A bounded
queue between the transfer and the player holds a few chunks, so a slow client slows the
transfer down (its credit is granted only as chunks are taken) instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from shared.chunk import SignedChunk
from shared.link import messages as m
from shared.link_io.client import LinkClient
from shared.transfer_acceptance import AcceptedChunk, TransferCursor, TransferExpectation

QUEUED_CHUNKS = 4


async def site_chunks(
    link: LinkClient, expectation: TransferExpectation, start_ns: int, end_ns: int
) -> AsyncGenerator[SignedChunk, None]:
    """The site's chunks of `expectation`'s stream overlapping [start_ns, end_ns), in
    order. Raises `ChunkRejected`, `RequestFailed` or `LinkLost` from the transfer; closing
    the generator cancels the transfer."""
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
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                await queue.put(None)  # the end (or the failure, raised below)

    fetching = asyncio.create_task(fetch(), name=f"site-playback-{expectation.device_id}")
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
        await fetching  # its error, if it failed
    finally:
        if not fetching.done():
            fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fetching
