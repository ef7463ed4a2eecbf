"""The changes to sites' device lists that the central applied by itself and no operator
has been told of yet.

The central reads a site's device list again on every new link and applies it at once
(`site_link_work.py`), so a camera added at a site shows up as soon as the site is back.
A site's devices change only when its agent restarts, which always opens a new link: by the
time an operator asks for "update hardware", the change is already in the catalog, and a
fresh reading finds nothing new. So each change applied by itself is kept here, per site,
and the next "update hardware" reports it together with what its own reading found, as one
diff (`central.catalog.hardware.DeviceListChanges`); then it is forgotten.

Kept in memory only: a central restarted between the change and the operator's question
has only its log ("device list read (1 added, ...)") to show what changed.
"""

from __future__ import annotations

from central.catalog.hardware import DeviceListChanges
from central.catalog.records import HardwareDiff


class UnreportedHardware:
    """See the module docstring. Used from the event loop only."""

    def __init__(self) -> None:
        self._by_site: dict[str, DeviceListChanges] = {}

    def applied_by_itself(self, site_id: str, diff: HardwareDiff) -> None:
        """The central applied `diff` to the site's devices without being asked."""
        if diff.is_empty:
            return
        self._by_site.setdefault(site_id, DeviceListChanges()).add(diff)

    def report(self, site_id: str, diff: HardwareDiff) -> HardwareDiff:
        """What to tell the operator whose reading applied `diff`: that and every change not
        reported yet, as one diff. The site has nothing unreported afterwards."""
        changes = self._by_site.pop(site_id, DeviceListChanges())
        changes.add(diff)
        return changes.diff()

    def forget(self, site_id: str) -> None:
        """The site was removed."""
        self._by_site.pop(site_id, None)
