"""Retrieve when the connection is restored: what the central missed of a device's
reference stream while the site's link was down is fetched from the site.

When a site's link comes up, for each of its present devices that the central records
(`recording` central_only or both), the central's own recording of the reference stream
(`lq`) ends where its stream head ends. Everything the site recorded after that, up to the
moment the link came back (when the central's live recording takes over), is a gap in the
central's recording; if it is longer than `MIN_GAP_S`, a job with origin `reconnect` is
made for it (at most `MAX_GAP_S`: older than that, the site's retention has most likely
taken it, and an operator can still ask for it). A device the central has never recorded
has no gap: there is nothing it missed.

The same start of a link also looks for *holes* in the central's recording just before its
head (`HOLE_LOOKBACK_S`): seqs missing between two stored chunks of a device whose rule is
`always` (under it every chunk is wanted, so a missing seq is a missed chunk). A chunk
missed while the link was up is normally queued by `missed_chunks.py` once its batch is
quiet; a central stopped or killed before that forgot it, and this finds it again. A hole
that a job of the device's reference stream (in any state: one that found nothing at the
site is not asked again) covered already, or one that unfinished jobs will bring, gets no
job.

A reconnect job is an ordinary job: it waits for the window and a slot, respects the cap,
and holds its span at the site. What unfinished jobs of the device's reference stream (of
any origin) have yet to bring is not asked for again: the gap starts after the ones that
reach its start (`reference_spans_to_bring`), and none is made when what is left is
shorter than `MIN_GAP_S`. The same rule keeps the chunks the live recording missed while
the link stayed up (`missed_chunks.py`) from being asked for twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from central.catalog.catalog import Catalog
from central.catalog.records import DeviceRecord, SiteRecord
from central.central_rule import CentralRule
from central.merged_timeline import Interval
from central.retrieval.job_records import JobOrigin, RetrievalJob
from central.retrieval.retrieval_service import RetrievalService, spans_to_bring
from shared.clock import NS_PER_S, Clock
from shared.link_io.client import LinkClient
from shared.store.chunk_store import ChunkStore

_log = logging.getLogger(__name__)

REFERENCE_STREAM = "lq"
HOLE_LOOKBACK_S = 600.0
"""How far before the central's head of a stream a link's start looks for holes: more than
a missed-chunk batch lives (`missed_chunks.DEFAULT_MAX_SPAN_S` plus its quiet time)."""
RECENT_JOBS = 200
"""How many of the site's newest jobs are read to know whether a hole was asked for."""
MIN_GAP_S = 10.0
MAX_GAP_S = 31 * 86_400.0
RECORDED_AT_CENTRAL = ("central_only", "both")


class ReconnectRetrieval:
    """A `LinkWork`: on each new link, queue the gaps of the central's recording."""

    def __init__(
        self,
        catalog: Catalog,
        store: ChunkStore,
        retrievals: RetrievalService,
        *,
        clock: Clock,
        min_gap_s: float = MIN_GAP_S,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._retrievals = retrievals
        self._clock = clock
        self._min_gap_ns = int(min_gap_s * NS_PER_S)

    async def serve(self, site: SiteRecord, link: LinkClient) -> None:
        """Queue the site's gaps and holes once, at the link's start (then this work is done)."""
        del link  # the jobs run over it through RetrievalWork
        if site.remote_site_id is None:
            return
        for device, (start_ns, end_ns) in await asyncio.to_thread(self._holes, site):
            await self._queue(
                site, device, start_ns, end_ns, "the central's recording has a hole of"
            )
        now_ns = self._clock.now_ns()
        for device, start_ns in await asyncio.to_thread(self._gaps, site, now_ns):
            await self._queue(
                site, device, start_ns, now_ns, "the central missed, while the link was down,"
            )

    async def _queue(
        self, site: SiteRecord, device: DeviceRecord, start_ns: int, end_ns: int, what: str
    ) -> None:
        job = await self._retrievals.create(
            [device.device_id],
            start_ns,
            end_ns,
            quality=REFERENCE_STREAM,
            origin=JobOrigin.RECONNECT,
        )
        _log.info(
            "%s: %s: %s %.1f s; retrieval %s",
            site.name,
            device.device_id,
            what,
            (end_ns - start_ns) / NS_PER_S,
            job.job_id,
        )

    def _gaps(self, site: SiteRecord, now_ns: int) -> list[tuple[DeviceRecord, int]]:
        """(device, start of its gap) for each device the central missed (blocking)."""
        remote_site_id = site.remote_site_id
        assert remote_site_id is not None
        gaps = []
        for device in self._catalog.devices(site.site_id, present_only=True):
            if device.recording not in RECORDED_AT_CENTRAL:
                continue
            if REFERENCE_STREAM not in {s.name for s in device.streams}:
                continue
            head = self._store.stream_head(
                device.remote_device_id, REFERENCE_STREAM, site_id=remote_site_id
            )
            if head is None:
                continue
            start_ns = max(head.end_ns, now_ns - int(MAX_GAP_S * NS_PER_S))
            coming = reference_spans_to_bring(self._catalog, device.device_id, start_ns, now_ns)
            for low, high in sorted(coming):
                if low <= start_ns < high:
                    start_ns = high
            if now_ns - start_ns >= self._min_gap_ns:
                gaps.append((device, start_ns))
        return gaps

    def _holes(self, site: SiteRecord) -> list[tuple[DeviceRecord, Interval]]:
        """(device, span of missing seqs) for each hole just before the central's head of
        a device recorded under `always` that no job covered (blocking)."""
        remote_site_id = site.remote_site_id
        assert remote_site_id is not None
        recent_jobs: list[RetrievalJob] | None = None
        holes = []
        for device in self._catalog.devices(site.site_id, present_only=True):
            if device.recording not in RECORDED_AT_CENTRAL:
                continue
            if CentralRule.from_json(device.central_rule).mode != "always":
                continue
            head = self._store.stream_head(
                device.remote_device_id, REFERENCE_STREAM, site_id=remote_site_id
            )
            if head is None:
                continue
            metas = self._store.chunk_metas(
                device.remote_device_id,
                REFERENCE_STREAM,
                max(0, head.end_ns - int(HOLE_LOOKBACK_S * NS_PER_S)),
                head.end_ns,
                site_id=remote_site_id,
            )
            found = [
                (before.end_ns, after.start_ns)
                for before, after in itertools.pairwise(metas)
                if after.seq > before.seq + 1 and after.start_ns > before.end_ns
            ]
            if not found:
                continue
            if recent_jobs is None:
                recent_jobs = self._catalog.retrieval_jobs(site_id=site.site_id, limit=RECENT_JOBS)
            asked = [
                (job.start_ns, job.end_ns)
                for job in recent_jobs
                if job.quality == REFERENCE_STREAM and device.device_id in job.device_ids
            ]
            for low, high in found:
                if not any(start <= low and high <= end for start, end in asked):
                    holes.append((device, (low, high)))
        return holes


def reference_spans_to_bring(
    catalog: Catalog, device_id: str, start_ns: int, end_ns: int
) -> list[Interval]:
    """What the unfinished jobs of the device's reference stream (any origin) have yet to
    bring within [start_ns, end_ns), as `spans_to_bring` reads them (blocking). A job fetches
    every chunk that overlaps the rest of its span, so a chunk is on its way exactly when this
    is not empty for the chunk's own span."""
    jobs = [
        job
        for job in catalog.unfinished_retrieval_jobs(device_id=device_id)
        if job.quality == REFERENCE_STREAM
    ]
    spans = spans_to_bring(jobs, device_id, start_ns, end_ns)
    return [*spans.pending, *spans.running]
