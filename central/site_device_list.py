"""A site's device list, as its API and its link answer it, read into the catalog's terms.

Each device has `id`, `kind`, `name` (the site's own) and `streams`; each stream has `name`
and `media`, and, from sites that report them, its format: `codec`, `width`, `height`,
`frame_rate`, each null when the site does not know it. A site from before formats were
reported sends none of these four: they are unknown then, exactly like a null, and the
catalog keeps the format it knew (`central/catalog/stream_changes.py`). What else a site
says of a device (`parent`, a stream's `recording`) is not the catalog's, and is ignored.

A list the central cannot read raises `DeviceListError`, naming the place at fault as
``devices[2].streams[0].width``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from central.catalog.errors import InvalidRecord
from central.catalog.records import NewDevice, StreamInfo
from shared.media import MediaKind

_MEDIA_KINDS = tuple(kind.value for kind in MediaKind)


class DeviceListError(ValueError):
    """The site's device list is not one the central can read; `place` says where."""

    def __init__(self, place: str, problem: str) -> None:
        super().__init__(f"{place}: {problem}")
        self.place = place
        self.problem = problem


def discovered_devices(devices: object) -> list[NewDevice]:
    """The catalog's view of a site's device list (the `devices` array of the answer)."""
    if not isinstance(devices, list):
        raise DeviceListError("devices", f"must be an array, not {_type(devices)}")
    return [_device(f"devices[{i}]", device) for i, device in enumerate(devices)]


def _device(place: str, device: object) -> NewDevice:
    item = _object(place, device)
    streams = item.get("streams", [])
    if not isinstance(streams, list):
        raise DeviceListError(f"{place}.streams", f"must be an array, not {_type(streams)}")
    try:
        return NewDevice(
            remote_device_id=_required(place, item, "id"),
            kind=_required(place, item, "kind"),
            original_name=_required(place, item, "name"),
            streams=tuple(
                _stream(f"{place}.streams[{j}]", stream) for j, stream in enumerate(streams)
            ),
        )
    except InvalidRecord as exc:
        field = {"remote_device_id": "id", "original_name": "name"}.get(exc.field, exc.field)
        raise DeviceListError(f"{place}.{field}", exc.problem) from exc


def _stream(place: str, stream: object) -> StreamInfo:
    item = _object(place, stream)
    media = _required(place, item, "media")
    if media not in _MEDIA_KINDS:
        raise DeviceListError(
            f"{place}.media", f"must be one of {', '.join(_MEDIA_KINDS)}, not {media!r}"
        )
    try:
        return StreamInfo(
            name=_required(place, item, "name"),
            media_kind=MediaKind(media),
            # Absent (a site from before formats were reported) is unknown, as null is.
            codec=item.get("codec"),
            width=item.get("width"),
            height=item.get("height"),
            frame_rate=item.get("frame_rate"),
        )
    except InvalidRecord as exc:
        raise DeviceListError(f"{place}.{exc.field.removeprefix('streams.')}", exc.problem) from exc


def _object(place: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DeviceListError(place, f"must be an object, not {_type(value)}")
    return value


def _required(place: str, item: Mapping[str, Any], key: str) -> Any:
    if key not in item:
        raise DeviceListError(f"{place}.{key}", "is missing")
    return item[key]


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__
