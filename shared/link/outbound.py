"""What a connection has to send, and in which order.

Connection messages, requests, credits and one-shot answers go first, in the order they
were queued. Stream items follow, by priority class (live, then interactive, then
background), round-robin between the streams of a class, each only as far as its credit
allows. A chunk's payload is cut into `ChunkBody` pieces no larger than the piece size,
the peer's frame limit and the stream's remaining credit, so a long transfer gives way to
live video between pieces.

The background class may be paced (`pacer`, see shared/link/pacer.py): then its frames go
only when the pacer allows, its payload pieces are cut to the pacer's piece size, and
`paced_until_ns` says when the next one may go. Live and interactive frames are never paced.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shared.link.flow_control import SendCredit
from shared.link.framing import LENGTH_PREFIX_BYTES, encode_frame
from shared.link.messages import ChunkBody, Priority
from shared.link.pacer import SendPacer
from shared.link.wire import encode_message

DEFAULT_PIECE_BYTES = 64 * 1024
_MIN_USEFUL_PIECE = 1


@dataclass(slots=True)
class _Frame:
    data: bytes
    charged: bool  # stream items are charged to credit; StreamEnd is not


@dataclass(slots=True)
class _Payload:
    """A chunk payload still to be cut into ChunkBody pieces."""

    data: memoryview
    reserved: int  # credit counted in `queued_cost` for what is left of it
    offset: int = 0


@dataclass(slots=True)
class OutboundStream:
    """One stream this side is sending."""

    request_id: int
    priority: Priority
    credit: SendCredit
    items: deque[_Frame | _Payload] = field(default_factory=deque)
    queued_cost: int = 0  # credit the queued items will take (estimated for payloads)

    @property
    def sendable_bytes(self) -> int:
        """Credit not yet spoken for by queued items: how much more to queue."""
        return self.credit.available - self.queued_cost


class OutboundQueue:
    """Frames waiting to be sent; see the module docstring."""

    def __init__(self, *, piece_bytes: int = DEFAULT_PIECE_BYTES) -> None:
        self.piece_bytes = piece_bytes
        self.peer_max_frame_bytes = piece_bytes + 1024
        self._control: deque[bytes] = deque()
        self._streams: dict[int, OutboundStream] = {}
        self._rotation: dict[Priority, deque[int]] = {p: deque() for p in Priority}
        self.pacer = SendPacer()

    # -- queueing -----------------------------------------------------------------------

    def control(self, frame: bytes) -> None:
        self._control.append(frame)

    def open_stream(self, request_id: int, priority: Priority, credit_bytes: int) -> None:
        self._streams[request_id] = OutboundStream(request_id, priority, SendCredit(credit_bytes))
        self._rotation[priority].append(request_id)

    def stream(self, request_id: int) -> OutboundStream | None:
        return self._streams.get(request_id)

    def item(self, request_id: int, frame: bytes) -> None:
        stream = self._streams[request_id]
        stream.items.append(_Frame(frame, charged=True))
        stream.queued_cost += len(frame)

    def payload(self, request_id: int, data: bytes) -> None:
        stream = self._streams[request_id]
        pieces = -(-len(data) // self._piece_bytes_of(stream))
        reserved = len(data) + pieces * _PIECE_OVERHEAD_MAX
        stream.items.append(_Payload(memoryview(data), reserved))
        stream.queued_cost += reserved

    def end(self, request_id: int, frame: bytes) -> None:
        """Queue the stream's last frame; the stream closes once it is sent."""
        self._streams[request_id].items.append(_Frame(frame, charged=False))

    def drop(self, request_id: int) -> None:
        """Forget a stream and everything it had queued."""
        stream = self._streams.pop(request_id, None)
        if stream is not None:
            self._rotation[stream.priority].remove(request_id)

    def drop_all_streams(self) -> None:
        self._streams.clear()
        for rotation in self._rotation.values():
            rotation.clear()

    def discard_items(self, request_id: int) -> bool:
        """Drop a stream's queued items; True if a chunk was left half sent."""
        stream = self._streams[request_id]
        half_sent = any(isinstance(i, _Payload) and i.offset > 0 for i in stream.items)
        stream.items.clear()
        stream.queued_cost = 0
        return half_sent

    # -- sending ------------------------------------------------------------------------

    @property
    def has_sendable(self) -> bool:
        """Whether a frame could go now if the background class were not paced."""
        if self._control:
            return True
        return any(self._next_frame_size(s) is not None for s in self._streams.values())

    def next_send_ns(self, now_ns: int) -> int | None:
        """When the next frame may go: `now_ns` if one may go now, a later instant if only
        paced background frames wait, None if nothing can go until more is queued or
        more credit arrives."""
        if self._control:
            return now_ns
        background_waits = False
        for stream in self._streams.values():
            if self._next_frame_size(stream) is None:
                continue
            if stream.priority is not Priority.BACKGROUND:
                return now_ns
            background_waits = True
        if not background_waits:
            return None
        return self.pacer.ready_at_ns(now_ns)

    def take(self, limit_bytes: int, now_ns: int = 0) -> bytes:
        """Frames up to about `limit_bytes` (at least one if any can go), in order;
        `now_ns` (monotonic) matters only while the background class is paced."""
        out: list[bytes] = []
        size = 0
        while self._control and (size < limit_bytes or not out):
            frame = self._control.popleft()
            out.append(frame)
            size += len(frame)
        for priority in Priority:
            paced = priority is Priority.BACKGROUND and self.pacer.rate_bps is not None
            rotation = self._rotation[priority]
            while size < limit_bytes and rotation:
                progressed = False
                for _ in range(len(rotation)):
                    if paced and self.pacer.ready_at_ns(now_ns) > now_ns:
                        break
                    request_id = rotation[0]
                    rotation.rotate(-1)
                    item = self._pop_frame(self._streams[request_id])
                    if item is not None:
                        if priority is Priority.BACKGROUND:
                            self.pacer.charge(len(item), now_ns)
                        out.append(item)
                        size += len(item)
                        progressed = True
                        if size >= limit_bytes:
                            break
                if not progressed:
                    break
            if size >= limit_bytes:
                break
        return b"".join(out)

    def _next_frame_size(self, stream: OutboundStream) -> int | None:
        if not stream.items:
            return None
        head = stream.items[0]
        if isinstance(head, _Frame):
            if not head.charged or stream.credit.fits(len(head.data)):
                return len(head.data)
            return None
        return 1 if stream.credit.available > _PIECE_OVERHEAD_MAX else None

    def _pop_frame(self, stream: OutboundStream) -> bytes | None:
        if not stream.items:
            return None
        head = stream.items[0]
        if isinstance(head, _Frame):
            if head.charged:
                if not stream.credit.fits(len(head.data)):
                    return None
                stream.credit.charge(len(head.data))
                stream.queued_cost -= len(head.data)
            stream.items.popleft()
            if not head.charged:
                self.drop(stream.request_id)
            return head.data
        frame = self._cut_piece(stream, head)
        if frame is None:
            return None
        stream.credit.charge(len(frame))
        used = min(head.reserved, len(frame))
        head.reserved -= used
        stream.queued_cost -= used
        if head.offset >= len(head.data):
            stream.queued_cost -= head.reserved
            stream.items.popleft()
        return frame

    def _piece_bytes_of(self, stream: OutboundStream) -> int:
        paced_piece = self.pacer.piece_bytes
        if stream.priority is Priority.BACKGROUND and paced_piece is not None:
            return min(self.piece_bytes, paced_piece)
        return self.piece_bytes

    def _cut_piece(self, stream: OutboundStream, payload: _Payload) -> bytes | None:
        remaining = len(payload.data) - payload.offset
        budget = min(
            self._piece_bytes_of(stream),
            remaining,
            self.peer_max_frame_bytes - _PIECE_OVERHEAD_MAX,
            stream.credit.available - _PIECE_OVERHEAD_MAX,
        )
        if budget < min(_MIN_USEFUL_PIECE, remaining) or budget <= 0:
            return None
        piece = bytes(payload.data[payload.offset : payload.offset + budget])
        frame = encode_frame(encode_message(ChunkBody(stream.request_id, piece)))
        payload.offset += budget
        return frame


_PIECE_OVERHEAD_MAX = LENGTH_PREFIX_BYTES + 1 + 1 + 9 + 5
"""The most a ChunkBody frame adds to its data: prefix, array, type, request id, bin header."""
