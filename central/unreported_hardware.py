"""The changes to sites' device lists that the central applied by itself and no operator
has been told of yet, and the notification that tells of them.

The central reads a site's device list again on every new link (and when a camera comes
back, since a camera reconfigured at the site drops its stream and then delivers another
format) and applies it at once (`site_link_work.py`), so a camera added at a site shows up
as soon as the site is back. By the time an operator asks for "update hardware", the change
is already in the catalog, and a fresh reading finds nothing new. So each change applied by
itself is kept here, per site, and the next "update hardware" reports it together with what
its own reading found, as one diff (`central.catalog.hardware.DeviceListChanges`); then it
is forgotten.

So that the operator learns of it without asking, each change applied by itself also opens
the site's ``hardware_changed`` notification (site set, no device), whose message names the
devices and what changed of them (`hardware_description.py`) for everything not reported
yet. A further change replaces it: the open one is cleared and a new one, naming all of it,
is raised. The operator's "update hardware" clears it. The notification is in the catalog,
so it survives a restart of the central; the changes themselves are kept in memory only: a
central restarted between a change and the operator's question reports only what its own
readings found since, and the message of the notification it had open tells the rest (a
later change replaces that notification, which stays in the history with its message).
"""

from __future__ import annotations

import asyncio
import contextlib

from central.catalog.catalog import Catalog
from central.catalog.errors import NotFound
from central.catalog.hardware import DeviceListChanges
from central.catalog.records import HardwareDiff
from central.hardware_description import hardware_message
from shared.clock import Clock

HARDWARE_CHANGED = "hardware_changed"


class UnreportedHardware:
    """See the module docstring. Used from the event loop; the catalog calls run in worker
    threads, one change at a time, so a report and a change never interleave."""

    def __init__(self, catalog: Catalog, *, clock: Clock) -> None:
        self._catalog = catalog
        self._clock = clock
        self._by_site: dict[str, DeviceListChanges] = {}
        self._one_at_a_time = asyncio.Lock()

    async def applied_by_itself(self, site_id: str, diff: HardwareDiff) -> None:
        """The central applied `diff` to the site's devices without being asked: keep it,
        and tell of everything not reported yet in the site's notification."""
        if diff.is_empty:
            return
        async with self._one_at_a_time:
            changes = self._by_site.setdefault(site_id, DeviceListChanges())
            changes.add(diff)
            await asyncio.to_thread(self._announce, site_id, changes.diff())

    async def report(self, site_id: str, diff: HardwareDiff) -> HardwareDiff:
        """What to tell the operator whose reading applied `diff`: that and every change not
        reported yet, as one diff. The site has nothing unreported afterwards, and its
        notification is cleared."""
        async with self._one_at_a_time:
            changes = self._by_site.pop(site_id, DeviceListChanges())
            changes.add(diff)
            await asyncio.to_thread(
                self._catalog.clear_notification,
                HARDWARE_CHANGED,
                site_id,
                None,
                self._clock.now_ns(),
            )
            return changes.diff()

    def forget(self, site_id: str) -> None:
        """The site was removed (its notifications go with it in the catalog)."""
        self._by_site.pop(site_id, None)

    def _announce(self, site_id: str, unreported: HardwareDiff) -> None:
        """Replace the site's notification by one telling of `unreported` (blocking)."""
        now_ns = self._clock.now_ns()
        self._catalog.clear_notification(HARDWARE_CHANGED, site_id, None, now_ns)
        if unreported.is_empty:
            return  # changed and changed back: nothing left to tell
        with contextlib.suppress(NotFound):  # the site was removed meanwhile
            self._catalog.raise_notification(
                HARDWARE_CHANGED, site_id, None, hardware_message(unreported), now_ns
            )
