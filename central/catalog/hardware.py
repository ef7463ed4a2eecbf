"""Reconciling a site's device list with the catalog: pure functions, no storage.

A site's devices are matched to the catalog's by the site's own id (`remote_device_id`).
A device the catalog has not seen is added with the settings its `NewDevice` carries (by
default the site's name, site-only recording, live on demand). A device the site no longer
lists is kept with `present` False, so its recordings and settings survive a camera being
unplugged for a day; when it comes back it is present again. What the site reports about
a device (kind, name, streams) is refreshed; what the central decided about it (its name,
recording, live feed, rule) is never overwritten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from central.catalog.errors import InvalidRecord
from central.catalog.records import (
    HARDWARE_FIELDS,
    DeviceRecord,
    HardwareChange,
    HardwareDiff,
    HardwareField,
    NewDevice,
)
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
    for new in discovered:
        before = known.get(new.remote_device_id)
        if before is None:
            added.append(
                new_device_record(new, device_id=new_device_id(), site_id=site_id, now_ns=now_ns)
            )
            continue
        fields = _hardware_fields_that_differ(before, new)
        if not fields and before.present:
            continue
        after = dataclasses.replace(
            before,
            kind=new.kind,
            original_name=new.original_name,
            streams=new.streams,
            present=True,
            updated_ns=now_ns,
        )
        if not before.present:
            returned.append(after)
        if fields:
            changed.append(HardwareChange(before, after, fields))
    removed = [
        dataclasses.replace(device, present=False, updated_ns=now_ns)
        for device in known.values()
        if device.present and device.remote_device_id not in listed
    ]
    return HardwareDiff(tuple(added), tuple(removed), tuple(returned), tuple(changed))


def records_to_update(diff: HardwareDiff) -> list[DeviceRecord]:
    """Each existing device whose row changes, once, in its final form."""
    final = {device.device_id: device for device in diff.removed + diff.returned}
    final.update((change.after.device_id, change.after) for change in diff.changed)
    return list(final.values())


def _hardware_fields_that_differ(before: DeviceRecord, new: NewDevice) -> tuple[HardwareField, ...]:
    return tuple(name for name in HARDWARE_FIELDS if getattr(before, name) != getattr(new, name))
