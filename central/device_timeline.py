"""Gathering one device's merged timeline: the central's store, the site, retrievals not
finished (running and pending).

The central's own holdings come from its chunk store, where a site's chunks are kept under
the site's and the device's own ids (those the chunks are signed with). What the site holds
is asked over its open link, with a short time limit, so a slow or vanished site costs a
timeline request at most `site_timeout_s`; a site without a link is not asked at all. The
last answer per device is kept, and reused (marked as cached, with its age) when the site
cannot be asked and the cached answer covers the range.

Streams: a camera's reference stream is ``lq`` and its high-quality stream ``hq``; a device
with other streams (a microphone, an input) has its first stream as both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from central.catalog.catalog import Catalog
from central.catalog.records import DeviceRecord
from central.merged_timeline import Interval, Period, merge_timeline
from central.site_registry import SiteRegistry
from shared.clock import Clock
from shared.link_io.client import LinkLost, RequestFailed
from shared.store.chunk_store import ChunkStore

SITE_TIMEOUT_S = 3.0

RetrievalRanges = Callable[[str, int, int], Sequence[Interval]]
"""(device_id, start_ns, end_ns) -> parts retrievals not finished have yet to bring of the
device there: those running, or those pending (blocking: it is called in a worker thread)."""


@dataclass(frozen=True, slots=True)
class DeviceTimeline:
    device_id: str
    start_ns: int
    end_ns: int
    periods: list[Period]
    site_answer: str  # "current", "cached" or "unavailable"
    site_answer_at_ns: int | None


@dataclass(frozen=True, slots=True)
class _SiteAnswer:
    start_ns: int
    end_ns: int
    spans: list[Interval]
    at_ns: int


def reference_stream(device: DeviceRecord) -> str:
    names = [s.name for s in device.streams]
    return "lq" if "lq" in names else (names[0] if names else "lq")


def quality_stream(device: DeviceRecord) -> str:
    names = [s.name for s in device.streams]
    return "hq" if "hq" in names else reference_stream(device)


class DeviceTimelines:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        store: ChunkStore,
        registry: SiteRegistry,
        *,
        clock: Clock,
        pending: RetrievalRanges | None = None,
        running: RetrievalRanges | None = None,
        site_timeout_s: float = SITE_TIMEOUT_S,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._registry = registry
        self._clock = clock
        self._pending = pending
        self._running = running
        self._site_timeout_s = site_timeout_s
        self._answers: dict[str, _SiteAnswer] = {}

    async def timeline(self, device_id: str, start_ns: int, end_ns: int) -> DeviceTimeline:
        """`NotFound` for an unknown device."""
        device = await asyncio.to_thread(self._catalog.device, device_id)
        site = await asyncio.to_thread(self._catalog.site, device.site_id)
        lq: list[Interval] = []
        hq: list[Interval] = []
        if site.remote_site_id is not None:
            lq_name = reference_stream(device)
            lq = await self._held(site.remote_site_id, device, lq_name, start_ns, end_ns)
            hq_name = quality_stream(device)
            if hq_name != reference_stream(device):
                hq = await self._held(site.remote_site_id, device, hq_name, start_ns, end_ns)
        answer, freshness = await self._site_holds(device, start_ns, end_ns)
        # Pending first: a stream that starts between the two reads shows as running (which
        # hides pending); one whose job stops running between them (its link lost) is left
        # out of this one answer.
        pending = await self._retrievals(self._pending, device_id, start_ns, end_ns)
        running = await self._retrievals(self._running, device_id, start_ns, end_ns)
        periods = merge_timeline(
            start_ns,
            end_ns,
            central_lq=lq,
            retrieved_hq=hq,
            site_holds=None if answer is None else answer.spans,
            pending=pending,
            running=running,
        )
        return DeviceTimeline(
            device_id,
            start_ns,
            end_ns,
            periods,
            freshness,
            None if answer is None else answer.at_ns,
        )

    async def _retrievals(
        self, ranges: RetrievalRanges | None, device_id: str, start_ns: int, end_ns: int
    ) -> Sequence[Interval]:
        if ranges is None:
            return ()
        return await asyncio.to_thread(ranges, device_id, start_ns, end_ns)

    async def _held(
        self, site_id: str, device: DeviceRecord, stream: str, start_ns: int, end_ns: int
    ) -> list[Interval]:
        spans = await asyncio.to_thread(
            self._store.timeline,
            device.remote_device_id,
            stream,
            start_ns,
            end_ns,
            site_id=site_id,
        )
        return [(span.start_ns, span.end_ns) for span in spans]

    async def _site_holds(
        self, device: DeviceRecord, start_ns: int, end_ns: int
    ) -> tuple[_SiteAnswer | None, str]:
        link = self._registry.link(device.site_id)
        if link is not None and device.present:
            try:
                async with asyncio.timeout(self._site_timeout_s):
                    body = await link.timeline(
                        device.remote_device_id, quality_stream(device), start_ns, end_ns
                    )
                answer = _SiteAnswer(start_ns, end_ns, _spans(body), self._clock.now_ns())
                self._answers[device.device_id] = answer
                return answer, "current"
            except (LinkLost, RequestFailed, TimeoutError, KeyError, TypeError, ValueError):
                pass  # fall back to what was known
        cached = self._answers.get(device.device_id)
        if cached is not None and cached.start_ns <= start_ns and end_ns <= cached.end_ns:
            return cached, "cached"
        return None, "unavailable"


def _spans(body: dict[str, Any]) -> list[Interval]:
    spans: list[Interval] = []
    for stream in body["streams"]:
        for span in stream["spans"]:
            spans.append((int(span["start_ns"]), int(span["end_ns"])))
    return spans
