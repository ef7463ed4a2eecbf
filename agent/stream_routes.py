"""The REST API's streams: the site's events as Server-Sent Events, a stream's stored chunks
as a download, and live video as fragmented MP4. They are the link's event subscription,
transfer and live stream (`agent/link_server.py`) for on-site users and tools, with the
same permission rule: an unknown device and a forbidden one answer the same 404.

Every check (parameters, device, stream) happens before the response starts, so a refusal
is an ordinary JSON error. After that the response is a stream, and it ends:

- events and live: when the client goes, when the server starts to stop (`STOPPING`), or
  when the session of the request's token ends (logout, expiry), checked at each write and
  heartbeat. These end cleanly: nothing is lost that a reconnection cannot pick up.
- chunk download: after the last chunk of the range. Any other end (an error, shutdown)
  closes the connection without the final empty HTTP chunk, so a client can tell a cut
  download from a complete one and resumes with `after_seq`.

Nothing is buffered without bound. Writes wait for the client (TCP back-pressure); a client
that takes no data for `STALLED_WRITE_S` is disconnected. Meanwhile the event hub drops a
slow subscriber's oldest events (the stream then says how many, in an `events_dropped`
event), and the live relay drops a slow viewer's backlog up to the next keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import msgpack
from aiohttp import web

from agent.device_catalog import DeviceInfo, StreamInfo
from agent.event_hub import EventHub, Subscription
from agent.event_stream import (
    HEARTBEAT,
    STREAM_OPENING,
    EventFilter,
    event_filters,
    events_after,
    parse_last_event_id,
    sse_event,
    sse_message,
)
from agent.site_service import MAX_TIMELINE_NS
from agent.system_events import SystemEvent
from agent.web_api import ACCOUNTS, API_PREFIX, PRINCIPAL, SERVICE, STOPPING, TOKEN, ApiError
from shared.api_input import (
    BadRequest,
    parse_instant,
    query_values,
)
from shared.chunk_records import MEDIA_TYPE as CHUNKS_MEDIA_TYPE
from shared.chunk_records import encode_chunk_record
from shared.clock import NS_PER_S, Clock
from shared.fragmented_mp4 import Fragment, FragmentedMp4Writer
from shared.live_relay import LiveRelay, LiveViewer
from shared.media import CodecConfig, MediaFormatError, MediaKind, MediaPacket

__all__ = ["HEARTBEAT_S", "STALLED_WRITE_S", "stream_routes"]

_log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
STALLED_WRITE_S = 30.0
DOWNLOAD_BATCH_CHUNKS = 8
DOWNLOAD_BATCH_MAX_BYTES = 8 * 1024 * 1024
FIRST_PROBE_NS = 3600 * NS_PER_S
_SEQ = re.compile(r"[0-9]{1,18}")
_STREAM_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

T = TypeVar("T")


class _ClientGone(Exception):
    """The client closed the connection or stopped taking data."""


def stream_routes(
    *,
    events: EventHub,
    live: LiveRelay,
    clock: Clock,
    heartbeat_s: float = HEARTBEAT_S,
    stalled_write_s: float = STALLED_WRITE_S,
) -> list[web.RouteDef]:
    """`GET /api/v1/events`, `.../devices/{device_id}/chunks` and `.../live`, to pass to
    `build_web_app(extra_routes=...)`."""
    handlers = _StreamHandlers(events, live, clock, heartbeat_s, stalled_write_s)
    device = f"{API_PREFIX}/devices/{{device_id}}"
    return [
        web.get(f"{API_PREFIX}/events", handlers.events, allow_head=False),
        web.get(f"{device}/chunks", handlers.chunks, allow_head=False),
        web.get(f"{device}/live", handlers.live, allow_head=False),
    ]


class _StreamHandlers:
    """The three routes' handlers, sharing the hub, the relay and the timing settings."""

    def __init__(
        self,
        events: EventHub,
        live: LiveRelay,
        clock: Clock,
        heartbeat_s: float,
        stalled_write_s: float,
    ) -> None:
        self._events = events
        self._live = live
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._stalled_write_s = stalled_write_s

    # -- GET /events ------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        principal = request[PRINCIPAL]
        devices, kinds = event_filters(request.query.items())
        for device_id in devices:
            request.app[SERVICE].device(principal, device_id)  # DeviceNotFound: 404
        resume_after = parse_last_event_id(request.headers.get("Last-Event-ID", ""))
        wanted = EventFilter(principal, frozenset(devices), frozenset(kinds))
        # Subscribing and reading the history in one step of the loop: no event is missed
        # or sent twice between them.
        subscription = self._events.subscribe()
        backlog = events_after(tuple(self._events.recent()), resume_after)
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream; charset=utf-8", **_STREAM_HEADERS}
            )
            await response.prepare(request)
            try:
                await self._write(response, STREAM_OPENING)
                for event in backlog:
                    if wanted.wants(event):
                        await self._write(response, sse_event(event))
                await self._follow_events(request, response, subscription, wanted)
                await response.write_eof()
            except (_ClientGone, ConnectionError):
                _abort(request)
            except Exception:
                _log.exception("event stream failed")
                _abort(request)
        finally:
            subscription.close()
        return response

    async def _follow_events(
        self,
        request: web.Request,
        response: web.StreamResponse,
        subscription: Subscription,
        wanted: EventFilter,
    ) -> None:
        stopping = asyncio.ensure_future(request.app[STOPPING].wait())
        next_event: asyncio.Future[SystemEvent] | None = None
        dropped = 0  # the subscription's own count, from its start
        try:
            while True:
                if next_event is None:
                    next_event = asyncio.ensure_future(subscription.queue.get())
                heartbeat = asyncio.ensure_future(self._clock.sleep(self._heartbeat_s))
                waiting: set[asyncio.Future[Any]] = {next_event, heartbeat, stopping}
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    heartbeat.cancel()
                if stopping.done() or not _session_alive(request):
                    return
                if subscription.dropped > dropped:
                    notice = {"dropped": subscription.dropped - dropped}
                    dropped = subscription.dropped
                    await self._write(response, sse_message("events_dropped", notice))
                if next_event.done():
                    event = next_event.result()
                    next_event = None
                    if wanted.wants(event):
                        await self._write(response, sse_event(event))
                else:
                    await self._write(response, HEARTBEAT)
        finally:
            stopping.cancel()
            if next_event is not None:
                next_event.cancel()

    # -- GET /devices/{device_id}/chunks ---------------------------------------------------

    async def chunks(self, request: web.Request) -> web.StreamResponse:
        query = query_values(
            request.query.items(), required=("stream", "start", "end"), optional=("after_seq",)
        )
        start_ns = parse_instant("start", query["start"])
        end_ns = parse_instant("end", query["end"])
        if end_ns <= start_ns:
            raise BadRequest("end", "must be after start")
        after_seq = _optional_seq("after_seq", query.get("after_seq"))
        service, principal = request.app[SERVICE], request[PRINCIPAL]
        device_id = request.match_info["device_id"]
        stream = _stream_of(service.device(principal, device_id), query["stream"]).name
        first = await self._seq_before_range(request, device_id, stream, start_ns, end_ns)
        response = web.StreamResponse(
            headers={"Content-Type": CHUNKS_MEDIA_TYPE, **_STREAM_HEADERS}
        )
        await response.prepare(request)
        cursor = max(-1 if after_seq is None else after_seq, -1 if first is None else first)
        try:
            while first is not None:
                batch = await service.chunks_after(
                    principal,
                    device_id,
                    stream,
                    cursor,
                    limit=DOWNLOAD_BATCH_CHUNKS,
                    max_bytes=DOWNLOAD_BATCH_MAX_BYTES,
                )
                if not batch:
                    break
                for chunk in batch:
                    header = chunk.header
                    cursor = header.seq
                    if header.start_ns >= end_ns:
                        batch = []
                        break
                    if header.end_ns > start_ns:
                        await self._write(response, encode_chunk_record(chunk))
                if not batch:
                    break
            await response.write_eof()
        except (_ClientGone, ConnectionError):
            _abort(request)
        except Exception:
            _log.exception("chunk download %s/%s failed after seq %d", device_id, stream, cursor)
            _abort(request)  # not a clean end: the client must see the download incomplete
        return response

    async def _seq_before_range(
        self, request: web.Request, device_id: str, stream: str, start_ns: int, end_ns: int
    ) -> int | None:
        """The seq just before the first stored chunk that overlaps [start_ns, end_ns), or
        None when there is none: the download then need not read the stream's older chunks
        only to skip them. Looks in growing windows, reading headers only."""
        service, principal = request.app[SERVICE], request[PRINCIPAL]
        window_start, window_ns = start_ns, FIRST_PROBE_NS
        while window_start < end_ns:
            window_end = min(end_ns, window_start + window_ns)
            [timeline] = await service.timeline(
                principal, device_id, window_start, window_end, stream
            )
            if timeline.spans:
                return timeline.spans[0].first_seq - 1
            window_start, window_ns = window_end, min(2 * window_ns, MAX_TIMELINE_NS)
        return None

    # -- GET /devices/{device_id}/live -----------------------------------------------------

    async def live(self, request: web.Request) -> web.StreamResponse:
        query = query_values(request.query.items(), required=("stream",))
        device_id = request.match_info["device_id"]
        device = request.app[SERVICE].device(request[PRINCIPAL], device_id)
        stream = _stream_of(device, query["stream"])
        if stream.media is not MediaKind.VIDEO:
            raise BadRequest(
                "stream",
                f"{stream.name!r} of device {device_id!r} carries {stream.media}, not video; "
                "live MP4 is for video streams",
            )
        with self._live.subscribe(device_id, stream.name) as viewer:
            # The first batch carries the codec, so the response can name it in its type.
            first = await self._first_batch(request, viewer)
            if first is None:
                stopping = request.app[STOPPING].is_set()
                raise ApiError(
                    503, "unavailable", "the agent is stopping" if stopping else "client gone"
                )
            codec_wire, packets = first
            try:
                writer = FragmentedMp4Writer(_codec(codec_wire))
            except MediaFormatError as exc:
                raise ApiError(
                    503,
                    "unavailable",
                    f"stream {stream.name!r} of device {device_id!r} cannot be sent as MP4: {exc}",
                ) from exc
            response = web.StreamResponse(
                headers={"Content-Type": writer.mime_type, **_STREAM_HEADERS}
            )
            await response.prepare(request)
            try:
                fragments = writer.fragments(packets)
                await self._write(response, b"".join([writer.init_segment, *_data(fragments)]))
                await self._follow_live(request, response, viewer, writer)
                await response.write_eof()
            except (_ClientGone, ConnectionError):
                _abort(request)
            except MediaFormatError as exc:
                _log.warning("live %s/%s cannot be sent as MP4: %s", device_id, stream.name, exc)
                _abort(request)
            except Exception:
                _log.exception("live %s/%s failed", device_id, stream.name)
                _abort(request)
        return response

    async def _first_batch(
        self, request: web.Request, viewer: LiveViewer
    ) -> tuple[bytes | None, tuple[MediaPacket, ...]] | None:
        """The viewer's first batch; None if the server starts to stop or the client leaves
        first (checked every heartbeat: a camera may be silent for long)."""
        batch = asyncio.ensure_future(viewer.next_batch())
        stopping = asyncio.ensure_future(request.app[STOPPING].wait())
        try:
            while not batch.done():
                heartbeat = asyncio.ensure_future(self._clock.sleep(self._heartbeat_s))
                waiting: set[asyncio.Future[Any]] = {batch, stopping, heartbeat}
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    heartbeat.cancel()
                if not batch.done() and (stopping.done() or _client_left(request)):
                    return None
            return batch.result()
        finally:
            stopping.cancel()
            batch.cancel()

    async def _follow_live(
        self,
        request: web.Request,
        response: web.StreamResponse,
        viewer: LiveViewer,
        writer: FragmentedMp4Writer,
    ) -> None:
        while True:
            batch = await _unless_stopping(request, viewer.next_batch())
            if batch is None or not _session_alive(request):
                return
            codec_wire, packets = batch
            out = [] if codec_wire is None else [writer.change_codec(_codec(codec_wire))]
            out += _data(writer.fragments(packets))
            if out:
                await self._write(response, b"".join(out))

    # -- writing ----------------------------------------------------------------------------

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        """Write, waiting for the client to take it; `_ClientGone` when it has gone or takes
        nothing for `stalled_write_s`."""
        write = asyncio.ensure_future(response.write(data))
        stall = asyncio.ensure_future(self._clock.sleep(self._stalled_write_s))
        try:
            await asyncio.wait({write, stall}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stall.cancel()
        if not write.done():
            write.cancel()
            raise _ClientGone(f"the client took nothing for {self._stalled_write_s:g} s")
        try:
            write.result()
        except ConnectionError as exc:
            raise _ClientGone(str(exc)) from exc


# -- helpers of the handlers --------------------------------------------------------------


async def _unless_stopping(request: web.Request, awaitable: Awaitable[T]) -> T | None:
    """The awaitable's result, or None if the server starts to stop first."""
    work = asyncio.ensure_future(awaitable)
    stopping = asyncio.ensure_future(request.app[STOPPING].wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not work.done():
            work.cancel()
    return work.result() if work.done() and not work.cancelled() else None


def _client_left(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _session_alive(request: web.Request) -> bool:
    return request.app[ACCOUNTS].authenticate(request[TOKEN]) is not None


def _abort(request: web.Request) -> None:
    """Close the connection at once, without ending the response properly."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _codec(codec_wire: bytes | None) -> CodecConfig:
    if codec_wire is None:  # the relay sends the codec with a viewer's first packets
        raise MediaFormatError("live packets came before their codec")
    return CodecConfig.from_wire(msgpack.unpackb(codec_wire, raw=False))


def _data(fragments: Iterable[Fragment]) -> list[bytes]:
    return [fragment.data for fragment in fragments]


def _stream_of(device: DeviceInfo, name: str) -> StreamInfo:
    for stream in device.streams:
        if stream.name == name:
            return stream
    available = ", ".join(device.stream_names()) or "none"
    raise BadRequest(
        "stream", f"{name!r} is not a stream of device {device.id!r} (it has {available})"
    )


def _optional_seq(parameter: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not _SEQ.fullmatch(text):
        shown = text if len(text) <= 32 else text[:32] + "..."
        raise BadRequest(parameter, f"not a chunk seq (a whole number, 0 or more): {shown!r}")
    return int(text)
