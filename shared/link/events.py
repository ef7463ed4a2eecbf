"""What the bytes a connection received mean, for the application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.link.errors import ProtocolError
from shared.link.messages import (
    EventItem,
    FailureCode,
    Hello,
    LivePacket,
    RequestMessage,
    StreamOutcome,
)


@dataclass(frozen=True, slots=True)
class PeerReady:
    """The peer's Hello arrived and a common version was agreed."""

    hello: Hello
    version: int


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """Serve it: `reply`/`fail` a one-shot request; send items then `end_stream` a stream."""

    request: RequestMessage


@dataclass(frozen=True, slots=True)
class CreditReceived:
    """A stream this side sends may take more: `sendable_bytes` is now positive."""

    request_id: int


@dataclass(frozen=True, slots=True)
class StreamCancelled:
    """The asker cancelled a stream this side was sending; stop producing for it."""

    request_id: int


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    request_id: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FailureReceived:
    request_id: int
    code: FailureCode
    message: str


@dataclass(frozen=True, slots=True)
class ChunkStarted:
    """A chunk's head arrived; `payload_size` bytes of payload follow. A receiver whose
    credit is smaller than that must grant more, or the chunk can never complete.

    `credit_left`: the stream's outstanding credit just after the head was charged. That is
    what the payload can still use: by the time the receiver reads this event, the same
    message may have brought payload pieces that already used some of it, which
    `outstanding_credit` then no longer shows."""

    request_id: int
    payload_size: int
    credit_left: int


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    """One whole chunk of a transfer, as sent: verify it before committing it."""

    request_id: int
    header: bytes
    signature: bytes
    payload: bytes
    frame_bytes: int  # wire bytes it took, prefixes included (charged to credit)


@dataclass(frozen=True, slots=True)
class LiveReceived:
    request_id: int
    codec: bytes | None
    packets: tuple[LivePacket, ...]
    frame_bytes: int


@dataclass(frozen=True, slots=True)
class LiveSealedReceived:
    """The site sealed a chunk whose packets came before on this live stream: its header
    exactly as signed and the signature (verify them before trusting anything)."""

    request_id: int
    header: bytes
    signature: bytes
    frame_bytes: int


@dataclass(frozen=True, slots=True)
class EventReceived:
    event: EventItem
    frame_bytes: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """A stream this side asked for is over; a half-received chunk was thrown away."""

    request_id: int
    outcome: StreamOutcome
    message: str
    partial_chunk_discarded: bool


@dataclass(frozen=True, slots=True)
class PongReceived:
    nonce: int


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer said goodbye; nothing more will arrive."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ProtocolViolated:
    """The peer broke the protocol: the connection is closed and has queued a Goodbye
    naming the problem. Always the last event; send what is queued, then close."""

    error: ProtocolError


LinkEvent = (
    PeerReady
    | RequestReceived
    | CreditReceived
    | StreamCancelled
    | ReplyReceived
    | FailureReceived
    | ChunkStarted
    | ChunkReceived
    | LiveReceived
    | LiveSealedReceived
    | EventReceived
    | StreamEnded
    | PongReceived
    | PeerClosed
    | ProtocolViolated
)
