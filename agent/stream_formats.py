"""A device's stream formats as its packets show them, over what the configuration says.

The configuration fixes the format of a stream the site encodes itself (a synthetic or
camera-module source); an IP camera or a file delivers whatever it was set to, known only
once its source has opened and announced each stream's codec configuration. The device list
reports the codec and picture size from that announcement when there is one (it is the
truth, and it follows a camera reconfigured while the site runs), the configuration's
otherwise; the frame rate only ever comes from the configuration, since the announcement
does not carry it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from agent.device_catalog import DeviceInfo, StreamFormat
from shared.media import CodecConfig

StreamCodecs = Callable[[], Mapping[tuple[str, str], CodecConfig]]
"""The codec configuration each stream's source announced last, by (device id, stream)."""


def no_stream_codecs() -> Mapping[tuple[str, str], CodecConfig]:
    """A site whose sources have announced nothing (yet)."""
    return {}


def seen_format(configured: StreamFormat, codec: CodecConfig | None) -> StreamFormat:
    """`configured`, with the codec and picture size `codec` announced (when it did)."""
    if codec is None:
        return configured
    return dataclasses.replace(
        configured,
        codec=codec.codec or configured.codec,
        width=codec.width or configured.width,
        height=codec.height or configured.height,
    )


def with_seen_formats(
    device: DeviceInfo, codecs: Mapping[tuple[str, str], CodecConfig]
) -> DeviceInfo:
    """`device` with each stream's format as its source last announced it."""
    streams = tuple(
        dataclasses.replace(
            stream, format=seen_format(stream.format, codecs.get((device.id, stream.name)))
        )
        for stream in device.streams
    )
    if streams == device.streams:
        return device
    return dataclasses.replace(device, streams=streams)
