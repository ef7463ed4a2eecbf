"""What the central does with a site while its link is open: keep the device list current,
and turn the site's health into notifications.

On every new link the device list is read again (a camera added while the link was down
shows up at once; what changed is kept for the next "update hardware" to report and told of
in a notification, see `unreported_hardware.py`) and the site's status is reconciled with
the open notifications, since events sent while the link was down are lost with it. Then the
site's events are followed: a camera lost or restored, storage low or back to normal raise
and clear notifications as they happen; the status is read again every `status_interval_s`
as a safety net. A camera restored is also when its stream formats may have changed (a
camera reconfigured at the site drops its stream, then delivers the new format), so the
device list is read again then too. Each status read also tells `retention_trends` how far
the site's retention has deleted each stream; what the link saw is written to the catalog
when it ends, for the jobs queued while the site is away (`central/retrieval/away_risk.py`).

The site's storage has two notifications, because they end in different ways:

- ``storage_low``: the disk under the store cannot hold the quota (`storage_low` event, or a
  status whose `disk_free_bytes` is below `free_bytes`, the room the quota may still take).
  Cleared by a `storage_ok` event or a status with room enough.
- ``storage_full``: the site could not store a chunk at all (`storage_full` event: the map or
  the disk is full and nothing can be deleted). Free disk space does not prove the store takes
  chunks again (held chunks may fill it, or the map), so only proof that it does clears it: a
  status in which a stream's newest chunk ends after the full report, both instants on the
  site's clock. The report's instant is remembered per site while the central runs; for a
  site whose report is not known (the central restarted with the notification open), the
  status read when its link opens stands in for it, so the first chunk stored after that
  clears a notification left open.

The catalog calls (each a SQLite transaction; the writes wait for their fsync) run in a worker
thread, never on the event loop: a thousand sites that come online together each write their
device list. A site's calls are made one at a time, in the order its events and status reads
asked for them, as they were when they ran on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar

from central.catalog.catalog import Catalog
from central.catalog.errors import CatalogError
from central.catalog.records import HardwareDiff, SiteRecord
from central.retrieval.retention_trends import RetentionTrends
from central.site_device_list import discovered_devices
from central.unreported_hardware import UnreportedHardware
from shared.api_input import BadRequest, parse_instant
from shared.clock import Clock
from shared.link_io.client import LinkClient

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

CAMERA_LOST = "camera_lost"
STORAGE_LOW = "storage_low"
STORAGE_FULL = "storage_full"
_EVENT_KINDS = ("camera_lost", "camera_restored", "storage_low", "storage_ok", "storage_full")


def describe_diff(diff: HardwareDiff) -> str:
    parts = [
        f"{len(diff.added)} added",
        f"{len(diff.removed)} removed",
        f"{len(diff.returned)} returned",
        f"{len(diff.changed)} changed",
    ]
    return ", ".join(parts)


class SiteLinkWork:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        clock: Clock,
        status_interval_s: float = 60.0,
        catalog_executor: Executor | None = None,
        unreported: UnreportedHardware | None = None,
        retention_trends: RetentionTrends | None = None,
    ) -> None:
        """`catalog_executor`: where the catalog calls run (None: the default executor);
        `unreported`: where the device list changes found on a new link are kept for the
        operator and told of (None: one of this object's own, whose notifications only
        "update hardware" of another would clear); `retention_trends`: where each status
        read tells how far the site's retention has deleted each stream (None: nowhere)."""
        self._catalog = catalog
        self._trends = retention_trends
        self._unreported = (
            UnreportedHardware(catalog, clock=clock) if unreported is None else unreported
        )
        self._clock = clock
        self._status_interval_s = status_interval_s
        self._catalog_executor = catalog_executor
        self._in_turn: dict[str, asyncio.Lock] = {}  # per site served: its calls in order
        # Per site with `storage_full` (maybe) open: the site's instant after which a stored
        # chunk proves its store takes chunks again.
        self._full_since: dict[str, int] = {}

    async def serve(self, site: SiteRecord, link: LinkClient) -> None:
        in_turn = self._in_turn[site.site_id] = asyncio.Lock()
        try:
            await self._serve(site, link)
        finally:
            if self._trends is not None:
                # What the link saw of the site's retention outlives it: a job queued while
                # the site is away is judged by it (`central/retrieval/away_risk.py`).
                with contextlib.suppress(CatalogError):
                    await self._in_catalog(site, self._trends.save, site.site_id)
            if self._in_turn.get(site.site_id) is in_turn:
                del self._in_turn[site.site_id]

    async def _serve(self, site: SiteRecord, link: LinkClient) -> None:
        await self._read_device_list(site, link)
        status = await link.status()
        site_now = _instant(status.get("now"))
        if site_now is not None:
            self._full_since.setdefault(site.site_id, site_now)
        if self._trends is not None:
            self._trends.link_started(site.site_id)
        await self._reconcile(site, status)
        polling = asyncio.create_task(self._poll_status(site, link))
        try:
            async with link.events(_EVENT_KINDS) as events:
                async for event in events:
                    await self._on_event(
                        site, event.kind, event.device_id, event.at_ns, event.details
                    )
                    if event.kind == "camera_restored":
                        await self._read_device_list(site, link)
        finally:
            polling.cancel()

    async def _read_device_list(self, site: SiteRecord, link: LinkClient) -> None:
        """Read the site's devices, apply them, and keep and tell of what changed."""
        found = discovered_devices(await link.devices())
        diff = await self._in_catalog(site, self._catalog.apply_hardware, site.site_id, found)
        _log.info("site %s: device list read (%s)", site.site_id, describe_diff(diff))
        await self._unreported.applied_by_itself(site.site_id, diff)

    async def _in_catalog(self, site: SiteRecord, call: Callable[..., _T], *args: Any) -> _T:
        """`call(*args)`, a catalog call for `site`, in the catalog executor, after the
        site's calls asked before it."""
        async with self._in_turn[site.site_id]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._catalog_executor, functools.partial(call, *args)
            )

    async def _poll_status(self, site: SiteRecord, link: LinkClient) -> None:
        while True:
            await self._clock.sleep(self._status_interval_s)
            await self._reconcile(site, await link.status())

    async def _reconcile(self, site: SiteRecord, status: Mapping[str, Any]) -> None:
        if self._trends is not None:
            self._trends.observe(site.site_id, status, self._clock.now_ns())
        for camera in status.get("cameras", []):
            up = bool(camera["up"])
            await self._camera(site, camera["id"], up=up, detail="not giving pictures")
        storage = status.get("storage", {})
        disk_free = storage.get("disk_free_bytes")
        room_needed = storage.get("free_bytes")
        if isinstance(disk_free, int) and isinstance(room_needed, int):
            await self._storage(
                site, low=disk_free < room_needed, detail="the disk cannot hold the quota"
            )
        full_since = self._full_since.get(site.site_id)
        if full_since is not None and _newest_chunk_end(status) > full_since:
            del self._full_since[site.site_id]
            now_ns = self._clock.now_ns()
            await self._in_catalog(
                site, self._catalog.clear_notification, STORAGE_FULL, site.site_id, None, now_ns
            )

    async def _on_event(
        self,
        site: SiteRecord,
        kind: str,
        remote_device_id: str,
        at_ns: int,
        details: Mapping[str, Any],
    ) -> None:
        # The site sends its text as `detail` (agent/link_server.py).
        detail = str(
            details.get("detail") or details.get("message") or details.get("reason") or kind
        )
        if kind in ("camera_lost", "camera_restored"):
            up = kind == "camera_restored"
            await self._camera(site, remote_device_id, up=up, detail=detail)
        elif kind in ("storage_low", "storage_ok"):
            await self._storage(site, low=kind == "storage_low", detail=detail)
        elif kind == "storage_full":
            self._full_since[site.site_id] = at_ns
            await self._in_catalog(
                site, self._catalog.raise_notification,
                STORAGE_FULL, site.site_id, None,
                f"site storage full, recording stopped: {detail}", self._clock.now_ns(),
            )  # fmt: skip

    async def _camera(
        self, site: SiteRecord, remote_device_id: str, *, up: bool, detail: str
    ) -> None:
        now_ns = self._clock.now_ns()
        await self._in_catalog(
            site, self._camera_notice, site.site_id, remote_device_id, up, detail, now_ns
        )

    def _camera_notice(
        self, site_id: str, remote_device_id: str, up: bool, detail: str, now_ns: int
    ) -> None:
        """Raise or clear the camera's notification (blocking)."""
        device = self._catalog.device_by_remote(site_id, remote_device_id)
        if device is None:
            return  # not granted to the central's account, or not yet listed
        if up:
            self._catalog.clear_notification(CAMERA_LOST, site_id, device.device_id, now_ns)
        else:
            self._catalog.raise_notification(
                CAMERA_LOST,
                site_id,
                device.device_id,
                f"camera {device.name!r} lost: {detail}",
                now_ns,
            )

    async def _storage(self, site: SiteRecord, *, low: bool, detail: str) -> None:
        now_ns = self._clock.now_ns()
        if low:
            await self._in_catalog(
                site, self._catalog.raise_notification,
                STORAGE_LOW, site.site_id, None, f"site storage low: {detail}", now_ns,
            )  # fmt: skip
        else:
            await self._in_catalog(
                site, self._catalog.clear_notification, STORAGE_LOW, site.site_id, None, now_ns
            )


def _instant(value: object) -> int | None:
    """UTC ns of an instant as the site's status writes it; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return parse_instant("instant", value)
    except BadRequest:
        return None


def _newest_chunk_end(status: Mapping[str, Any]) -> int:
    """The latest end of any stream's newest chunk in a site's status (-1 with none)."""
    ends = [_instant(stream.get("newest")) for stream in status.get("streams", [])]
    return max((end for end in ends if end is not None), default=-1)
