"""One link connection carried by a WebSocket, in either direction.

The session reads WebSocket messages into the sans-I/O `LinkConnection` and writes what the
connection has queued, one batch at a time so that the priority order is decided as late as
possible and the socket's own buffer applies backpressure. It routes events: answers to this
side's requests go to the `LinkClient`, the peer's requests to the `RequestServer`.

Liveness: a side that has sent nothing, or received nothing, for a third of its read timeout
sends a Ping, which the peer answers; a side that receives nothing for the whole read timeout
treats the peer as gone (a half-open TCP connection looks exactly like that) and closes. The
"received nothing" rule makes each side keep its own timeout satisfied: the two sides' read
timeouts are configured apart (a site on a mobile line may give up sooner than the central),
and a side must not rely on the peer's idle pings coming often enough for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import aiohttp

from shared.clock import NS_PER_S, Clock
from shared.link import events as ev
from shared.link.connection import LinkConnection
from shared.link.errors import ErrorCode
from shared.link.messages import FailureCode

_log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT_S = 30.0
STALL_PROBE_S = 2.0
"""How long a transfer the peer owes chunks on may stay silent before this side pings to
find out whether the connection still exists (see `LinkSession._keepalive_loop`). A site
sends a transfer's chunks back to back, so two silent seconds mean the line or the peer's
end is gone; the probe costs one small frame per silent stretch."""
SEND_BATCH_BYTES = 64 * 1024
_GOODBYE_FLUSH_TIMEOUT_S = 2.0
_MIN_KEEPALIVE_WAIT_S = 0.05


class WebSocketLike(Protocol):
    """What aiohttp's client and server WebSockets both offer."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - aiohttp's own signature
    ) -> aiohttp.WSMessage: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


class RequestServer(Protocol):
    """The side that serves the peer's requests (the agent)."""

    def on_request(self, event: ev.RequestReceived) -> None: ...

    def on_credit(self, event: ev.CreditReceived) -> None: ...

    def on_cancel(self, event: ev.StreamCancelled) -> None: ...

    def on_session_end(self) -> None: ...


class AnswerListener(Protocol):
    """The side that asks (the link client)."""

    def on_answer(self, event: ev.LinkEvent) -> None: ...

    def on_session_end(self, reason: SessionEnd) -> None: ...


class EndReason(StrEnum):
    CLOSED_BY_US = "closed_by_us"
    CLOSED_BY_PEER = "closed_by_peer"  # Goodbye or WebSocket close
    CUT = "cut"  # the connection dropped without a goodbye
    STALLED = "stalled"  # nothing arrived within the read timeout
    PROTOCOL_ERROR = "protocol_error"  # the peer broke the protocol


@dataclass(frozen=True, slots=True)
class SessionEnd:
    reason: EndReason
    detail: str


