"""Changes to a site's devices in words, for an operator: the message of the
"hardware_changed" notification.

Devices are named by the central's names, the ones the operator knows them by. A message
names at most `MAX_NAMED` devices of each sort (added, removed, returned, changed) and
counts the rest, so a site that changed a hundred cameras still fits a notification.
"""

from __future__ import annotations

from collections.abc import Sequence

from central.catalog import validation as check
from central.catalog.records import DeviceRecord, HardwareChange, HardwareDiff, StreamInfo
from central.catalog.stream_changes import FormatChange, format_changes
from central.stream_format_text import format_text

MAX_NAMED = 10
_FIELD_WORDS = {
    "kind": "kind",
    "original_name": "site name",
    "streams": "streams",
}


def stream_format_text(stream: StreamInfo) -> str:
    return format_text(stream.codec, stream.width, stream.height, stream.frame_rate)


def format_change_text(change: FormatChange) -> str:
    """``lq: h264 640x360 8 fps -> h264 480x270 8 fps``."""
    before, after = stream_format_text(change.before), stream_format_text(change.after)
    return f"{change.stream}: {before} -> {after}"


def hardware_message(diff: HardwareDiff) -> str:
    """What `diff` changed, naming the devices, e.g. ``devices changed at the site: added
    'Till'; changed 'Entrance' (lq: h264 640x360 -> h264 480x270)``."""
    sorts = [
        ("added", [_name(d) for d in diff.added]),
        ("removed", [_name(d) for d in diff.removed]),
        ("returned", [_name(d) for d in diff.returned]),
        ("changed", [_change_text(c) for c in diff.changed]),
    ]
    parts = [f"{sort} {_listed(items)}" for sort, items in sorts if items]
    message = "devices changed at the site: " + "; ".join(parts or ["nothing"])
    if len(message) > check.MAX_MESSAGE_CHARS:
        message = message[: check.MAX_MESSAGE_CHARS - 3] + "..."
    return message


def _change_text(change: HardwareChange) -> str:
    details = [_FIELD_WORDS[field] for field in change.fields if field in _FIELD_WORDS]
    details += [
        format_change_text(c) for c in format_changes(change.before.streams, change.after.streams)
    ]
    return f"{_name(change.after)} ({'; '.join(details)})"


def _name(device: DeviceRecord) -> str:
    return repr(device.name)


def _listed(items: Sequence[str]) -> str:
    named = ", ".join(items[:MAX_NAMED])
    rest = len(items) - MAX_NAMED
    return f"{named} and {rest} more" if rest > 0 else named
