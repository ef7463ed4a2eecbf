"""The site's side of a link: serves the central's requests on one `LinkSession`.

Every operation acts for one `Principal` (the account the central logged in with, or the
account configured for an outbound link) and answers an unknown device and a forbidden one
alike. One-shot requests are answered with the same bodies as the REST API. Streams are
producers that only read from the store or queue packets while the stream has credit:

- a transfer reads the chunks after the asker's cursor, a few at a time, in a worker thread
  (never holding a read transaction while sending), as far as the credit allows;
- a live stream starts with the cached GOP, then follows the recorder; a viewer that falls
  behind loses packets up to the next keyframe, never the link; on a link whose version
  has it, each stored chunk's seal (`LiveSealed`) follows the chunk's last packet;
- an event subscription forwards the site's events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.accounts import Principal
from agent.api_bodies import (
    device_json,
    hold_json,
    optional_instant,
    site_info_json,
    status_json,
    timeline_json,
)
from agent.event_hub import EventHub
from agent.site_service import (
    DeviceNotFound,
    HoldNotFound,
    HoldRefused,
    InvalidInput,
    SiteService,
)
from shared.link import events as ev
from shared.link import messages as m
from shared.link.connection import LinkUsageError
from shared.link_io.session import LinkSession
from shared.live_relay import LiveRelay, LiveSeal

_log = logging.getLogger(__name__)

TRANSFER_BATCH_CHUNKS = 8
TRANSFER_BATCH_MAX_BYTES = 8 * 1024 * 1024


class SiteLinkServer:
    """See the module docstring; attach one per session."""

    def __init__(
        self,
        session: LinkSession,
        principal: Principal,
        service: SiteService,
        *,
        events: EventHub,
        live: LiveRelay,
    ) -> None:
        self.session = session
        self.connection = session.connection
        self.principal = principal
        self._service = service
        self._events = events
        self._live = live
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._credit: dict[int, asyncio.Event] = {}
        session.server = self

    # -- RequestServer --------------------------------------------------------------------

    def on_request(self, event: ev.RequestReceived) -> None:
        request = event.request
        producer: Callable[[], Awaitable[None]]
        match request:
            case m.TransferRequest():
                producer = lambda: self._transfer(request)  # noqa: E731
            case m.LiveRequest():
                producer = lambda: self._live_stream(request)  # noqa: E731
            case m.EventsRequest():
                producer = lambda: self._event_stream(request)  # noqa: E731
            case _:
                producer = lambda: self._answer(request)  # noqa: E731
        self._credit[request.request_id] = asyncio.Event()
        task = asyncio.create_task(self._guarded(request, producer), name=f"link-{request}")
        self._tasks[request.request_id] = task

    def on_credit(self, event: ev.CreditReceived) -> None:
        credit = self._credit.get(event.request_id)
        if credit is not None:
            credit.set()

    def on_cancel(self, event: ev.StreamCancelled) -> None:
        task = self._tasks.get(event.request_id)
        if task is not None:
            task.cancel()

    def on_session_end(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for every producer to stop (after the session ended)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks.values()))

    # -- one-shot operations ------------------------------------------------------------

    async def _answer(self, request: m.RequestMessage) -> None:
        service, principal = self._service, self.principal
        body: dict[str, Any]
        match request:
            case m.SiteInfoRequest():
                body = site_info_json(service.site_info())
            case m.DeviceListRequest():
                body = {"devices": [device_json(d) for d in service.devices(principal)]}
            case m.StatusRequest():
                body = status_json(await service.status(principal))
            case m.TimelineRequest(_, device_id, stream, start_ns, end_ns):
                timelines = await service.timeline(principal, device_id, start_ns, end_ns, stream)
                body = {"device_id": device_id, "streams": [timeline_json(t) for t in timelines]}
            case m.PlaceHoldRequest(_, device_id, streams, start_ns, end_ns, expires_ns, _):
                holds = await service.place_hold(
                    principal,
                    device_id,
                    streams=streams or None,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    expires_ns=expires_ns,
                )
                # Each hold says up to where retention had already deleted its range, if it
                # had (the central reports those recordings lost rather than retrieved).
                body = {
                    "holds": [
                        {**hold_json(h), "deleted_until": optional_instant(until)}
                        for h in holds
                        for until in [await service.deleted_until(h)]
                    ]
                }
            case m.ListHoldsRequest():
                body = {"holds": [hold_json(h) for h in await service.list_holds(principal)]}
            case m.ReleaseHoldRequest(_, hold_id):
                await service.release_hold(principal, hold_id)
                body = {"released": hold_id}
            case _:
                raise AssertionError(f"not a one-shot request: {request!r}")
        self.connection.reply(request.request_id, body)
        # Answered from a task (most after a worker thread): nothing else would send it
        # before the next message arrives or the keepalive.
        self.session.flush()

    # -- streams ------------------------------------------------------------------------

    async def _transfer(self, request: m.TransferRequest) -> None:
        rid = request.request_id
        self._require_stream(request.device_id, request.stream)
        after_seq = -1 if request.after_seq is None else request.after_seq
        started = False
        while True:
            budget = await self._wait_credit(rid)
            chunks = await self._service.chunks_after(
                self.principal,
                request.device_id,
                request.stream,
                after_seq,
                limit=TRANSFER_BATCH_CHUNKS,
                max_bytes=min(budget, TRANSFER_BATCH_MAX_BYTES),
            )
            for chunk in chunks:
                header = chunk.header
                after_seq = header.seq
                if header.end_ns <= request.start_ns:
                    continue
                if header.start_ns >= request.end_ns:
                    chunks = []
                    break
                self.connection.send_chunk(rid, chunk.header_bytes, chunk.signature, chunk.payload)
                started = True
            if not chunks:
                self.connection.end_stream(rid, m.StreamOutcome.COMPLETE)
                self.session.flush()
                return
            if started:
                self.session.flush()

    async def _live_stream(self, request: m.LiveRequest) -> None:
        rid = request.request_id
        self._require_stream(request.device_id, request.stream)
        seals = self.connection.live_sealed_agreed
        with self._live.subscribe(request.device_id, request.stream, seals=seals) as viewer:
            while True:
                item = await viewer.next_item()
                await self._wait_credit(rid)
                if isinstance(item, LiveSeal):
                    self.connection.send_live_sealed(rid, item.header, item.signature)
                else:
                    wire = tuple(
                        m.LivePacket(p.pts, p.dts, p.duration, p.keyframe, p.wall_ns, p.data)
                        for p in item.packets
                    )
                    self.connection.send_live(rid, item.codec, wire)
                self.session.flush()

    async def _event_stream(self, request: m.EventsRequest) -> None:
        rid = request.request_id
        wanted = set(request.kinds)
        subscription = self._events.subscribe()
        try:
            while True:
                event = await subscription.queue.get()
                if wanted and event.kind not in wanted:
                    continue
                if event.device_id and not self.principal.may_access(event.device_id):
                    continue
                await self._wait_credit(rid)
                details: dict[str, Any] = {"detail": event.detail} if event.detail else {}
                self.connection.send_event(rid, event.kind, event.device_id, event.at_ns, details)
                self.session.flush()
        finally:
            subscription.close()

    # -- internals ----------------------------------------------------------------------

    def _require_stream(self, device_id: str, stream: str) -> None:
        device = self._service.device(self.principal, device_id)  # DeviceNotFound if not allowed
        if stream not in device.stream_names():
            raise InvalidInput("stream", f"{stream!r} is not a stream of device {device_id!r}")

    async def _wait_credit(self, request_id: int) -> int:
        credit = self._credit[request_id]
        while (available := self.connection.sendable_bytes(request_id)) <= 0:
            credit.clear()
            await credit.wait()
        return available

    async def _guarded(
        self, request: m.RequestMessage, producer: Callable[[], Awaitable[None]]
    ) -> None:
        rid = request.request_id
        try:
            await producer()
        except asyncio.CancelledError:
            if not self.connection.closed:
                self.connection.end_stream(rid, m.StreamOutcome.CANCELLED)
                self.session.flush()
            raise
        except DeviceNotFound as exc:
            self._refuse(rid, m.FailureCode.NOT_FOUND, str(exc))
        except HoldNotFound as exc:
            self._refuse(rid, m.FailureCode.NOT_FOUND, str(exc))
        except InvalidInput as exc:
            self._refuse(rid, m.FailureCode.BAD_REQUEST, str(exc))
        except HoldRefused as exc:
            self._refuse(rid, m.FailureCode.REFUSED, str(exc))
        except Exception as exc:
            _log.exception("link request %s failed", request)
            self._refuse(rid, m.FailureCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            self._tasks.pop(rid, None)
            self._credit.pop(rid, None)

    def _refuse(self, request_id: int, code: m.FailureCode, message: str) -> None:
        if self.connection.closed:
            return
        try:
            self.connection.fail(request_id, code, message)
        except LinkUsageError:  # a stream that already sent items ends instead
            self.connection.end_stream(request_id, m.StreamOutcome.FAILED, f"{code}: {message}")
        self.session.flush()