class LinkSession:
    """See the module docstring."""

    def __init__(
        self,
        connection: LinkConnection,
        websocket: WebSocketLike,
        *,
        clock: Clock,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        stall_probe_s: float = STALL_PROBE_S,
        server: RequestServer | None = None,
        client: AnswerListener | None = None,
    ) -> None:
        self.connection = connection
        self._ws = websocket
        self._clock = clock
        self.read_timeout_s = read_timeout_s
        self.stall_probe_s = stall_probe_s
        self.server = server
        self.client = client
        self.bytes_sent = 0
        self.bytes_received = 0
        self.ready = asyncio.Event()
        self.end: SessionEnd | None = None
        self._wake = asyncio.Event()
        self._last_sent_ns = clock.monotonic_ns()
        self._last_received_ns = clock.monotonic_ns()
        self.stall_probes = 0
        self._nonces = itertools.count(1)

    def flush(self) -> None:
        """Something was queued on the connection: let the writer send it."""
        self._wake.set()

    def close(self, message: str = "") -> None:
        """End the session: a Goodbye is sent, then the WebSocket is closed."""
        if not self.connection.closed:
            self.connection.close(ErrorCode.CLOSED, message)
            self._finish(EndReason.CLOSED_BY_US, message)
        self.flush()

    async def run(self) -> SessionEnd:
        """Carry the link until either side closes it or it dies; why it ended."""
        writer = asyncio.create_task(self._write_loop(), name="link-writer")
        keepalive = asyncio.create_task(self._keepalive_loop(), name="link-keepalive")
        self.flush()
        try:
            await self._read_loop()
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            await self._stop_writer(writer)
            try:
                await self._close_websocket()
            finally:
                end = self.end or SessionEnd(EndReason.CUT, "the session was stopped")
                self.end = end
                if self.server is not None:
                    self.server.on_session_end()
                if self.client is not None:
                    self.client.on_session_end(end)
        return end

    async def _close_websocket(self) -> None:
        """Close the WebSocket, whatever state the connection is in.

        A writer cancelled while blocked in aiohttp's drain (a cut link with a full socket)
        also cancels aiohttp's shared drain future, so closing can raise CancelledError in
        a task nobody cancels. That is swallowed here (the socket is gone anyway); a real
        cancellation of this task goes on."""
        try:
            await self._ws.close()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception:  # the peer is gone; nothing to tell it
            _log.debug("closing the link's WebSocket failed", exc_info=True)

    async def _read_loop(self) -> None:
        while not self.connection.closed:
            try:
                message = await self._ws.receive(timeout=self.read_timeout_s)
            except TimeoutError:
                detail = f"nothing received for {self.read_timeout_s:g} s"
                self._finish(EndReason.STALLED, detail)
                self.connection.close(ErrorCode.CLOSED, detail)
                return
            if message.type is aiohttp.WSMsgType.BINARY:
                self.bytes_received += len(message.data)
                self._last_received_ns = self._clock.monotonic_ns()
                for event in self.connection.receive(message.data):
                    self._route(event)
                # A reply the connection queued itself (Pong, a StreamEnd for a Cancel, a
                # Goodbye), or anything routing queued; most messages (live packets) queue
                # nothing, and waking the writer for nothing costs the loop a task step.
                if self.connection.wants_to_send:
                    self.flush()
            elif message.type is aiohttp.WSMsgType.TEXT:
                detail = "a text WebSocket message; the link sends binary frames only"
                self.connection.close(ErrorCode.MALFORMED, detail)
                self._finish(EndReason.PROTOCOL_ERROR, detail)
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                self._finish(EndReason.CUT, f"the WebSocket ended ({message.type.name})")
                return

    def _route(self, event: ev.LinkEvent) -> None:
        match event:
            case ev.PeerReady():
                self.ready.set()
            case ev.PeerClosed(code, message):
                self._finish(EndReason.CLOSED_BY_PEER, f"{code}: {message}".rstrip(": "))
            case ev.ProtocolViolated(error):
                _log.warning("link protocol error from the peer: %s", error)
                self._finish(EndReason.PROTOCOL_ERROR, str(error))
            case ev.RequestReceived():
                if self.server is None:
                    self.connection.fail(
                        event.request.request_id,
                        FailureCode.REFUSED,
                        "this end of the link serves no requests",
                    )
                else:
                    self.server.on_request(event)
            case ev.CreditReceived():
                if self.server is not None:
                    self.server.on_credit(event)
            case ev.StreamCancelled():
                if self.server is not None:
                    self.server.on_cancel(event)
            case _:
                if self.client is not None:
                    self.client.on_answer(event)

    def _finish(self, reason: EndReason, detail: str) -> None:
        if self.end is None:
            self.end = SessionEnd(reason, detail)

    async def _write_loop(self) -> None:
        paced_until_ns: int | None = None
        while True:
            await self._wait_for_work(paced_until_ns)
            self._wake.clear()
            while True:
                now_ns = self._clock.monotonic_ns()
                paced_until_ns = self.connection.next_send_ns(now_ns)
                if paced_until_ns is None or paced_until_ns > now_ns:
                    break
                data = self.connection.data_to_send(SEND_BATCH_BYTES, now_ns)
                if not data:
                    paced_until_ns = None
                    break
                await self._ws.send_bytes(data)
                self.bytes_sent += len(data)
                self._last_sent_ns = self._clock.monotonic_ns()
            if self.connection.closed and not self.connection.wants_to_send:
                return  # the Goodbye, the last frame, is sent

    async def _wait_for_work(self, paced_until_ns: int | None) -> None:
        """Until something is queued (`flush`) or the peer's pace lets a frame go."""
        if paced_until_ns is None:
            await self._wake.wait()
            return
        delay_s = (paced_until_ns - self._clock.monotonic_ns()) / NS_PER_S
        if delay_s <= 0 or self._wake.is_set():
            return
        woken = asyncio.ensure_future(self._wake.wait())
        paced = asyncio.ensure_future(self._clock.sleep(delay_s))
        try:
            await asyncio.wait({woken, paced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (woken, paced):
                task.cancel()

    async def _stop_writer(self, writer: asyncio.Task[None]) -> None:
        """Give the writer a moment to send the Goodbye, then stop it."""
        if not self.connection.closed:
            self.connection.close(ErrorCode.CLOSED, "the session ends")
        self.flush()
        await asyncio.wait({writer}, timeout=_GOODBYE_FLUSH_TIMEOUT_S)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
            await writer

    async def _keepalive_loop(self) -> None:
        """Ping when this side has sent nothing for a third of the read timeout (so the
        peer's read timeout never fires on a live link), or received nothing for as long
        (the Pong then keeps this side's own timeout from firing, whatever the peer's idle
        interval is: the two timeouts are configured apart), and probe a stalled transfer: when
        the peer owes chunks and nothing arrived for `stall_probe_s`, ping at once. A peer
        whose end of the connection is gone (a router restarted, a mobile line changed its
        address, the reset lost on the way) then answers with a reset as soon as the line
        carries the ping, and the link ends in seconds instead of at the read timeout."""
        interval_s = self.read_timeout_s / 3
        tick_s = min(interval_s, self.stall_probe_s)
        probe_ns = round(self.stall_probe_s * NS_PER_S)
        last_probe_ns = last_ping_ns = 0
        while not self.connection.closed:
            wait_s = tick_s
            if self.connection.awaiting_transfer:  # wake when the silence would be a stall
                due_ns = max(self._last_received_ns, last_probe_ns) + probe_ns
                until_due_s = (due_ns - self._clock.monotonic_ns()) / NS_PER_S
                wait_s = min(tick_s, max(_MIN_KEEPALIVE_WAIT_S, until_due_s))
            await self._clock.sleep(wait_s)
            if self.connection.closed:
                return
            now_ns = self._clock.monotonic_ns()
            idle_ns = interval_s * NS_PER_S * 0.9
            idle = now_ns - self._last_sent_ns >= idle_ns or (
                now_ns - max(self._last_received_ns, last_ping_ns) >= idle_ns
            )
            stalled = (
                self.connection.awaiting_transfer
                and now_ns - self._last_received_ns >= probe_ns
                and now_ns - last_probe_ns >= probe_ns
            )
            if idle or stalled:
                if stalled:
                    last_probe_ns = now_ns
                    self.stall_probes += 1
                last_ping_ns = now_ns
                self.connection.ping(next(self._nonces))
                self.flush()
