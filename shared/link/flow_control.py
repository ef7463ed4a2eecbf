"""Credit-based flow control, counted in frame bytes (length prefix included).

The receiver of a stream grants credit; each stream item it receives is charged its whole
frame size. The sender holds the mirror account and never emits an item that does not fit.
Counting wire bytes (not payload bytes) makes a rate the receiver grants at a rate of the
link itself, which is how the central caps retrieval bandwidth.
"""

from __future__ import annotations

from shared.link.errors import ErrorCode, ProtocolError


class SendCredit:
    """What the sender of one stream may still send."""

    def __init__(self, initial_bytes: int) -> None:
        self.available = initial_bytes
        self.sent_bytes = 0

    def grant(self, grant_bytes: int) -> None:
        self.available += grant_bytes

    def fits(self, cost: int) -> bool:
        return cost <= self.available

    def charge(self, cost: int) -> None:
        if cost > self.available:
            raise AssertionError(f"sending {cost} bytes with {self.available} bytes of credit")
        self.available -= cost
        self.sent_bytes += cost


class ReceiveCredit:
    """What the receiver of one stream has granted and not yet seen used."""

    def __init__(self, request_id: int, initial_bytes: int) -> None:
        self.request_id = request_id
        self.outstanding = initial_bytes
        self.received_bytes = 0

    def grant(self, grant_bytes: int) -> None:
        self.outstanding += grant_bytes

    def charge(self, cost: int) -> None:
        """Account for an arriving item; ProtocolError if the sender overdrew."""
        if cost > self.outstanding:
            raise ProtocolError(
                ErrorCode.FLOW_CONTROL,
                f"stream {self.request_id} sent a {cost}-byte frame with "
                f"{self.outstanding} bytes of credit left",
            )
        self.outstanding -= cost
        self.received_bytes += cost
