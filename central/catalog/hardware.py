"""Reconciling a site's device list with the catalog: pure functions, no storage.

A site's devices are matched to the catalog's by the site's own id (`remote_device_id`).
A device the catalog has not seen is added with the settings its `NewDevice` carries (by
default the site's name, site-only recording, live on demand). A device the site no longer
lists is kept with `present` False, so its recordings and settings survive a camera being
unplugged for a day; when it comes back it is present again. What the site reports about
a device (kind, name, streams and their formats) is refreshed; what the central decided
about it (its name, recording, live feed, rule) is never overwritten. A stream format the
site does not know keeps the last one known, and only a format known before and after
counts as changed (`stream_changes.py`); one learnt is written as a refresh, not reported.
`DeviceListChanges` joins the diffs of several readings into the one a single reading would
have given, for a report that covers them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from central.catalog.errors import InvalidRecord
from central.catalog.records import (
    DeviceRecord,
    HardwareChange,
    HardwareDiff,
    HardwareField,
    NewDevice,
)
from central.catalog.stream_changes import format_changes, merged_streams, stream_list_changed
from central.catalog.validation import MAX_DEVICES_PER_SITE


def check_device_list(devices: Sequence[NewDevice]) -> None:
    """`InvalidRecord` for a list a site cannot have: too long, or one id twice."""
    if len(devices) > MAX_DEVICES_PER_SITE:
        raise InvalidRecord(
            "devices", f"at most {MAX_DEVICES_PER_SITE} devices per site, not {len(devices)}"
        )
    seen: set[str] = set()
    for device in devices:
        if device.remote_device_id in seen:
            raise InvalidRecord(
                "devices", f"remote_device_id {device.remote_device_id!r} is listed twice"
            )
        seen.add(device.remote_device_id)


def new_device_record(new: NewDevice, *, device_id: str, site_id: str, now_ns: int) -> DeviceRecord:
    """The record of a device seen for the first time."""
    return DeviceRecord(
        device_id=device_id,
        site_id=site_id,
        remote_device_id=new.remote_device_id,
        kind=new.kind,
        name=new.name if new.name is not None else new.original_name,
        original_name=new.original_name,
        streams=new.streams,
        present=True,
        recording=new.recording,
        live_feed=new.live_feed,
        central_rule=dict(new.central_rule),
        created_ns=now_ns,
        updated_ns=now_ns,
    )


def reconcile(
    existing: Iterable[DeviceRecord],
    discovered: Sequence[NewDevice],
    *,
    site_id: str,
    now_ns: int,
    new_device_id: Callable[[], str],
) -> HardwareDiff:
    """What changes when a site that had `existing` devices now lists `discovered`.

    `new_device_id` draws the id of each added device. The diff's records are the devices
    as they should be stored afterwards; `records_to_update` lists the changed ones.
    """
    check_device_list(discovered)
    known = {device.remote_device_id: device for device in existing}
    listed = {device.remote_device_id for device in discovered}
    added: list[DeviceRecord] = []
    returned: list[DeviceRecord] = []
    changed: list[HardwareChange] = []
    refreshed: list[DeviceRecord] = []
    for new in discovered:
        before = known.get(new.remote_device_id)
        if before is None:
            added.append(
                new_device_record(new, device_id=new_device_id(), site_id=site_id, now_ns=now_ns)
            )
            continue
        fields = _hardware_fields_that_differ(before, new)
        streams = merged_streams(before.streams, new.streams)
        reported = (new.kind, new.original_name, streams)
        if before.present and reported == (before.kind, before.original_name, before.streams):
            continue
        after = dataclasses.replace(
            before,
            kind=new.kind,
            original_name=new.original_name,
            streams=streams,
            present=True,
            updated_ns=now_ns,
        )
        if not before.present:
            returned.append(after)
        if fields:
            changed.append(HardwareChange(before, after, fields))
        elif before.present:
            refreshed.append(after)
    removed = [
        dataclasses.replace(device, present=False, updated_ns=now_ns)
        for device in known.values()
        if device.present and device.remote_device_id not in listed
    ]
    return HardwareDiff(
        tuple(added), tuple(removed), tuple(returned), tuple(changed), tuple(refreshed)
    )


class DeviceListChanges:
    """What one or more readings of a site's device list changed together: their diffs,
    added in the order they were applied, are kept as each device was before the first that
    touched it and as it is after the last. `diff()` is then what a single reading from the
    first state to the last would have reported: a device added and removed again in
    between is left out, one changed and changed back is not changed. For a single diff,
    `diff()` reports the same devices in the same way. The `before` of a change is the
    device as it was (the instant it was last written aside). Memory: two records per
    device touched. A refresh is kept as the device's latest form, never reported."""

    def __init__(self) -> None:
        self._before: dict[str, DeviceRecord | None] = {}  # None: the device did not exist
        self._after: dict[str, DeviceRecord] = {}

    def add(self, diff: HardwareDiff) -> None:
        """The next reading's diff, applied after those added before."""
        for change in diff.changed:
            self._note(change.before, change.after)
        for device in diff.added:
            self._note(None, device)
        for device in diff.removed:  # a removal changes nothing but `present`
            self._note(dataclasses.replace(device, present=True), device)
        for device in diff.returned:  # if it changed too, its `changed` entry came first
            self._note(dataclasses.replace(device, present=False), device)
        for device in diff.refreshed:  # nothing reportable changed: as it was, if first
            self._note(device, device)

    def diff(self) -> HardwareDiff:
        added: list[DeviceRecord] = []
        removed: list[DeviceRecord] = []
        returned: list[DeviceRecord] = []
        changed: list[HardwareChange] = []
        for device_id, now in self._after.items():
            was = self._before[device_id]
            if was is None:
                if now.present:
                    added.append(now)
                continue
            if was.present and not now.present:
                removed.append(now)
            elif now.present and not was.present:
                returned.append(now)
            fields = _hardware_fields_that_differ(was, now)
            if fields and now.present:
                changed.append(HardwareChange(was, now, fields))
        return HardwareDiff(tuple(added), tuple(removed), tuple(returned), tuple(changed))

    def devices(self) -> list[tuple[DeviceRecord | None, DeviceRecord]]:
        """Each device touched: as it was before the first diff (None: it did not exist)
        and as it is after the last; what `restored` takes to make these changes again."""
        return [(self._before[device_id], now) for device_id, now in self._after.items()]

    @classmethod
    def restored(
        cls, devices: Iterable[tuple[DeviceRecord | None, DeviceRecord]]
    ) -> DeviceListChanges:
        """The changes `devices()` gave (kept aside, read back)."""
        changes = cls()
        for before, after in devices:
            changes._note(before, after)
        return changes

    def _note(self, before: DeviceRecord | None, after: DeviceRecord) -> None:
        self._before.setdefault(after.device_id, before)
        self._after[after.device_id] = after


def records_to_update(diff: HardwareDiff) -> list[DeviceRecord]:
    """Each existing device whose row changes, once, in its final form."""
    final = {device.device_id: device for device in diff.removed + diff.returned + diff.refreshed}
    final.update((change.after.device_id, change.after) for change in diff.changed)
    return list(final.values())


def _hardware_fields_that_differ(
    before: DeviceRecord, new: NewDevice | DeviceRecord
) -> tuple[HardwareField, ...]:
    """What the site changed of the device, in `HARDWARE_FIELDS`' order."""
    fields: list[HardwareField] = []
    if before.kind != new.kind:
        fields.append("kind")
    if before.original_name != new.original_name:
        fields.append("original_name")
    if stream_list_changed(before.streams, new.streams):
        fields.append("streams")
    if format_changes(before.streams, new.streams):
        fields.append("stream_format")
    return tuple(fields)
