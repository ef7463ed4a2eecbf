"""Keeps the store within its age limits and quota, and watches the disk under it.

Retention runs in bounded batches through the store writer, so recorders' chunks are written
between batches and recording never stalls behind a large deletion. The store also keeps
itself under the quota on each write; this loop does the age limits, hold expiry, and the
steady work, and raises `storage_low` when the disk cannot hold the configured quota.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

from agent.event_hub import EventHub
from agent.store_writer import StoreWriter
from agent.system_events import SystemEvent, SystemEventKind
from shared.clock import Clock
from shared.sizes import format_size
from shared.store.errors import StoreError

_log = logging.getLogger(__name__)

SITE_DEVICE = "site"
"""Device id under which events of the site as a whole are published."""


class RetentionLoop:
    """Runs retention every `interval_s` and reports disk trouble; see the module docstring."""

    def __init__(
        self,
        writer: StoreWriter,
        events: EventHub,
        *,
        clock: Clock,
        interval_s: float = 5.0,
        batch_chunks: int = 64,
    ) -> None:
        self._writer = writer
        self._events = events
        self._clock = clock
        self._interval_s = interval_s
        self._batch_chunks = batch_chunks
        self._storage_low = False
        self.deleted_chunks = 0

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            await self.run_once()
            await self._clock.sleep(self._interval_s)

    async def run_once(self) -> None:
        """Retention until nothing more is due, then the disk check."""
        try:
            while True:
                report = await self._writer.enforce_retention(max_chunks=self._batch_chunks)
                self.deleted_chunks += report.deleted_chunks
                if not report.pending:
                    break
                await asyncio.sleep(0)  # let recorders' writes in between batches
        except StoreError as exc:
            _log.error("retention failed: %s", exc)
            self._publish(SystemEventKind.STORAGE_ERROR, f"retention failed: {exc}")
        await self._check_disk()

    async def _check_disk(self) -> None:
        store = self._writer.store
        usage = await asyncio.to_thread(store.usage)
        free = await asyncio.to_thread(lambda: shutil.disk_usage(store.path).free)
        # The store may still grow by (quota - live); the file's own free pages are reused
        # first, so this is a conservative test of whether the quota can be reached.
        needed = max(0, usage.quota_bytes - usage.live_bytes)
        low = free < needed
        if low and not self._storage_low:
            self._publish(
                SystemEventKind.STORAGE_LOW,
                f"disk has {format_size(free)} free but the quota may need "
                f"{format_size(needed)} more; retention will delete earlier than configured",
            )
        elif not low and self._storage_low:
            self._publish(SystemEventKind.STORAGE_OK, f"disk has {format_size(free)} free")
        self._storage_low = low

    def _publish(self, kind: SystemEventKind, detail: str) -> None:
        self._events.publish(SystemEvent(kind, SITE_DEVICE, self._clock.now_ns(), detail))
