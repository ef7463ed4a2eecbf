"""Two link connections joined in memory, and a site-side transfer server over a chunk list.

The pair moves bytes between the ends through a `Wire` that may cut, drop or truncate; the
server answers transfer requests from a list of signed chunks the way the agent answers
from its store (chunks after the cursor, in order, as far as credit allows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.chunk import SignedChunk
from shared.link import events as ev
from shared.link import messages as m
from shared.link.connection import LinkConnection

Wire = Callable[[bytes], bytes]
"""What the wire does to the bytes one side sent (identity: a perfect link)."""


def site_end(**kwargs: int) -> LinkConnection:
    return LinkConnection(role=m.LinkRole.SITE, software="test-site", **kwargs)


def central_end(**kwargs: int) -> LinkConnection:
    return LinkConnection(role=m.LinkRole.CENTRAL, software="test-central", **kwargs)


@dataclass
class Pump:
    """Moves bytes both ways until neither side has anything to send."""

    a: LinkConnection
    b: LinkConnection
    send_limit: int = 64 * 1024
    to_a: Wire = lambda data: data
    to_b: Wire = lambda data: data
    events_a: list[ev.LinkEvent] = field(default_factory=list)
    events_b: list[ev.LinkEvent] = field(default_factory=list)
    handle_a: Callable[[list[ev.LinkEvent]], None] | None = None
    handle_b: Callable[[list[ev.LinkEvent]], None] | None = None
    bytes_a_to_b: int = 0

    def step(self) -> bool:
        """One exchange; False when both sides are quiet."""
        moved = False
        if self.a.wants_to_send:
            data = self.a.data_to_send(self.send_limit)
            self.bytes_a_to_b += len(data)
            new = self.b.receive(self.to_b(data))
            self.events_b += new
            if self.handle_b is not None:
                self.handle_b(new)
            moved = True
        if self.b.wants_to_send:
            data = self.b.data_to_send(self.send_limit)
            new = self.a.receive(self.to_a(data))
            self.events_a += new
            if self.handle_a is not None:
                self.handle_a(new)
            moved = True
        return moved

    def run(self, max_steps: int = 100_000) -> None:
        for _ in range(max_steps):
            if not self.step():
                return
        raise AssertionError("the link never went quiet")


class ChunkListServer:
    """Serves TransferRequests on a site connection from `chunks` (one stream, seq order)."""

    def __init__(self, connection: LinkConnection, chunks: list[SignedChunk]) -> None:
        self.connection = connection
        self.chunks = chunks
        self._cursors: dict[int, int] = {}  # request id -> index of the next chunk to send
        self._requests: dict[int, m.TransferRequest] = {}

    def handle(self, events: list[ev.LinkEvent]) -> None:
        for event in events:
            if isinstance(event, ev.RequestReceived) and isinstance(
                event.request, m.TransferRequest
            ):
                self._requests[event.request.request_id] = event.request
                self._cursors[event.request.request_id] = self._first_index(event.request)
                self._fill(event.request.request_id)
            elif isinstance(event, ev.CreditReceived) and event.request_id in self._cursors:
                self._fill(event.request_id)
            elif isinstance(event, ev.StreamCancelled):
                self._cursors.pop(event.request_id, None)

    def _first_index(self, request: m.TransferRequest) -> int:
        for index, chunk in enumerate(self.chunks):
            header = chunk.header
            if request.after_seq is not None and header.seq <= request.after_seq:
                continue
            if header.end_ns > request.start_ns:
                return index
        return len(self.chunks)

    def _fill(self, request_id: int) -> None:
        index = self._cursors[request_id]
        end_ns = self._requests[request_id].end_ns
        while self.connection.sendable_bytes(request_id) > 0 and index < len(self.chunks):
            chunk = self.chunks[index]
            if chunk.header.start_ns >= end_ns:
                index = len(self.chunks)
                break
            self.connection.send_chunk(
                request_id, chunk.header_bytes, chunk.signature, chunk.payload
            )
            index += 1
        self._cursors[request_id] = index
        if index >= len(self.chunks):
            self.connection.end_stream(request_id, m.StreamOutcome.COMPLETE)
            del self._cursors[request_id]
            del self._requests[request_id]
