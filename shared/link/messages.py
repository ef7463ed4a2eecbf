"""Every message of the link protocol, one frozen dataclass each.

Three families:

- connection messages (`Hello`, `Ping`, `Pong`, `Goodbye`), either side, and the asker's
  `Pace` for the background class;
- requests, from the side that asks (normally the central), each with a `request_id` that
  the asker chooses, growing by at least one per request; and the asker's stream controls
  `Credit` and `Cancel`;
- answers, from the side that serves (normally the site): `Reply` or `Failure` end a
  request; a streaming request gets items (`ChunkHead` + `ChunkBody`, `LivePackets` and
  `LiveSealed`, `EventItem`), each charged against the credit the asker granted, then
  `StreamEnd`.

The wire form of each is in `shared/link/wire.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

PROTOCOL_VERSION = 3
"""The newest version this code speaks; `Hello` carries the range a side accepts."""
MIN_PROTOCOL_VERSION = 1
"""The oldest version this code still speaks (a peer from before `LiveSealed`)."""
LIVE_SEALED_VERSION = 2
"""The first version with `LiveSealed`; on a link agreed below it the message is never sent
(and receiving it is a protocol error)."""
PACE_VERSION = 3
"""The first version with `Pace`; below it the asker paces through credit alone."""


class Priority(IntEnum):
    """Who goes first on a shared link: live video, then what a user waits for, then bulk."""

    LIVE = 0
    INTERACTIVE = 1
    BACKGROUND = 2


class LinkRole(StrEnum):
    SITE = "site"
    CENTRAL = "central"


class FailureCode(StrEnum):
    """Why a request failed; the connection goes on."""

    NOT_FOUND = "not_found"  # an unknown device or one the account may not see: the same
    BAD_REQUEST = "bad_request"  # arguments the server refuses (the message says which)
    REFUSED = "refused"  # understood but not possible now (a hold over budget, ...)
    UNAVAILABLE = "unavailable"  # the site cannot serve it now (store closed, ...)
    INTERNAL = "internal"  # a fault of the server; the message says what


class StreamOutcome(StrEnum):
    COMPLETE = "complete"  # everything the request asked for was sent
    CANCELLED = "cancelled"  # the asker cancelled
    FAILED = "failed"  # the server stopped; the message says why


# --- connection --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message each side sends."""

    min_version: int
    max_version: int
    role: LinkRole
    software: str  # product and version, for logs and the central's site info
    max_frame_bytes: int  # the largest frame this side accepts


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The last message: why this side closes (`closed` for a normal close)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Pace:
    """From the asker: send the background class, all its streams together, at no more
    than `rate_bps` bits per second of frame bytes (0: as fast as credit allows).
    Applies from its arrival until the next `Pace`; see shared/link/pacer.py."""

    rate_bps: int


# --- requests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteInfoRequest:
    request_id: int


@dataclass(frozen=True, slots=True)
class DeviceListRequest:
    request_id: int


@dataclass(frozen=True, slots=True)
class StatusRequest:
    request_id: int


@dataclass(frozen=True, slots=True)
class TimelineRequest:
    request_id: int
    device_id: str
    stream: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """The chunks of a stream in [start_ns, end_ns), after the cursor `after_seq`.

    `after_seq` is the last chunk the asker durably committed (None: from the first chunk
    that overlaps `start_ns`); the server sends the chunks after it in sequence order.
    """

    request_id: int
    device_id: str
    stream: str
    start_ns: int
    end_ns: int
    after_seq: int | None
    credit: int
    priority: Priority


@dataclass(frozen=True, slots=True)
class LiveRequest:
    """A device's stream as it is recorded, starting with the last cached GOP."""

    request_id: int
    device_id: str
    stream: str
    credit: int


@dataclass(frozen=True, slots=True)
class EventsRequest:
    """Events as they happen (motion, inputs, system); `kinds` empty means all."""

    request_id: int
    kinds: tuple[str, ...]
    credit: int


@dataclass(frozen=True, slots=True)
class PlaceHoldRequest:
    request_id: int
    device_id: str
    streams: tuple[str, ...]
    start_ns: int
    end_ns: int
    expires_ns: int
    reason: str


@dataclass(frozen=True, slots=True)
class ListHoldsRequest:
    request_id: int


@dataclass(frozen=True, slots=True)
class ReleaseHoldRequest:
    request_id: int
    hold_id: int


@dataclass(frozen=True, slots=True)
class Credit:
    """The asker lets the server send `grant_bytes` more frame bytes on a stream."""

    request_id: int
    grant_bytes: int


@dataclass(frozen=True, slots=True)
class Cancel:
    request_id: int


# --- answers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a one-shot request; `body` is a map (the site builds its bodies with
    agent/api_bodies.py)."""

    request_id: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Failure:
    request_id: int
    code: FailureCode
    message: str


@dataclass(frozen=True, slots=True)
class ChunkHead:
    """The start of one chunk of a transfer: its signed header; the payload follows."""

    request_id: int
    header: bytes
    signature: bytes
    payload_size: int


@dataclass(frozen=True, slots=True)
class ChunkBody:
    """The next piece of the payload of the chunk being sent on this stream."""

    request_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LivePacket:
    pts: int
    dts: int
    duration: int
    keyframe: bool
    wall_ns: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LivePackets:
    """Packets of a live stream; `codec` (wire form of CodecConfig) when it starts or changes."""

    request_id: int
    codec: bytes | None
    packets: tuple[LivePacket, ...]


@dataclass(frozen=True, slots=True)
class LiveSealed:
    """The site sealed a chunk of this live stream: its header exactly as signed, and the
    signature. Sent after the last packet of that chunk; no payload, since the asker has
    the packets. Only on streams the site stores, and only for chunks it stored."""

    request_id: int
    header: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class EventItem:
    request_id: int
    kind: str
    device_id: str
    at_ns: int
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamEnd:
    request_id: int
    outcome: StreamOutcome
    message: str


ConnectionMessage = Hello | Ping | Pong | Goodbye | Pace
RequestMessage = (
    SiteInfoRequest
    | DeviceListRequest
    | StatusRequest
    | TimelineRequest
    | TransferRequest
    | LiveRequest
    | EventsRequest
    | PlaceHoldRequest
    | ListHoldsRequest
    | ReleaseHoldRequest
)
StreamRequest = TransferRequest | LiveRequest | EventsRequest
StreamControl = Credit | Cancel
StreamItem = ChunkHead | ChunkBody | LivePackets | LiveSealed | EventItem
Answer = Reply | Failure | StreamItem | StreamEnd
Message = ConnectionMessage | RequestMessage | StreamControl | Answer

STREAM_REQUESTS = (TransferRequest, LiveRequest, EventsRequest)
STREAM_ITEMS = (ChunkHead, ChunkBody, LivePackets, LiveSealed, EventItem)


def request_priority(request: RequestMessage) -> Priority:
    """The class a request's answers travel in."""
    if isinstance(request, TransferRequest):
        return request.priority
    if isinstance(request, LiveRequest | EventsRequest):
        return Priority.LIVE
    return Priority.INTERACTIVE
