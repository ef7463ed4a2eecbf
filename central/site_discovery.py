"""Finding sites to add, for the API: zeroconf browsing and address scans run as jobs.

A browse listens for `_siteline._tcp.local.` for a few seconds (the zeroconf instance is
made on first use and closed with the central). A scan of an address range runs as a task
of its own; the API starts it, reads its progress (addresses done of the total, sites found
so far) and may cancel it. At most `MAX_RUNNING_SCANS` scans run at once, and finished
scans are forgotten after `KEEP_FINISHED_S`. Each candidate says whether the central knows
it already (the catalog has a site at that address and port, or with that identity).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zeroconf import InterfaceChoice
from zeroconf.asyncio import AsyncZeroconf

from central.address_scan import AddressScanner, ScanProgress, parse_scan_ports, parse_scan_range
from central.catalog.catalog import Catalog
from central.site_browser import FoundSite, browse_sites
from shared.clock import NS_PER_S, Clock

MAX_RUNNING_SCANS = 2
KEEP_FINISHED_S = 600.0


class TooManyScans(Exception):
    """A scan is refused while `MAX_RUNNING_SCANS` are running."""


@dataclass
class ScanJob:
    scan_id: int
    range_text: str
    ports: tuple[int, ...]
    started_ns: int
    progress: ScanProgress
    task: asyncio.Task[None] | None = None
    finished_ns: int | None = None
    error: str | None = None
    cancelled: bool = False


class SiteDiscovery:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        clock: Clock,
        scanner: AddressScanner | None = None,
        zeroconf_factory: Callable[[], AsyncZeroconf] | None = None,
    ) -> None:
        self._catalog = catalog
        self._clock = clock
        self._scanner = scanner or AddressScanner()
        self._zeroconf_factory = zeroconf_factory or (
            lambda: AsyncZeroconf(interfaces=InterfaceChoice.All)
        )
        self._zeroconf: AsyncZeroconf | None = None
        self._scans: dict[int, ScanJob] = {}
        self._ids = itertools.count(1)

    async def browse(self, duration_s: float) -> list[FoundSite]:
        if self._zeroconf is None:
            self._zeroconf = self._zeroconf_factory()
        return await browse_sites(self._zeroconf, duration_s, self._clock)

    def start_scan(self, range_text: str, ports: Sequence[object]) -> ScanJob:
        """Start a scan; `ScanRangeError` names bad input, `TooManyScans` when busy."""
        addresses = parse_scan_range(range_text)
        checked_ports = parse_scan_ports(ports)
        self._forget_old()
        running = sum(1 for job in self._scans.values() if job.finished_ns is None)
        if running >= MAX_RUNNING_SCANS:
            raise TooManyScans(f"{running} scans are running; wait for one or cancel it")
        job = ScanJob(
            next(self._ids),
            range_text,
            checked_ports,
            self._clock.now_ns(),
            ScanProgress(0, addresses.size, ()),
        )

        def on_progress(progress: ScanProgress) -> None:
            job.progress = progress

        async def run() -> None:
            try:
                await self._scanner.scan(addresses, checked_ports, on_progress=on_progress)
            except asyncio.CancelledError:
                job.cancelled = True
                raise
            except Exception as exc:  # reported to whoever reads the job
                job.error = str(exc) or type(exc).__name__
            finally:
                job.finished_ns = self._clock.now_ns()

        job.task = asyncio.create_task(run(), name=f"scan-{job.scan_id}")
        self._scans[job.scan_id] = job
        return job

    def scan(self, scan_id: int) -> ScanJob | None:
        return self._scans.get(scan_id)

    def scans(self) -> list[ScanJob]:
        self._forget_old()
        return sorted(self._scans.values(), key=lambda j: j.scan_id, reverse=True)

    async def cancel_scan(self, scan_id: int) -> bool:
        job = self._scans.get(scan_id)
        if job is None:
            return False
        if job.task is not None and not job.task.done():
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        return True

    def known_site_id(self, found: FoundSite) -> str | None:
        """The central's id of the site `found` is, if it was added already."""
        for site in self._catalog.sites():
            if found.site_id is not None and site.remote_site_id == found.site_id:
                return site.site_id
            if site.port == found.port and site.address in found.addresses:
                return site.site_id
        return None

    async def close(self) -> None:
        for job in list(self._scans.values()):
            await self.cancel_scan(job.scan_id)
        if self._zeroconf is not None:
            await self._zeroconf.async_close()
            self._zeroconf = None

    def _forget_old(self) -> None:
        limit_ns = self._clock.now_ns() - round(KEEP_FINISHED_S * NS_PER_S)
        for scan_id, job in list(self._scans.items()):
            if job.finished_ns is not None and job.finished_ns < limit_ns:
                del self._scans[scan_id]
