"""The one error type of the link protocol."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a connection was closed; sent to the peer in `Goodbye`."""

    MALFORMED = "malformed"  # bytes that do not decode to a valid message
    OVERSIZED = "oversized"  # a frame or field larger than the limits allow
    UNEXPECTED = "unexpected"  # a valid message at a moment it is not allowed (out of order)
    FLOW_CONTROL = "flow_control"  # a sender exceeded the credit it was granted
    INCOMPATIBLE = "incompatible"  # no protocol version both sides speak
    CLOSED = "closed"  # the connection was closed by this side or the peer


class ProtocolError(Exception):
    """The peer broke the protocol; the connection cannot continue.

    `code` says which rule was broken, `message` names the message, field or stream.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
