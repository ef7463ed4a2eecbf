"""Where the site's link runs: the WebSocket route the central dials, and the outbound link
a site behind NAT opens to its central. Both run the same `SiteLinkServer`."""

from __future__ import annotations

import logging
import random

import aiohttp
from aiohttp import web

from agent.accounts import Principal
from agent.config import LinkSettings, UserAccount
from agent.event_hub import EventHub
from agent.link_server import SiteLinkServer
from agent.reconnect import reconnect_forever
from agent.site_service import SiteService
from agent.web_api import API_PREFIX, PRINCIPAL, SERVICE
from shared.backoff import BackoffPolicy
from shared.clock import Clock
from shared.link.connection import LinkConnection
from shared.link.messages import LinkRole
from shared.link_io.dialing import WEBSOCKET_MAX_MESSAGE_BYTES, pinned_ssl
from shared.link_io.send_buffers import bound_send_buffers, client_transport
from shared.link_io.session import LinkSession, SessionEnd, WebSocketLike
from shared.live_relay import LiveRelay

_log = logging.getLogger(__name__)

LINK_ROUTE_PATH = f"{API_PREFIX}/link"


async def serve_link(
    websocket: WebSocketLike,
    principal: Principal,
    service: SiteService,
    *,
    events: EventHub,
    live: LiveRelay,
    clock: Clock,
    software: str,
    read_timeout_s: float,
) -> SessionEnd:
    """Serve one link on an open WebSocket until it ends; why it ended."""
    connection = LinkConnection(role=LinkRole.SITE, software=software)
    session = LinkSession(connection, websocket, clock=clock, read_timeout_s=read_timeout_s)
    server = SiteLinkServer(session, principal, service, events=events, live=live)
    try:
        return await session.run()
    finally:
        await server.wait_closed()


async def accept_link_websocket(request: web.Request) -> web.WebSocketResponse:
    """The WebSocket of a link the central dials, its send buffers bounded (live goes
    before retrieval on the line too, see `shared.link_io.send_buffers`)."""
    websocket = web.WebSocketResponse(max_msg_size=WEBSOCKET_MAX_MESSAGE_BYTES)
    await websocket.prepare(request)
    bound_send_buffers(request.transport)
    return websocket


def link_route(
    *, events: EventHub, live: LiveRelay, clock: Clock, software: str, read_timeout_s: float
) -> web.RouteDef:
    """`GET /api/v1/link`: the central dials in with the bearer token of a site account."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        websocket = await accept_link_websocket(request)
        end = await serve_link(
            websocket,
            request[PRINCIPAL],
            request.app[SERVICE],
            events=events,
            live=live,
            clock=clock,
            software=software,
            read_timeout_s=read_timeout_s,
        )
        _log.info("link from %s ended: %s (%s)", request.remote, end.reason, end.detail)
        return websocket

    return web.get(LINK_ROUTE_PATH, handle, allow_head=False)


class CentralUplink:
    """Keeps a link open to the configured central, reconnecting with backoff."""

    def __init__(
        self,
        settings: LinkSettings,
        account: UserAccount,
        service: SiteService,
        *,
        events: EventHub,
        live: LiveRelay,
        clock: Clock,
        software: str,
        rng: random.Random,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        if settings.central_url is None or settings.enrolment_token is None:
            raise ValueError("an uplink needs central_url and enrolment_token")
        self.url = settings.central_url
        self._token = settings.enrolment_token
        self._fingerprint = settings.central_fingerprint
        self._read_timeout_s = settings.read_timeout_s
        self._principal = Principal(account.username, frozenset(account.devices))
        self._service = service
        self._events = events
        self._live = live
        self._clock = clock
        self._software = software
        self._rng = rng
        self._backoff = backoff or BackoffPolicy()
        self.connected = False
        self.last_problem: str | None = None
        self.sessions = 0

    async def run(self) -> None:
        """Until cancelled: connect, serve, and after any end wait and connect again."""
        async with aiohttp.ClientSession() as http:
            await reconnect_forever(
                lambda: self._connect_and_serve(http),
                backoff=self._backoff,
                clock=self._clock,
                rng=self._rng,
                before_retry=lambda delay_s: _log.info(
                    "link to %s: next attempt in %.1f s", self.url, delay_s
                ),
            )

    async def _connect_and_serve(self, http: aiohttp.ClientSession) -> int | None:
        """One session; when it opened (monotonic ns), None if it did not."""
        try:
            websocket = await http.ws_connect(
                self.url,
                headers={"Authorization": f"Bearer {self._token}"},
                ssl=pinned_ssl(self._fingerprint),
                max_msg_size=WEBSOCKET_MAX_MESSAGE_BYTES,
            )
        except aiohttp.WSServerHandshakeError as exc:
            self._problem(f"the central refused the link (HTTP {exc.status})")
            return None
        except aiohttp.ServerFingerprintMismatch:
            self._problem("the central's certificate is not the pinned one")
            return None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._problem(f"cannot reach the central: {exc or type(exc).__name__}")
            return None
        bound_send_buffers(client_transport(websocket))  # live goes before retrieval on the line
        opened_at_ns = self._clock.monotonic_ns()
        self.connected = True
        self.sessions += 1
        self.last_problem = None
        _log.info("link to %s open", self.url)
        try:
            end = await serve_link(
                websocket,
                self._principal,
                self._service,
                events=self._events,
                live=self._live,
                clock=self._clock,
                software=self._software,
                read_timeout_s=self._read_timeout_s,
            )
            self._problem(f"the link ended: {end.reason} ({end.detail})")
        finally:
            self.connected = False
            await websocket.close()
        return opened_at_ns

    def _problem(self, text: str) -> None:
        self.last_problem = text
        _log.warning("link to %s: %s", self.url, text)
