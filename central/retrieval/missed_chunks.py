"""Retrieve the chunks the central's live recording missed while the link stayed up.

The central records a device's reference stream (`lq`) from the live stream it relays
(`central/relay_recording.py`). A chunk whose packets did not all arrive intact (joined in
the middle of it after a reconnection, a packet lost or dropped on the way, altered) is
missed: nothing is stored, but its seal came, so its span is known and the site still holds
it. The recording hands such a chunk here (`chunk_missed`), and this queues its span as an
ordinary retrieval job of origin `reconnect` at quality `lq`: it waits for the window and a
slot, keeps the cap, holds its span at the site, and the store keeps each chunk once.

Coalescing, per device: a missed chunk joins the device's open batch, whose span runs from
its first chunk's start to its last chunk's end. The batch becomes one job once no chunk of
the device was missed for `quiet_s` (central clock), or at once when its span reaches
`max_span_s`; the next missed chunk opens a new batch. Chunks between two missed ones that
the recording did store are fetched again with the batch and recognised by the store (a few
LQ chunks at most, for one job and one hold instead of several).

Before the job is made, every chunk of the batch that an unfinished job of the device's
reference stream (any origin: the reconnect job of a returning link often covers the chunk
the new live stream joined in the middle of) has yet to bring is left out
(`reference_spans_to_bring`); no job is made when none is left, and otherwise the job spans
the first to the last chunk left. `close` makes the jobs of the open batches at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from central.catalog.catalog import Catalog
from central.catalog.errors import CatalogError
from central.merged_timeline import Interval
from central.retrieval.job_records import JobOrigin, RetrievalJob
from central.retrieval.reconnect_retrieval import REFERENCE_STREAM, reference_spans_to_bring
from central.retrieval.retrieval_service import RetrievalRefused, RetrievalService
from shared.clock import NS_PER_S, Clock

_log = logging.getLogger(__name__)

DEFAULT_QUIET_S = 5.0
"""A batch becomes a job once no chunk of its device was missed for this long."""
DEFAULT_MAX_SPAN_S = 120.0
"""... or as soon as its span is this long, so a long run of misses is not held back."""


@dataclass
class _Batch:
    """The missed chunks of one device not yet queued: their spans, in arrival order."""

    chunks: list[Interval] = field(default_factory=list)
    last_missed_mono_ns: int = 0
    waiter: asyncio.Task[None] | None = None

    @property
    def span_ns(self) -> int:
        return max(end for _, end in self.chunks) - min(start for start, _ in self.chunks)


class MissedChunkRetrieval:
    """Collects each device's missed chunks and queues them as retrieval jobs; see the
    module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        retrievals: RetrievalService,
        *,
        clock: Clock,
        quiet_s: float = DEFAULT_QUIET_S,
        max_span_s: float = DEFAULT_MAX_SPAN_S,
    ) -> None:
        if quiet_s <= 0 or max_span_s <= 0:
            raise ValueError("the quiet time and the longest span must be positive")
        self._catalog = catalog
        self._retrievals = retrievals
        self._clock = clock
        self._quiet_ns = round(quiet_s * NS_PER_S)
        self._max_span_ns = round(max_span_s * NS_PER_S)
        self._batches: dict[str, _Batch] = {}
        self._queueing: set[asyncio.Task[None]] = set()  # waiting for quiet, or making jobs
        self.jobs_made = 0
        self.chunks_already_coming = 0

    def chunk_missed(self, device_id: str, start_ns: int, end_ns: int) -> None:
        """The live recording of `device_id` (the central's id) missed the chunk spanning
        [start_ns, end_ns) of its reference stream. Call it from the event loop."""
        if end_ns <= start_ns:
            end_ns = start_ns + 1  # a chunk of one instant still names where it is
        batch = self._batches.get(device_id)
        if batch is None:
            batch = self._batches[device_id] = _Batch()
            batch.waiter = self._start(self._queue_when_quiet(device_id, batch), device_id)
        batch.chunks.append((start_ns, end_ns))
        batch.last_missed_mono_ns = self._clock.monotonic_ns()
        if batch.span_ns >= self._max_span_ns:
            self._take(device_id, batch)
            self._start_queueing(device_id, batch)

    @property
    def waiting_devices(self) -> int:
        """Devices with missed chunks not yet queued."""
        return len(self._batches)

    async def flush(self) -> None:
        """Queue every open batch now, and wait until every job being made is made."""
        for device_id, batch in list(self._batches.items()):
            self._take(device_id, batch)
            self._start_queueing(device_id, batch)
        # A finished task removes itself from the set: wait on a copy.
        await asyncio.gather(*list(self._queueing), return_exceptions=True)

    async def close(self) -> None:
        """Make the jobs of what was missed so far (before the catalog closes)."""
        await self.flush()

    # -- inside ---------------------------------------------------------------------------------

    def _take(self, device_id: str, batch: _Batch) -> None:
        """Close the batch: later misses open a new one; its quiet wait ends."""
        if self._batches.get(device_id) is batch:
            del self._batches[device_id]
        waiter, batch.waiter = batch.waiter, None
        if waiter is not None and waiter is not asyncio.current_task():
            waiter.cancel()

    def _start_queueing(self, device_id: str, batch: _Batch) -> None:
        self._start(self._queue(device_id, batch), device_id)

    def _start(self, work: Coroutine[Any, Any, None], device_id: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=f"missed-chunks-{device_id}")
        self._queueing.add(task)
        task.add_done_callback(self._queueing.discard)
        return task

    async def _queue_when_quiet(self, device_id: str, batch: _Batch) -> None:
        while True:
            quiet_ns = self._clock.monotonic_ns() - batch.last_missed_mono_ns
            if quiet_ns >= self._quiet_ns:
                break
            await self._clock.sleep((self._quiet_ns - quiet_ns) / NS_PER_S)
        self._take(device_id, batch)
        await self._queue(device_id, batch)

    async def _queue(self, device_id: str, batch: _Batch) -> None:
        """Make the batch's job, leaving out what unfinished jobs already bring; a failure
        is logged, naming the device and the span (the chunks stay at the site)."""
        low = min(start for start, _ in batch.chunks)
        high = max(end for _, end in batch.chunks)
        try:
            left = await asyncio.to_thread(self._not_coming, device_id, batch.chunks)
            self.chunks_already_coming += len(batch.chunks) - len(left)
            if not left:
                return
            low = min(start for start, _ in left)
            high = max(end for _, end in left)
            job = await self._retrievals.create(
                [device_id],
                low,
                high,
                quality=REFERENCE_STREAM,
                origin=JobOrigin.RECONNECT,
            )
        except (CatalogError, RetrievalRefused) as exc:
            _log.error(
                "%s: cannot queue the %d chunks the live recording missed in [%d, %d): %s",
                device_id,
                len(batch.chunks),
                low,
                high,
                exc,
            )
            return
        self.jobs_made += 1
        _log_job(device_id, len(left), job)

    def _not_coming(self, device_id: str, chunks: list[Interval]) -> list[Interval]:
        """The chunks no unfinished job of the device's reference stream will bring: those
        that overlap nothing such a job has yet to bring (blocking)."""
        low = min(start for start, _ in chunks)
        high = max(end for _, end in chunks)
        coming = reference_spans_to_bring(self._catalog, device_id, low, high)
        return [
            (start, end)
            for start, end in chunks
            if not any(start < to and end > since for since, to in coming)
        ]


def _log_job(device_id: str, chunks: int, job: RetrievalJob) -> None:
    _log.info(
        "%s: the live recording missed %d chunks in %.1f s; retrieval %s",
        device_id,
        chunks,
        (job.end_ns - job.start_ns) / NS_PER_S,
        job.job_id,
    )
