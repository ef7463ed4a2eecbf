"""One end of a link: the protocol's state machine, sans-I/O.

    connection = LinkConnection(role=LinkRole.CENTRAL, software="siteline-central 1.0")
    transport.write(connection.data_to_send())         # our Hello
    for event in connection.receive(bytes_from_peer):  # events, in order
        ...

Either end may ask and either may serve; in practice the central asks and the site serves.
When the peer breaks a rule, `receive` returns the events before the fault and then
`ProtocolViolated` carrying the `ProtocolError`; the connection has queued a `Goodbye`
naming the problem, which the transport should send before it closes. A mistake
of the local application (answering a request twice, say) raises `LinkUsageError` instead
and leaves the connection as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.link import events as ev
from shared.link import messages as m
from shared.link.errors import ErrorCode, ProtocolError
from shared.link.flow_control import ReceiveCredit
from shared.link.framing import DEFAULT_FRAME_LIMIT, LENGTH_PREFIX_BYTES, FrameReader, encode_frame
from shared.link.outbound import DEFAULT_PIECE_BYTES, OutboundQueue
from shared.link.wire import (
    MAX_CREDIT_BYTES,
    MAX_PACE_BPS,
    MAX_REQUEST_ID,
    decode_message,
    encode_message,
)

DEFAULT_MAX_OPEN_REQUESTS = 256
DEFAULT_SEND_LIMIT_BYTES = 256 * 1024


class ConnectionState(StrEnum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


class LinkUsageError(Exception):
    """The local application used the connection wrongly (a bug on this side)."""


@dataclass(slots=True)
class _ChunkAssembly:
    header: bytes
    signature: bytes
    payload_size: int
    frame_bytes: int
    parts: list[bytes] = field(default_factory=list)
    received: int = 0


@dataclass(slots=True)
class _ReceivingStream:
    request: m.StreamRequest
    credit: ReceiveCredit
    cancelling: bool = False
    chunk: _ChunkAssembly | None = None


class LinkConnection:
    """See the module docstring."""

    def __init__(
        self,
        *,
        role: m.LinkRole,
        software: str,
        max_frame_bytes: int = DEFAULT_FRAME_LIMIT,
        piece_bytes: int = DEFAULT_PIECE_BYTES,
        max_open_requests: int = DEFAULT_MAX_OPEN_REQUESTS,
    ) -> None:
        self.role = role
        self.state = ConnectionState.AWAITING_HELLO
        self.peer: m.Hello | None = None
        self.version: int | None = None
        self.max_open_requests = max_open_requests
        self._reader = FrameReader(max_frame_bytes)
        self._out = OutboundQueue(piece_bytes=piece_bytes)
        self._out.peer_max_frame_bytes = max_frame_bytes
        self._hello = m.Hello(
            m.MIN_PROTOCOL_VERSION, m.PROTOCOL_VERSION, role, software, max_frame_bytes
        )
        self._out.control(encode_frame(encode_message(self._hello)))
        # what this side asked for
        self._last_request_id = 0
        self._awaiting_reply: dict[int, m.RequestMessage] = {}
        self._receiving: dict[int, _ReceivingStream] = {}
        # what the peer asked for
        self._last_peer_request_id = 0
        self._serving: dict[int, m.RequestMessage] = {}

    # -- asking ---------------------------------------------------------------------------

    def new_request_id(self) -> int:
        """An id for the next request (ids only grow)."""
        return self._last_request_id + 1

    def send_request(self, request: m.RequestMessage) -> None:
        """Ask the peer; answers arrive as events carrying `request.request_id`."""
        self._require_not_closed()
        if request.request_id <= self._last_request_id or request.request_id > MAX_REQUEST_ID:
            raise LinkUsageError(
                f"request id {request.request_id} does not follow {self._last_request_id}"
            )
        self._last_request_id = request.request_id
        if isinstance(request, m.STREAM_REQUESTS):
            self._receiving[request.request_id] = _ReceivingStream(
                request, ReceiveCredit(request.request_id, request.credit)
            )
        else:
            self._awaiting_reply[request.request_id] = request
        self._control(request)

    def grant(self, request_id: int, grant_bytes: int) -> None:
        """Let the peer send `grant_bytes` more on a stream this side asked for."""
        stream = self._receiving.get(request_id)
        if stream is None or stream.cancelling or grant_bytes <= 0:
            return
        grant_bytes = min(grant_bytes, MAX_CREDIT_BYTES)
        stream.credit.grant(grant_bytes)
        self._control(m.Credit(request_id, grant_bytes))

    def cancel(self, request_id: int) -> None:
        """Stop a stream this side asked for; `StreamEnded` (cancelled) follows."""
        stream = self._receiving.get(request_id)
        if stream is None:
            if request_id in self._awaiting_reply:
                raise LinkUsageError(
                    f"request {request_id} is not a stream; it cannot be cancelled"
                )
            return
        if not stream.cancelling:
            stream.cancelling = True
            self._control(m.Cancel(request_id))

    def outstanding_credit(self, request_id: int) -> int:
        """Credit granted on a stream this side asked for and not yet used by the peer."""
        stream = self._receiving.get(request_id)
        return 0 if stream is None else stream.credit.outstanding

    @property
    def awaiting_transfer(self) -> bool:
        """Whether the peer owes this side chunks: a transfer it asked for is open and has
        credit the peer has not used. Silence then means the line or the peer is gone."""
        return any(
            isinstance(stream.request, m.TransferRequest)
            and not stream.cancelling
            and stream.credit.outstanding > 0
            for stream in self._receiving.values()
        )

    def ping(self, nonce: int) -> None:
        self._require_not_closed()
        self._control(m.Ping(nonce))

    @property
    def pace_agreed(self) -> bool:
        """Whether the agreed version has `Pace` (False before the handshake)."""
        return self.version is not None and self.version >= m.PACE_VERSION

    def pace_background(self, rate_bps: int | None) -> bool:
        """Ask the peer to send its background class at `rate_bps` at most (None: no pace).

        False, and nothing sent, when the agreed version has no `Pace`: the asker must then
        pace through the credit it grants."""
        self._require_not_closed()
        if not self.pace_agreed:
            return False
        if rate_bps is not None and (isinstance(rate_bps, bool) or rate_bps < 1):
            raise LinkUsageError(f"a pace is at least 1 bit per second, or None; not {rate_bps}")
        self._control(m.Pace(min(rate_bps or 0, MAX_PACE_BPS)))
        return True

    @property
    def background_pace_bps(self) -> int | None:
        """The pace the peer set for what this side sends in the background class."""
        return self._out.pacer.rate_bps

    # -- serving --------------------------------------------------------------------------

    def reply(self, request_id: int, body: dict[str, Any]) -> None:
        """Answer a one-shot request."""
        self._take_one_shot(request_id)
        self._control(m.Reply(request_id, body))

    def fail(self, request_id: int, code: m.FailureCode, message: str) -> None:
        """Refuse a request (one-shot, or a stream before any item was sent)."""
        request = self._serving.get(request_id)
        if request is None:
            raise LinkUsageError(f"request {request_id} is not waiting for an answer")
        if isinstance(request, m.STREAM_REQUESTS):
            stream = self._out.stream(request_id)
            if stream is not None and stream.credit.sent_bytes:
                raise LinkUsageError(
                    f"stream {request_id} has sent items; end it with end_stream(failed)"
                )
            self._out.drop(request_id)
        del self._serving[request_id]
        self._control(m.Failure(request_id, code, message[:4096]))

    def sendable_bytes(self, request_id: int) -> int:
        """How much more a stream this side serves may queue (its credit left)."""
        stream = self._out.stream(request_id)
        if stream is None or request_id not in self._serving:
            return 0
        return max(0, stream.sendable_bytes)

    def send_chunk(self, request_id: int, header: bytes, signature: bytes, payload: bytes) -> bool:
        """Queue one chunk on a transfer; False if the stream is no longer open."""
        if not self._open_stream(request_id, m.TransferRequest):
            return False
        head = m.ChunkHead(request_id, header, signature, len(payload))
        self._out.item(request_id, self._frame(head))
        if payload:
            self._out.payload(request_id, payload)
        return True

    def send_live(
        self, request_id: int, codec: bytes | None, packets: tuple[m.LivePacket, ...]
    ) -> bool:
        """Queue live packets; False if the stream is no longer open."""
        if not self._open_stream(request_id, m.LiveRequest):
            return False
        self._out.item(request_id, self._frame(m.LivePackets(request_id, codec, packets)))
        return True

    @property
    def live_sealed_agreed(self) -> bool:
        """Whether the agreed version has `LiveSealed` (False before the handshake)."""
        return self.version is not None and self.version >= m.LIVE_SEALED_VERSION

    def send_live_sealed(self, request_id: int, header: bytes, signature: bytes) -> bool:
        """Queue the header and signature of a chunk whose packets this live stream sent;
        False if the stream is no longer open or the peer's version has no `LiveSealed`
        (nothing is queued then)."""
        if not self._open_stream(request_id, m.LiveRequest) or not self.live_sealed_agreed:
            return False
        self._out.item(request_id, self._frame(m.LiveSealed(request_id, header, signature)))
        return True

    def send_event(
        self, request_id: int, kind: str, device_id: str, at_ns: int, details: dict[str, Any]
    ) -> bool:
        """Queue one event; False if the subscription is no longer open."""
        if not self._open_stream(request_id, m.EventsRequest):
            return False
        item = m.EventItem(request_id, kind, device_id, at_ns, details)
        self._out.item(request_id, self._frame(item))
        return True

    def end_stream(self, request_id: int, outcome: m.StreamOutcome, message: str = "") -> bool:
        """Queue the end of a stream after its items; False if it was already over."""
        request = self._serving.get(request_id)
        if request is None:
            return self._finished_or_unknown(request_id)
        if not isinstance(request, m.STREAM_REQUESTS):
            raise LinkUsageError(f"request {request_id} is not a stream; use reply or fail")
        del self._serving[request_id]
        self._out.end(request_id, self._frame(m.StreamEnd(request_id, outcome, message[:4096])))
        return True

    # -- the transport's side ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    @property
    def wants_to_send(self) -> bool:
        """Whether a frame could go now, leaving the peer's pace aside (see `next_send_ns`)."""
        return self._out.has_sendable

    def next_send_ns(self, now_ns: int) -> int | None:
        """When `data_to_send` will next give bytes: `now_ns` (monotonic) if it would now,
        a later instant if only background frames held back by the pace wait, None if
        nothing can go until the application queues more or credit arrives."""
        return self._out.next_send_ns(now_ns)

    def data_to_send(
        self, limit_bytes: int = DEFAULT_SEND_LIMIT_BYTES, now_ns: int | None = None
    ) -> bytes:
        """Whole frames, about `limit_bytes` of them, in the order they should go.

        `now_ns` is the monotonic time; it is required once the peer has set a pace."""
        if now_ns is None:
            if self._out.pacer.rate_bps is not None:
                raise LinkUsageError("the peer set a pace: data_to_send needs now_ns")
            now_ns = 0
        return self._out.take(limit_bytes, now_ns)

    def close(self, code: ErrorCode = ErrorCode.CLOSED, message: str = "") -> None:
        """Say goodbye; queued stream items are dropped, the Goodbye is the last frame."""
        if self.state is ConnectionState.CLOSED:
            return
        self._shut(code, message)

    def receive(self, data: bytes) -> list[ev.LinkEvent]:
        """The events the bytes `data` complete, in order."""
        if self.state is ConnectionState.CLOSED:
            return []
        events: list[ev.LinkEvent] = []
        try:
            for body in self._reader.feed(data):
                message = decode_message(body)
                self._dispatch(message, len(body) + LENGTH_PREFIX_BYTES, events)
                if self.closed:
                    break
        except ProtocolError as exc:
            self._shut(exc.code, exc.message)
            events.append(ev.ProtocolViolated(exc))
        return events

    # -- internals --------------------------------------------------------------------------

    def _dispatch(self, message: m.Message, frame_bytes: int, events: list[ev.LinkEvent]) -> None:
        if self.state is ConnectionState.AWAITING_HELLO:
            if not isinstance(message, m.Hello):
                raise _unexpected(f"expected Hello first, got {type(message).__name__}")
            events.append(self._on_hello(message))
            return
        match message:
            case m.Hello():
                raise _unexpected("a second Hello")
            case m.Ping(nonce):
                self._control(m.Pong(nonce))
            case m.Pace(rate_bps):
                if not self.pace_agreed:
                    raise _unexpected(
                        f"Pace on a link of protocol version {self.version}; "
                        f"it needs {m.PACE_VERSION}"
                    )
                self._out.pacer.set_rate(rate_bps or None)
            case m.Pong(nonce):
                events.append(ev.PongReceived(nonce))
            case m.Goodbye(code, text):
                self.state = ConnectionState.CLOSED
                events.append(ev.PeerClosed(code, text))
            case m.Credit() | m.Cancel():
                self._on_stream_control(message, events)
            case m.Reply() | m.Failure():
                self._on_answer(message, events)
            case m.ChunkHead() | m.ChunkBody() | m.LivePackets() | m.LiveSealed() | m.EventItem():
                self._on_item(message, frame_bytes, events)
            case m.StreamEnd():
                self._on_stream_end(message, events)
            case _:
                self._on_request(message, events)

    def _on_hello(self, hello: m.Hello) -> ev.PeerReady:
        if hello.role == self.role:
            raise ProtocolError(ErrorCode.INCOMPATIBLE, f"both ends claim the role {hello.role}")
        version = min(self._hello.max_version, hello.max_version)
        if version < max(self._hello.min_version, hello.min_version):
            raise ProtocolError(
                ErrorCode.INCOMPATIBLE,
                f"the peer speaks protocol versions {hello.min_version}..{hello.max_version}, "
                f"this side {self._hello.min_version}..{self._hello.max_version}",
            )
        if hello.max_frame_bytes < 16 * 1024:
            raise ProtocolError(
                ErrorCode.INCOMPATIBLE,
                f"the peer accepts frames of at most {hello.max_frame_bytes} bytes; "
                "the protocol needs 16384",
            )
        self.peer = hello
        self.version = version
        self._out.peer_max_frame_bytes = hello.max_frame_bytes
        self.state = ConnectionState.OPEN
        return ev.PeerReady(hello, version)

    def _on_request(self, request: m.Message, events: list[ev.LinkEvent]) -> None:
        assert isinstance(request, m.RequestMessage)  # every other type is matched
        request_id = request.request_id
        if request_id <= self._last_peer_request_id:
            raise _unexpected(
                f"{type(request).__name__} with request id {request_id}, "
                f"not above the last one ({self._last_peer_request_id})"
            )
        self._last_peer_request_id = request_id
        self._serving[request_id] = request
        if isinstance(request, m.STREAM_REQUESTS):
            self._out.open_stream(request_id, m.request_priority(request), request.credit)
        if len(self._serving) > self.max_open_requests:
            self.fail(
                request_id,
                m.FailureCode.REFUSED,
                f"more than {self.max_open_requests} requests open on this link",
            )
            return
        events.append(ev.RequestReceived(request))

    def _on_stream_control(self, message: m.Credit | m.Cancel, events: list[ev.LinkEvent]) -> None:
        request_id = message.request_id
        name = type(message).__name__
        stream = self._out.stream(request_id)  # kept until its StreamEnd is sent
        if stream is None:
            if request_id in self._serving:
                raise _unexpected(f"{name} for request {request_id}, which is not a stream")
            if request_id <= self._last_peer_request_id:
                return  # the stream ended while this was on its way
            raise _unexpected(f"{name} for request {request_id}, never asked")
        if isinstance(message, m.Credit):
            stream.credit.grant(message.grant_bytes)
            events.append(ev.CreditReceived(request_id))
            return
        self._out.discard_items(request_id)
        self._serving.pop(request_id, None)
        self._out.end(
            request_id, self._frame(m.StreamEnd(request_id, m.StreamOutcome.CANCELLED, ""))
        )
        events.append(ev.StreamCancelled(request_id))

    def _on_answer(self, message: m.Reply | m.Failure, events: list[ev.LinkEvent]) -> None:
        request_id = message.request_id
        if isinstance(message, m.Reply):
            if self._awaiting_reply.pop(request_id, None) is None:
                raise _unexpected(f"Reply to request {request_id}, which awaits no reply")
            events.append(ev.ReplyReceived(request_id, message.body))
            return
        stream = self._receiving.get(request_id)
        if stream is not None and (stream.credit.received_bytes or stream.chunk):
            raise _unexpected(f"Failure for stream {request_id} after it sent items")
        if self._awaiting_reply.pop(request_id, None) is None and (
            self._receiving.pop(request_id, None) is None
        ):
            raise _unexpected(f"Failure for request {request_id}, which awaits no answer")
        events.append(ev.FailureReceived(request_id, message.code, message.message))

    def _on_item(
        self,
        item: m.StreamItem,
        frame_bytes: int,
        events: list[ev.LinkEvent],
    ) -> None:
        stream = self._receiving.get(item.request_id)
        name = type(item).__name__
        if stream is None:
            raise _unexpected(f"{name} for request {item.request_id}, which is no open stream")
        if isinstance(item, m.LiveSealed) and not self.live_sealed_agreed:
            raise _unexpected(
                f"LiveSealed on a link of protocol version {self.version}; "
                f"it needs {m.LIVE_SEALED_VERSION}"
            )
        expected = _REQUEST_OF_ITEM[type(item)]
        if not isinstance(stream.request, expected):
            raise _unexpected(
                f"{name} on stream {item.request_id}, a {type(stream.request).__name__}"
            )
        stream.credit.charge(frame_bytes)
        if isinstance(item, m.ChunkHead | m.ChunkBody):
            chunk = self._assemble(stream, item, frame_bytes)
            if stream.cancelling:
                return
            if isinstance(item, m.ChunkHead) and chunk is None:
                started = ev.ChunkStarted(
                    item.request_id, item.payload_size, stream.credit.outstanding
                )
                events.append(started)
            if chunk is not None:
                events.append(chunk)
        elif stream.cancelling:
            return
        elif isinstance(item, m.LivePackets):
            events.append(ev.LiveReceived(item.request_id, item.codec, item.packets, frame_bytes))
        elif isinstance(item, m.LiveSealed):
            events.append(
                ev.LiveSealedReceived(item.request_id, item.header, item.signature, frame_bytes)
            )
        else:
            events.append(ev.EventReceived(item, frame_bytes))

    def _assemble(
        self, stream: _ReceivingStream, item: m.ChunkHead | m.ChunkBody, frame_bytes: int
    ) -> ev.ChunkReceived | None:
        request_id = item.request_id
        if isinstance(item, m.ChunkHead):
            if stream.chunk is not None:
                raise _unexpected(
                    f"ChunkHead on stream {request_id} before the previous chunk's payload "
                    f"was complete ({stream.chunk.received} of {stream.chunk.payload_size} bytes)"
                )
            chunk = stream.chunk = _ChunkAssembly(
                item.header, item.signature, item.payload_size, frame_bytes
            )
        else:
            pending = stream.chunk
            if pending is None:
                raise _unexpected(f"ChunkBody on stream {request_id} without a ChunkHead")
            if pending.received + len(item.data) > pending.payload_size:
                raise ProtocolError(
                    ErrorCode.MALFORMED,
                    f"stream {request_id}: ChunkBody brings the payload to "
                    f"{pending.received + len(item.data)} bytes; {pending.payload_size} announced",
                )
            pending.parts.append(item.data)
            pending.received += len(item.data)
            pending.frame_bytes += frame_bytes
            chunk = pending
        if chunk.received < chunk.payload_size:
            return None
        stream.chunk = None
        payload = chunk.parts[0] if len(chunk.parts) == 1 else b"".join(chunk.parts)
        return ev.ChunkReceived(
            request_id, chunk.header, chunk.signature, payload, chunk.frame_bytes
        )

    def _on_stream_end(self, message: m.StreamEnd, events: list[ev.LinkEvent]) -> None:
        stream = self._receiving.pop(message.request_id, None)
        if stream is None:
            raise _unexpected(f"StreamEnd for request {message.request_id}, no open stream")
        events.append(
            ev.StreamEnded(
                message.request_id, message.outcome, message.message, stream.chunk is not None
            )
        )

    def _take_one_shot(self, request_id: int) -> m.RequestMessage:
        request = self._serving.get(request_id)
        if request is None:
            raise LinkUsageError(f"request {request_id} is not waiting for an answer")
        if isinstance(request, m.STREAM_REQUESTS):
            raise LinkUsageError(f"request {request_id} is a stream; send items and end_stream")
        del self._serving[request_id]
        return request

    def _open_stream(self, request_id: int, kind: type[Any]) -> bool:
        request = self._serving.get(request_id)
        if request is None:
            return self._finished_or_unknown(request_id)
        if not isinstance(request, kind):
            raise LinkUsageError(
                f"request {request_id} is a {type(request).__name__}, not a {kind.__name__}"
            )
        return True

    def _finished_or_unknown(self, request_id: int) -> bool:
        if request_id > self._last_peer_request_id:
            raise LinkUsageError(f"request {request_id} was never received")
        return False

    def _frame(self, message: m.Message) -> bytes:
        frame = encode_frame(encode_message(message))
        if len(frame) - LENGTH_PREFIX_BYTES > self._out.peer_max_frame_bytes:
            raise LinkUsageError(
                f"{type(message).__name__} of {len(frame)} bytes exceeds the peer's frame "
                f"limit of {self._out.peer_max_frame_bytes}"
            )
        return frame

    def _control(self, message: m.Message) -> None:
        self._out.control(self._frame(message))

    def _require_not_closed(self) -> None:
        if self.state is ConnectionState.CLOSED:
            raise LinkUsageError("the connection is closed")

    def _shut(self, code: ErrorCode, message: str) -> None:
        for request_id in list(self._serving):
            self._out.drop(request_id)
        self._serving.clear()
        self._out.drop_all_streams()
        self._out.control(encode_frame(encode_message(m.Goodbye(str(code), message[:4096]))))
        self.state = ConnectionState.CLOSED


_REQUEST_OF_ITEM: dict[type[Any], type[Any]] = {
    m.ChunkHead: m.TransferRequest,
    m.ChunkBody: m.TransferRequest,
    m.LivePackets: m.LiveRequest,
    m.LiveSealed: m.LiveRequest,
    m.EventItem: m.EventsRequest,
}


def _unexpected(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNEXPECTED, message)
