"""What a benchmark site hands to its links, read back from the bytes it sends.

The retrieval benchmark's site (bench/retrieval_site.py) serves the agent's own link
(`agent.link_endpoint.serve_link`) through `counting_link_route`: the WebSocket it is given
cuts every message the site sends into link frames (shared/link/framing.py) and decodes
them, as the central will. For each message, `SentLog` keeps the monotonic time it was
handed over and its bytes, split into a transfer's frames (`ChunkHead`, `ChunkBody`: what
the site's pace for the background class counts) and all others (live video, answers,
control); for each `ChunkHead`, the chunk's device, seq and payload size; and each link
session's start, end and why it ended. Written as JSON when the site stops, read back with
`SiteSends.load`.

"Sent" means handed to the WebSocket (then TLS, the kernel, the line): a chunk the kernel
still held when a cut ended the session and that the next session sends again counts twice,
as the site did send it twice; what TCP retransmits within one session is not seen here.
The monotonic clock is the machine's, so these times compare with the benchmark's own
`time.monotonic_ns()` although the site runs in a network namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from agent.event_hub import EventHub
from agent.link_endpoint import LINK_ROUTE_PATH, accept_link_websocket, serve_link
from agent.web_api import PRINCIPAL, SERVICE
from shared.chunk import ChunkHeader
from shared.clock import Clock
from shared.link import messages as m
from shared.link.framing import MAX_FRAME_LIMIT, FrameReader
from shared.link.wire import decode_message
from shared.live_relay import LiveRelay

_FRAME_PREFIX_BYTES = 4


@dataclass(frozen=True)
class ChunkSend:
    at_ns: int  # monotonic
    device_id: str
    seq: int
    payload_bytes: int


@dataclass(frozen=True)
class MessageSend:
    at_ns: int  # monotonic
    transfer_bytes: int  # ChunkHead and ChunkBody frames, length prefixes included
    other_bytes: int


@dataclass(frozen=True)
class SessionSpan:
    opened_ns: int
    closed_ns: int | None  # None: still open when the site stopped
    reason: str


@dataclass
class SentLog:
    """The site's side: filled while it serves, written when it stops."""

    messages: list[MessageSend] = field(default_factory=list)
    chunks: list[ChunkSend] = field(default_factory=list)
    sessions: list[SessionSpan] = field(default_factory=list)

    def record(self, at_ns: int, frames: list[bytes]) -> None:
        transfer = other = 0
        for body in frames:
            size = len(body) + _FRAME_PREFIX_BYTES
            message = decode_message(body)
            if isinstance(message, m.ChunkHead):
                header = ChunkHeader.decode(message.header)
                self.chunks.append(
                    ChunkSend(at_ns, header.device_id, header.seq, message.payload_size)
                )
                transfer += size
            elif isinstance(message, m.ChunkBody):
                transfer += size
            else:
                other += size
        self.messages.append(MessageSend(at_ns, transfer, other))

    def session_opened(self, at_ns: int) -> int:
        """A link opened; its index, for `session_closed`."""
        self.sessions.append(SessionSpan(at_ns, None, "still open when the site stopped"))
        return len(self.sessions) - 1

    def session_closed(self, index: int, at_ns: int, reason: str) -> None:
        self.sessions[index] = SessionSpan(self.sessions[index].opened_ns, at_ns, reason)

    def write(self, path: Path) -> None:
        """As JSON (blocking)."""
        path.write_text(
            json.dumps(
                {
                    "messages": [[s.at_ns, s.transfer_bytes, s.other_bytes] for s in self.messages],
                    "chunks": [[c.at_ns, c.device_id, c.seq, c.payload_bytes] for c in self.chunks],
                    "sessions": [[s.opened_ns, s.closed_ns, s.reason] for s in self.sessions],
                }
            )
        )


@dataclass(frozen=True)
class SiteSends:
    """The benchmark's side: what the site wrote, and questions about a span of it."""

    messages: list[MessageSend]
    chunks: list[ChunkSend]
    sessions: list[SessionSpan]

    @classmethod
    def load(cls, path: Path) -> SiteSends:
        data = json.loads(path.read_text())
        return cls(
            [MessageSend(*row) for row in data["messages"]],
            [ChunkSend(*row) for row in data["chunks"]],
            [SessionSpan(*row) for row in data["sessions"]],
        )

    def transfer_sends(self, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
        """(instant, transfer bytes) of each message in [start_ns, end_ns] that had any."""
        return [
            (s.at_ns, s.transfer_bytes)
            for s in self.messages
            if start_ns <= s.at_ns <= end_ns and s.transfer_bytes
        ]

    def bytes_between(self, start_ns: int, end_ns: int) -> int:
        """Every byte handed to the links in [start_ns, end_ns] (frames of any kind)."""
        return sum(
            s.transfer_bytes + s.other_bytes for s in self.messages if start_ns <= s.at_ns <= end_ns
        )

    def sessions_opened_between(self, start_ns: int, end_ns: int) -> list[SessionSpan]:
        """The links the central opened in [start_ns, end_ns] (after a cut: a new link)."""
        return [s for s in self.sessions if start_ns <= s.opened_ns <= end_ns]

    def sessions_never_closed(self) -> list[SessionSpan]:
        """Links whose handler had not returned when the site stopped, though the central
        had long opened others (a link handler that never ends is a leak)."""
        return [s for s in self.sessions if s.closed_ns is None]


class CountingWebSocket:
    """A WebSocket that records in a `SentLog` the frames of every message sent on it."""

    def __init__(self, inner: web.WebSocketResponse, log: SentLog, clock: Clock) -> None:
        self._inner = inner
        self._log = log
        self._clock = clock
        self._reader = FrameReader(MAX_FRAME_LIMIT)

    async def send_bytes(self, data: bytes) -> None:
        self._log.record(self._clock.monotonic_ns(), self._reader.feed(data))
        await self._inner.send_bytes(data)

    async def receive(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - aiohttp's own signature
    ) -> aiohttp.WSMessage:
        return await self._inner.receive(timeout)

    async def close(self, *, code: int = aiohttp.WSCloseCode.OK, message: bytes = b"") -> bool:
        return await self._inner.close(code=code, message=message)


def counting_link_route(
    log: SentLog,
    *,
    events: EventHub,
    live: LiveRelay,
    clock: Clock,
    software: str,
    read_timeout_s: float,
) -> web.RouteDef:
    """The agent's link route (`agent.link_endpoint.link_route`) with what it sends
    recorded in `log`."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        websocket = await accept_link_websocket(request)
        index = log.session_opened(clock.monotonic_ns())
        reason = "stopped"
        try:
            end = await serve_link(
                CountingWebSocket(websocket, log, clock),
                request[PRINCIPAL],
                request.app[SERVICE],
                events=events,
                live=live,
                clock=clock,
                software=software,
                read_timeout_s=read_timeout_s,
            )
            reason = f"{end.reason}: {end.detail}"
        finally:
            log.session_closed(index, clock.monotonic_ns(), reason)
        return websocket

    return web.get(LINK_ROUTE_PATH, handle, allow_head=False)
