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

A reconnect job is an ordinary job: it waits for the window and a slot, respects the cap,
and holds its span at the site. If the central already has an unfinished reconnect job for
the device, none is added (the running one continues from its cursor, and the next link
adds what followed).
"""

from __future__ import annotations

import asyncio
import logging

from central.catalog.catalog import Catalog
from central.catalog.records import DeviceRecord, SiteRecord
from central.retrieval.job_records import JobOrigin
from central.retrieval.retrieval_service import RetrievalService
from shared.clock import NS_PER_S, Clock
from shared.link_io.client import LinkClient
from shared.store.chunk_store import ChunkStore

_log = logging.getLogger(__name__)

REFERENCE_STREAM = "lq"
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
        """Queue the site's gaps once, at the link's start (then this work is done)."""
        del link  # the jobs run over it through RetrievalWork
        if site.remote_site_id is None:
            return
        now_ns = self._clock.now_ns()
        for device, start_ns in await asyncio.to_thread(self._gaps, site, now_ns):
            job = await self._retrievals.create(
                [device.device_id],
                start_ns,
                now_ns,
                quality=REFERENCE_STREAM,
                origin=JobOrigin.RECONNECT,
            )
            _log.info(
                "%s: the central missed %.0f s of %s while the link was down; retrieval %s",
                site.name,
                (now_ns - start_ns) / NS_PER_S,
                device.device_id,
                job.job_id,
            )

    def _gaps(self, site: SiteRecord, now_ns: int) -> list[tuple[DeviceRecord, int]]:
        """(device, start of its gap) for each device the central missed (blocking)."""
        remote_site_id = site.remote_site_id
        assert remote_site_id is not None
        waiting = {
            job.device_ids[0]
            for job in self._catalog.unfinished_retrieval_jobs(site_id=site.site_id)
            if job.origin is JobOrigin.RECONNECT
        }
        gaps = []
        for device in self._catalog.devices(site.site_id, present_only=True):
            if device.recording not in RECORDED_AT_CENTRAL or device.device_id in waiting:
                continue
            if REFERENCE_STREAM not in {s.name for s in device.streams}:
                continue
            head = self._store.stream_head(
                device.remote_device_id, REFERENCE_STREAM, site_id=remote_site_id
            )
            if head is None or now_ns - head.end_ns < self._min_gap_ns:
                continue
            start_ns = max(head.end_ns, now_ns - int(MAX_GAP_S * NS_PER_S))
            gaps.append((device, start_ns))
        return gaps
