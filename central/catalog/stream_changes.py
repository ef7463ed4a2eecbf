"""How a device's streams changed between two readings, where a format may be unknown.

A stream's format (codec, width, height, frame rate) can be unknown: an older site does not
report it, and a site knows an IP camera's only once the camera has been reached. Unknown
is not news, so:

- a format field is changed only when both readings know it and differ (640x360 then
  480x270); learnt (unknown then 640x360) or forgotten (640x360 then unknown) is no change;
- what is kept is the reported stream with its unknown fields taken from the stored stream
  of the same name and media kind (`merged_streams`), so the last known format survives a
  reading that does not know it, and a change made while it was unknown is still seen.

The list of streams (names and media kinds, in order) is compared on its own: a stream
added, removed or carrying another kind of media changes the list, not a format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from central.catalog.records import StreamInfo

FormatField = Literal["codec", "width", "height", "frame_rate"]
FORMAT_FIELDS: tuple[FormatField, ...] = get_args(FormatField)


@dataclass(frozen=True, slots=True)
class FormatChange:
    """A stream both readings list whose format changed in `fields`."""

    before: StreamInfo
    after: StreamInfo
    fields: tuple[FormatField, ...]

    @property
    def stream(self) -> str:
        return self.after.name


def stream_list_changed(before: Sequence[StreamInfo], after: Sequence[StreamInfo]) -> bool:
    """Another list of streams: names or media kinds, in order."""
    return _outline(before) != _outline(after)


def format_changes(
    before: Sequence[StreamInfo], after: Sequence[StreamInfo]
) -> tuple[FormatChange, ...]:
    """The streams of `after` whose format changed since `before`, in `after`'s order."""
    earlier = {stream.name: stream for stream in before}
    changes = []
    for stream in after:
        was = earlier.get(stream.name)
        if was is None or was.media_kind != stream.media_kind:
            continue  # a new stream: the list changed, not a format
        fields = tuple(
            name
            for name in FORMAT_FIELDS
            if _known_and_different(getattr(was, name), getattr(stream, name))
        )
        if fields:
            changes.append(FormatChange(was, stream, fields))
    return tuple(changes)


def merged_streams(
    stored: Sequence[StreamInfo], reported: Sequence[StreamInfo]
) -> tuple[StreamInfo, ...]:
    """`reported`, each format field it does not know taken from the stored stream of the
    same name and media kind."""
    known = {stream.name: stream for stream in stored}
    return tuple(_filled(stream, known.get(stream.name)) for stream in reported)


def _filled(stream: StreamInfo, was: StreamInfo | None) -> StreamInfo:
    """`stream` with the format fields it does not know taken from `was`, if that is the
    same stream (same media kind)."""
    if was is None or was.media_kind != stream.media_kind:
        return stream
    unknown = {
        name: getattr(was, name)
        for name in FORMAT_FIELDS
        if getattr(stream, name) is None and getattr(was, name) is not None
    }
    return dataclasses.replace(stream, **unknown) if unknown else stream


def _outline(streams: Sequence[StreamInfo]) -> list[tuple[str, str]]:
    return [(stream.name, stream.media_kind.value) for stream in streams]


def _known_and_different(before: object, after: object) -> bool:
    return before is not None and after is not None and before != after
