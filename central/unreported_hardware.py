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
so it survives a restart of the central, and so do the changes: each site's are written to
the catalog (a setting, `unreported_hardware/SITE`: every device touched, as it was before
and as it is) with each change, and read back by a central started again, so the report
after a restart is the one it would have been without.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from central.catalog.catalog import Catalog
from central.catalog.errors import CatalogError, NotFound
from central.catalog.hardware import DeviceListChanges
from central.catalog.records import DeviceRecord, HardwareDiff
from central.catalog.sqlite_rows import device_from_row, device_params
from central.hardware_description import hardware_message
from shared.clock import Clock

HARDWARE_CHANGED = "hardware_changed"
SETTING_PREFIX = "unreported_hardware/"

_log = logging.getLogger(__name__)


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
            changes = await self._changes_of(site_id)
            changes.add(diff)
            await asyncio.to_thread(self._keep_and_announce, site_id, changes)

    async def report(self, site_id: str, diff: HardwareDiff) -> HardwareDiff:
        """What to tell the operator whose reading applied `diff`: that and every change not
        reported yet, as one diff. The site has nothing unreported afterwards, and its
        notification is cleared."""
        async with self._one_at_a_time:
            changes = await self._changes_of(site_id)
            del self._by_site[site_id]
            changes.add(diff)
            await asyncio.to_thread(self._reported, site_id)
            return changes.diff()

    async def forget(self, site_id: str) -> None:
        """The site was removed (its notifications go with it in the catalog)."""
        async with self._one_at_a_time:
            self._by_site.pop(site_id, None)
            await asyncio.to_thread(self._catalog.set_setting, SETTING_PREFIX + site_id, None)

    async def _changes_of(self, site_id: str) -> DeviceListChanges:
        """The site's changes not reported yet: in memory, else as the catalog kept them."""
        changes = self._by_site.get(site_id)
        if changes is None:
            changes = await asyncio.to_thread(self._read_back, site_id)
            self._by_site[site_id] = changes
        return changes

    def _read_back(self, site_id: str) -> DeviceListChanges:
        """What the catalog kept of the site's changes (blocking); none if it cannot be
        read (a setting from another version: the notification's message tells)."""
        stored = self._catalog.setting(SETTING_PREFIX + site_id)
        if stored is None:
            return DeviceListChanges()
        try:
            return DeviceListChanges.restored(_devices_from_json(stored))
        except (CatalogError, KeyError, TypeError, ValueError) as exc:
            _log.warning(
                "site %s: the unreported hardware changes kept are unreadable: %s", site_id, exc
            )
            return DeviceListChanges()

    def _keep_and_announce(self, site_id: str, changes: DeviceListChanges) -> None:
        """Keep the site's changes in the catalog, then announce them (blocking)."""
        try:
            self._catalog.site(site_id)
        except NotFound:
            return  # removed meanwhile: nothing to keep or tell
        self._catalog.set_setting(SETTING_PREFIX + site_id, _devices_json(changes))
        self._announce(site_id, changes.diff())

    def _reported(self, site_id: str) -> None:
        """The site's changes were reported: nothing kept, its notification cleared."""
        self._catalog.set_setting(SETTING_PREFIX + site_id, None)
        self._catalog.clear_notification(HARDWARE_CHANGED, site_id, None, self._clock.now_ns())

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


def _devices_json(changes: DeviceListChanges) -> list[list[Any]]:
    """`changes.devices()` as the catalog keeps them: each device as its row has it."""
    return [
        [None if before is None else device_params(before), device_params(after)]
        for before, after in changes.devices()
    ]


def _devices_from_json(value: object) -> list[tuple[DeviceRecord | None, DeviceRecord]]:
    if not isinstance(value, list):
        raise TypeError(f"a list, not {type(value).__name__}")
    return [
        (None if before is None else device_from_row(before), device_from_row(after))
        for before, after in value
    ]
