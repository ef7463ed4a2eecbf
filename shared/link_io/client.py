"""The asking side of a link: typed operations on a site, over a `LinkSession`.

One-shot operations return the reply's body. `transfer` streams a stream's chunks after a
cursor: each chunk is checked (`accept_chunk`), handed to the caller's `commit`, and only
then does the cursor move and credit go back to the site, so the site can never be more
than the credit window ahead of what is durably stored. `live`, `live_with_seals` and
`events` are subscriptions, used as async context managers that cancel the stream on exit.
`live` gives the packets only; `live_with_seals` also gives the header and signature of
each chunk the site sealed from them, for a receiver that records the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared.link import events as ev
from shared.link import messages as m
from shared.link_io.session import LinkSession, SessionEnd
from shared.transfer_acceptance import (
    AcceptedChunk,
    TransferCursor,
    TransferExpectation,
    accept_chunk,
)

DEFAULT_TRANSFER_WINDOW_BYTES = 4 * 1024 * 1024
PACED_WINDOW_BYTES = 64 * 1024
"""The opening window of a transfer under a cap (it passes the gate before the request)."""
MIN_SITE_PACED_WINDOW_BYTES = 256 * 1024
DEFAULT_LIVE_WINDOW_BYTES = 8 * 1024 * 1024
LIVE_GRANT_PARTS = 4
"""A live stream's credit goes back once a quarter of its window was taken, not frame by
frame: the site keeps at least three quarters to send on, and the link carries one Credit
per quarter window instead of one per packet."""
DEFAULT_EVENTS_WINDOW_BYTES = 256 * 1024


def paced_window_bytes(rate_bps: int | None) -> int:
    """The credit window of a transfer the site paces at `rate_bps` (None: unpaced).

    The pace sets the rate; the window only has to keep one stream going alone at the full
    rate over a long round trip (half a second of the rate), and bounds what the site
    queues for it."""
    if rate_bps is None:
        return DEFAULT_TRANSFER_WINDOW_BYTES
    half_second = rate_bps // 16
    return max(MIN_SITE_PACED_WINDOW_BYTES, min(DEFAULT_TRANSFER_WINDOW_BYTES, half_second))


class RequestFailed(Exception):
    """The site refused or could not serve a request."""

    def __init__(self, code: m.FailureCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class LinkLost(Exception):
    """The link ended while an answer was awaited."""

    def __init__(self, end: SessionEnd) -> None:
        super().__init__(f"the link ended ({end.reason}: {end.detail})")
        self.end = end


class CreditGate(Protocol):
    """Paces the credit a transfer gives (the central's bandwidth cap). The transfer asks
    in pieces of at most `grant_piece_bytes` (None: any size), so the gate can keep short
    windows exact; the site cannot send what was not granted."""

    @property
    def grant_piece_bytes(self) -> int | None: ...

    async def acquire(self, grant_bytes: int) -> None: ...


Commit = Callable[[AcceptedChunk], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    cursor: TransferCursor
    chunks: int
    payload_bytes: int
    wire_bytes: int
    missing: int  # chunks the site no longer had (skipped in the sequence)


async def _acquire_in_pieces(gate: CreditGate, total_bytes: int) -> None:
    piece = gate.grant_piece_bytes or total_bytes
    left = total_bytes
    while left > 0:
        part = min(left, piece)
        await gate.acquire(part)
        left -= part


def _payload_frames_bytes(payload_size: int) -> int:
    """At most what the ChunkBody frames of a payload cost (20 bytes per piece, pieces of
    at least 1 KiB unless credit is scarcer, which this grant prevents)."""
    return payload_size + 20 * (payload_size // 1024 + 1)


class LinkClient:
    """See the module docstring. Construct once per session; it attaches itself."""

    def __init__(self, session: LinkSession) -> None:
        self.session = session
        self.connection = session.connection
        session.client = self
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[int, asyncio.Queue[ev.LinkEvent | SessionEnd]] = {}
        self._ended = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self.session.end is None

    async def wait_closed(self) -> SessionEnd:
        """Until the link ends, for whatever reason; why it ended."""
        await self._ended.wait()
        end = self.session.end
        assert end is not None  # set before the session tells its listeners
        return end

    def close(self, message: str = "") -> None:
        """End the link (a Goodbye is sent); `wait_closed` returns soon after."""
        self.session.close(message)

    def pace_background(self, rate_bps: int | None) -> bool:
        """Ask the site to send background streams (retrievals), all together, at
        `rate_bps` at most (None: as fast as credit allows). False when the site's protocol
        has no pace (or the link is closed): pace through a `CreditGate` then."""
        if self.connection.closed or not self.connection.pace_background(rate_bps):
            return False
        self.session.flush()
        return True

    # -- one-shot operations ------------------------------------------------------------

    async def site_info(self) -> dict[str, Any]:
        return await self._ask(m.SiteInfoRequest(self._next_id()))

    async def devices(self) -> list[dict[str, Any]]:
        body = await self._ask(m.DeviceListRequest(self._next_id()))
        devices: list[dict[str, Any]] = body["devices"]
        return devices

    async def status(self) -> dict[str, Any]:
        return await self._ask(m.StatusRequest(self._next_id()))

    async def timeline(
        self, device_id: str, stream: str, start_ns: int, end_ns: int
    ) -> dict[str, Any]:
        return await self._ask(
            m.TimelineRequest(self._next_id(), device_id, stream, start_ns, end_ns)
        )

    async def place_hold(
        self,
        device_id: str,
        *,
        streams: tuple[str, ...],
        start_ns: int,
        end_ns: int,
        expires_ns: int,
        reason: str,
    ) -> dict[str, Any]:
        return await self._ask(
            m.PlaceHoldRequest(
                self._next_id(), device_id, streams, start_ns, end_ns, expires_ns, reason
            )
        )

    async def list_holds(self) -> list[dict[str, Any]]:
        body = await self._ask(m.ListHoldsRequest(self._next_id()))
        holds: list[dict[str, Any]] = body["holds"]
        return holds

    async def release_hold(self, hold_id: int) -> dict[str, Any]:
        return await self._ask(m.ReleaseHoldRequest(self._next_id(), hold_id))

    # -- streams ------------------------------------------------------------------------

    async def transfer(
        self,
        expectation: TransferExpectation,
        cursor: TransferCursor,
        start_ns: int,
        end_ns: int,
        *,
        commit: Commit,
        priority: m.Priority = m.Priority.BACKGROUND,
        window_bytes: int = DEFAULT_TRANSFER_WINDOW_BYTES,
        gate: CreditGate | None = None,
    ) -> TransferOutcome:
        """Fetch and commit the chunks after `cursor` in [start_ns, end_ns).

        Raises ChunkRejected (the stream is cancelled; the cursor stays at the last good
        chunk), RequestFailed, or LinkLost; in every case everything committed so far is
        safe and a new transfer from the caller's cursor resumes after it. When `commit`
        or `gate` raises, or the caller is cancelled, the site's stream is cancelled too.
        """
        if gate is not None and gate.grant_piece_bytes is not None:
            # Under a cap even the opening credit passes the gate: a small window, paid
            # for before the request goes out.
            window_bytes = min(window_bytes, PACED_WINDOW_BYTES)
            await _acquire_in_pieces(gate, window_bytes)
        request_id = self._next_id()
        queue = self._open_stream(request_id)
        self._send(
            m.TransferRequest(
                request_id,
                expectation.device_id,
                expectation.stream,
                start_ns,
                end_ns,
                cursor.seq,
                window_bytes,
                priority,
            )
        )
        chunks = payload_bytes = wire_bytes = missing = 0
        lent = 0  # credit granted beyond the window so that a large chunk can complete
        ended = False  # the site ended the stream (or the link ended): nothing to cancel
        try:
            while True:
                event = await queue.get()
                if isinstance(event, ev.ChunkStarted):
                    needed = _payload_frames_bytes(event.payload_size)
                    # Not outstanding_credit(): pieces of this payload that came in the same
                    # message have used some already, and would be lent twice.
                    shortfall = needed - event.credit_left
                    if shortfall > 0:
                        lent += shortfall
                        await self._grant_paced(request_id, shortfall, gate)
                elif isinstance(event, ev.ChunkReceived):
                    accepted = accept_chunk(  # ChunkRejected: cancelled below
                        expectation, cursor, event.header, event.signature, event.payload
                    )
                    await commit(accepted)
                    cursor = cursor.after(accepted.chunk)
                    chunks += 1
                    payload_bytes += len(event.payload)
                    wire_bytes += event.frame_bytes
                    missing += accepted.missing_before
                    repaid = min(lent, event.frame_bytes)
                    lent -= repaid
                    give_back = event.frame_bytes - repaid
                    if give_back > 0:
                        await self._grant_paced(request_id, give_back, gate)
                elif isinstance(event, ev.StreamEnded):
                    ended = True
                    if event.outcome is not m.StreamOutcome.COMPLETE:
                        raise RequestFailed(m.FailureCode.UNAVAILABLE, event.message)
                    return TransferOutcome(cursor, chunks, payload_bytes, wire_bytes, missing)
                else:
                    ended = True
                    self._raise_end(event)
        finally:
            # Whatever stopped this side (a refused chunk, the commit or the credit gate
            # raising, the caller cancelled): the site stops sending.
            if not ended:
                self._cancel(request_id)
            self._streams.pop(request_id, None)

    @contextlib.asynccontextmanager
    async def live(
        self, device_id: str, stream: str, *, window_bytes: int = DEFAULT_LIVE_WINDOW_BYTES
    ) -> AsyncIterator[AsyncIterator[ev.LiveReceived]]:
        """Packets of a device's stream as they are recorded (the last GOP first)."""
        async with self.live_with_seals(device_id, stream, window_bytes=window_bytes) as items:

            async def packets() -> AsyncIterator[ev.LiveReceived]:
                async for item in items:
                    if isinstance(item, ev.LiveReceived):
                        yield item

            yield packets()

    @contextlib.asynccontextmanager
    async def live_with_seals(
        self, device_id: str, stream: str, *, window_bytes: int = DEFAULT_LIVE_WINDOW_BYTES
    ) -> AsyncIterator[AsyncIterator[ev.LiveReceived | ev.LiveSealedReceived]]:
        """Packets of a device's stream as they are recorded (the last GOP first), each
        chunk's seal after its last packet (`LiveSealedReceived`; only from a site whose
        protocol has it, see `connection.live_sealed_agreed`, and only for chunks it
        stored)."""
        request_id = self._next_id()
        queue = self._open_stream(request_id)
        self._send(m.LiveRequest(request_id, device_id, stream, window_bytes))
        grant_at = max(1, window_bytes // LIVE_GRANT_PARTS)

        async def items() -> AsyncIterator[ev.LiveReceived | ev.LiveSealedReceived]:
            taken = 0  # frame bytes taken and not yet given back
            while True:
                event = await queue.get()
                if isinstance(event, ev.LiveReceived | ev.LiveSealedReceived):
                    taken += event.frame_bytes
                    if taken >= grant_at:
                        self.connection.grant(request_id, taken)
                        self.session.flush()
                        taken = 0
                    yield event
                elif isinstance(event, ev.StreamEnded):
                    return
                else:
                    self._raise_end(event)

        try:
            yield items()
        finally:
            self._cancel(request_id)
            self._streams.pop(request_id, None)

    @contextlib.asynccontextmanager
    async def events(
        self, kinds: tuple[str, ...] = (), *, window_bytes: int = DEFAULT_EVENTS_WINDOW_BYTES
    ) -> AsyncIterator[AsyncIterator[m.EventItem]]:
        """The site's events as they happen (`kinds` empty: all)."""
        request_id = self._next_id()
        queue = self._open_stream(request_id)
        self._send(m.EventsRequest(request_id, kinds, window_bytes))

        async def items() -> AsyncIterator[m.EventItem]:
            while True:
                event = await queue.get()
                if isinstance(event, ev.EventReceived):
                    self.connection.grant(request_id, event.frame_bytes)
                    self.session.flush()
                    yield event.event
                elif isinstance(event, ev.StreamEnded):
                    return
                else:
                    self._raise_end(event)

        try:
            yield items()
        finally:
            self._cancel(request_id)
            self._streams.pop(request_id, None)

    # -- AnswerListener -----------------------------------------------------------------

    def on_answer(self, event: ev.LinkEvent) -> None:
        if isinstance(event, ev.ReplyReceived | ev.FailureReceived):
            future = self._waiting.pop(event.request_id, None)
            if future is not None and not future.done():
                if isinstance(event, ev.ReplyReceived):
                    future.set_result(event.body)
                else:
                    future.set_exception(RequestFailed(event.code, event.message))
                return
        request_id = (
            event.event.request_id
            if isinstance(event, ev.EventReceived)
            else getattr(event, "request_id", None)
        )
        if request_id is not None and request_id in self._streams:
            self._streams[request_id].put_nowait(event)

    def on_session_end(self, reason: SessionEnd) -> None:
        self._ended.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LinkLost(reason))
        self._waiting.clear()
        for queue in self._streams.values():
            queue.put_nowait(reason)

    # -- internals ----------------------------------------------------------------------

    async def _grant_paced(
        self, request_id: int, grant_bytes: int, gate: CreditGate | None
    ) -> None:
        """Grant credit, each piece once the gate admits it (the site may start on the
        first piece while the next waits)."""
        piece = grant_bytes if gate is None else gate.grant_piece_bytes or grant_bytes
        left = grant_bytes
        while left > 0:
            part = min(left, piece)
            if gate is not None:
                await gate.acquire(part)
            self.connection.grant(request_id, part)
            self.session.flush()
            left -= part

    def _next_id(self) -> int:
        return self.connection.new_request_id()

    def _send(self, request: m.RequestMessage) -> None:
        if self.session.end is not None:
            raise LinkLost(self.session.end)
        self.connection.send_request(request)
        self.session.flush()

    async def _ask(self, request: m.RequestMessage) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request.request_id] = future
        try:
            self._send(request)
        except BaseException:
            self._waiting.pop(request.request_id, None)
            raise
        return await future

    def _open_stream(self, request_id: int) -> asyncio.Queue[ev.LinkEvent | SessionEnd]:
        queue: asyncio.Queue[ev.LinkEvent | SessionEnd] = asyncio.Queue()
        self._streams[request_id] = queue
        return queue

    def _cancel(self, request_id: int) -> None:
        if self.session.end is None and not self.connection.closed:
            self.connection.cancel(request_id)
            self.session.flush()

    @staticmethod
    def _raise_end(event: ev.LinkEvent | SessionEnd) -> None:
        if isinstance(event, SessionEnd):
            raise LinkLost(event)
        if isinstance(event, ev.FailureReceived):
            raise RequestFailed(event.code, event.message)
        raise AssertionError(f"unexpected event on a stream: {event!r}")
