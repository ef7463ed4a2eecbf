"""The running sites: one `SiteConnector` per site of the catalog, and their open links.

The registry starts a connector for every site at start, one for each site added later,
and stops a site's connector when it is removed. While a connector's link is open, the
registry knows it (`link(site_id)`), so the parts that need a site's link on demand (live
viewing, playback from the site, the site's timeline) find it without waiting: a site
without a link is answered at once as offline.

The work done over each link is a list of `LinkWork`s run side by side (the device list and
health, live feeds, recording); when one of them ends, the link has failed and the others
are cancelled with it.

The connectors make their catalog calls in one worker thread of the registry's own (see
`site_connector`), started with the registry and joined when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from central.catalog.catalog import Catalog
from central.catalog.records import SiteRecord
from central.connector_state import ConnectorPolicy, ConnectorView
from central.site_connector import Dialer, LinkWork, SiteConnector
from shared.clock import Clock
from shared.link_io.client import LinkClient

_log = logging.getLogger(__name__)


class SiteNotRunning(Exception):
    """The site has no connector (unknown, or removed)."""


class SiteRegistry:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        dialer: Dialer,
        works: Sequence[LinkWork],
        clock: Clock,
        policy: ConnectorPolicy,
        rng: random.Random,
        on_link_change: Callable[[str, LinkClient | None], None] | None = None,
    ) -> None:
        self._catalog = catalog
        self._dialer = dialer
        self._works = tuple(works)
        self._clock = clock
        self._policy = policy
        self._rng = rng
        self._on_link_change = on_link_change
        self._connectors: dict[str, SiteConnector] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._links: dict[str, LinkClient] = {}
        self._catalog_executor: ThreadPoolExecutor | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """A connector for every site in the catalog."""
        self._catalog_executor = ThreadPoolExecutor(1, thread_name_prefix="site-connectors")
        self._started = True
        sites = await asyncio.to_thread(self._catalog.sites)
        for site in sites:
            self._start_connector(site)

    async def stop(self) -> None:
        """Stop every connector and close its link (idempotent)."""
        self._started = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._connectors.clear()
        self._links.clear()
        executor, self._catalog_executor = self._catalog_executor, None
        if executor is not None:
            # The connectors have stopped: this waits for a write still under way, if any.
            await asyncio.to_thread(executor.shutdown)

    # -- what the API changes ----------------------------------------------------------------

    def site_added(self, site_id: str) -> None:
        if self._started and site_id not in self._connectors:
            self._start_connector(self._catalog.site(site_id))

    async def site_removed(self, site_id: str) -> None:
        """Stop the site's connector (closing its link) and wait until it has stopped."""
        task = self._tasks.pop(site_id, None)
        self._connectors.pop(site_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_link(site_id, None)

    def settings_changed(self, site_id: str) -> None:
        """The site's address, account or pin changed: reconnect with the new settings."""
        connector = self._connectors.get(site_id)
        if connector is not None:
            connector.settings_changed()

    def set_enabled(self, site_id: str, enabled: bool) -> None:
        connector = self._connectors.get(site_id)
        if connector is not None:
            connector.set_enabled(enabled)

    def attach(self, site_id: str, link: LinkClient) -> None:
        """A link the site opened by dialling in (its enrolment already checked)."""
        connector = self._connectors.get(site_id)
        if connector is None:
            raise SiteNotRunning(f"site {site_id} has no connector")
        connector.attach(link)

    # -- what the API reads ----------------------------------------------------------------

    def view(self, site_id: str) -> ConnectorView | None:
        connector = self._connectors.get(site_id)
        return None if connector is None else connector.view

    def link(self, site_id: str) -> LinkClient | None:
        """The site's open link, or None (never waits)."""
        link = self._links.get(site_id)
        if link is not None and not link.is_open:
            return None
        return link

    # -- inside ----------------------------------------------------------------------------

    def _start_connector(self, site: SiteRecord) -> None:
        site_id = site.site_id
        connector = SiteConnector(
            site,
            catalog=self._catalog,
            dialer=self._dialer,
            work=_RegisteredWork(self, self._works),
            clock=self._clock,
            policy=self._policy,
            rng=self._rng,
            catalog_executor=self._catalog_executor,
        )
        self._connectors[site_id] = connector
        task = asyncio.create_task(connector.run(), name=f"site-{site_id}")
        task.add_done_callback(lambda done: self._connector_ended(site_id, done))
        self._tasks[site_id] = task

    def _connector_ended(self, site_id: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            _log.error("site %s: its connector failed", site_id, exc_info=error)

    def _set_link(self, site_id: str, link: LinkClient | None) -> None:
        if link is None:
            if self._links.pop(site_id, None) is None:
                return
        else:
            self._links[site_id] = link
        if self._on_link_change is not None:
            self._on_link_change(site_id, link)


class _RegisteredWork:
    """Runs the registry's works side by side over one link, and publishes the link while
    they run. A work that fails ends the others (its error goes to the connector, which
    closes the link); a work that simply finishes leaves the others running."""

    def __init__(self, registry: SiteRegistry, works: Sequence[LinkWork]) -> None:
        self._registry = registry
        self._works = works

    async def serve(self, site: SiteRecord, link: LinkClient) -> None:
        self._registry._set_link(site.site_id, link)
        tasks = [
            asyncio.create_task(
                work.serve(site, link), name=f"{type(work).__name__}-{site.site_id}"
            )
            for work in self._works
        ]
        try:
            pending: set[asyncio.Task[None]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._registry._links.get(site.site_id) is link:
                self._registry._set_link(site.site_id, None)
