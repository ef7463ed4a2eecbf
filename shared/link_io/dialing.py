"""Opening links: the central dials a site, or accepts a site that dials in.

Dialling a site: log in on its REST API (`/api/v1/auth/login`) with the account the site
granted, then open the WebSocket `/api/v1/link` with the bearer token. With HTTPS the
site's certificate is pinned by its SHA-256 fingerprint (it is self-signed; no CA vouches
for it). Accepting a site: an aiohttp route that takes the site's WebSocket after the
caller has checked its enrolment token; from then on the central asks and the site serves,
exactly as when the central dials.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum

import aiohttp
from aiohttp import web

from shared.clock import Clock
from shared.link.connection import LinkConnection
from shared.link.errors import ErrorCode
from shared.link.framing import DEFAULT_FRAME_LIMIT
from shared.link.messages import LinkRole
from shared.link_io.client import LinkClient
from shared.link_io.session import DEFAULT_READ_TIMEOUT_S, EndReason, LinkSession, SessionEnd
from shared.tls_pinning import pinned_fingerprint

LINK_PATH = "/api/v1/link"
LOGIN_PATH = "/api/v1/auth/login"
WEBSOCKET_MAX_MESSAGE_BYTES = 4 * DEFAULT_FRAME_LIMIT
_READY_TIMEOUT_S = 10.0


def pinned_ssl(fingerprint: str | None) -> aiohttp.Fingerprint | bool:
    """aiohttp's `ssl` argument: the pinned certificate, or normal verification."""
    return True if fingerprint is None else pinned_fingerprint(fingerprint)


class DialFailure(StrEnum):
    """Why dialling failed, for whoever decides when to try again."""

    UNREACHABLE = "unreachable"  # no answer, connection refused, timeout, wrong scheme
    REFUSED = "refused"  # the site refused the username or password
    UNTRUSTED = "untrusted"  # the certificate is not the pinned one
    INCOMPATIBLE = "incompatible"  # no protocol version in common
    BROKEN = "broken"  # the site answered, but not as a Siteline site does


class DialError(Exception):
    """The site could not be reached, refused the login, or did not speak the protocol."""

    def __init__(self, message: str, kind: DialFailure = DialFailure.UNREACHABLE) -> None:
        super().__init__(message)
        self.kind = kind


async def login(
    http: aiohttp.ClientSession,
    base_url: str,
    username: str,
    password: str,
    *,
    ssl: aiohttp.Fingerprint | bool,
) -> str:
    """A bearer token from the site's REST API (`ssl` as `pinned_ssl` gives it)."""
    url = base_url.rstrip("/") + LOGIN_PATH
    try:
        async with http.post(
            url,
            json={"username": username, "password": password},
            ssl=ssl,
        ) as response:
            if response.status == 401:
                raise DialError(f"{url}: wrong username or password", DialFailure.REFUSED)
            if response.status == 429:
                raise DialError(f"{url}: too many failed logins; the site asks to wait")
            if response.status != 200:
                raise DialError(f"{url}: login answered HTTP {response.status}", DialFailure.BROKEN)
            body = await response.json()
    except aiohttp.ServerFingerprintMismatch as exc:
        raise DialError(
            f"{url}: the certificate is not the pinned one (it has SHA-256 {_colon_hex(exc.got)})",
            DialFailure.UNTRUSTED,
        ) from exc
    except aiohttp.ContentTypeError as exc:
        raise DialError(
            f"{url}: the answer is not JSON: not a Siteline site", DialFailure.BROKEN
        ) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DialError(f"{url}: {describe_client_error(exc)}") from exc
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise DialError(f"{url}: the login answer has no token", DialFailure.BROKEN)
    return token


@contextlib.asynccontextmanager
async def connect_to_site(
    http: aiohttp.ClientSession,
    base_url: str,
    *,
    username: str,
    password: str,
    fingerprint: str | None,
    clock: Clock,
    software: str,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> AsyncIterator[LinkClient]:
    """A link to the site at `base_url` (``https://host:port``), closed on exit."""
    # One pin for both requests: aiohttp pools connections by it (a `Fingerprint` compares
    # by identity), so the link reuses the login's TLS connection instead of a second one.
    ssl = pinned_ssl(fingerprint)
    token = await login(http, base_url, username, password, ssl=ssl)
    url = base_url.rstrip("/") + LINK_PATH
    try:
        websocket = await http.ws_connect(
            url,
            headers={"Authorization": f"Bearer {token}"},
            ssl=ssl,
            max_msg_size=WEBSOCKET_MAX_MESSAGE_BYTES,
            autoping=True,
        )
    except aiohttp.WSServerHandshakeError as exc:
        kind = DialFailure.REFUSED if exc.status in (401, 403) else DialFailure.BROKEN
        raise DialError(f"{url}: the link was refused (HTTP {exc.status})", kind) from exc
    except aiohttp.ServerFingerprintMismatch as exc:
        raise DialError(
            f"{url}: the certificate is not the pinned one (it has SHA-256 {_colon_hex(exc.got)})",
            DialFailure.UNTRUSTED,
        ) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DialError(f"{url}: {describe_client_error(exc)}") from exc
    connection = LinkConnection(role=LinkRole.CENTRAL, software=software)
    session = LinkSession(connection, websocket, clock=clock, read_timeout_s=read_timeout_s)
    client = LinkClient(session)
    async with _running(session) as running:
        await _wait_ready(session, running, url)
        yield client


async def serve_dialled_in_site(
    request: web.Request,
    *,
    clock: Clock,
    software: str,
    on_link: Callable[[LinkClient], Awaitable[None]],
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> web.WebSocketResponse:
    """Take a site's WebSocket (its enrolment token already checked by the caller), run
    `on_link` with a client for it, and keep the link until either side ends it."""
    websocket = web.WebSocketResponse(max_msg_size=WEBSOCKET_MAX_MESSAGE_BYTES, autoping=True)
    await websocket.prepare(request)
    connection = LinkConnection(role=LinkRole.CENTRAL, software=software)
    session = LinkSession(connection, websocket, clock=clock, read_timeout_s=read_timeout_s)
    client = LinkClient(session)
    async with _running(session) as running:
        await _wait_ready(session, running, request.path)
        await on_link(client)
        await running
    return websocket


@contextlib.asynccontextmanager
async def _running(session: LinkSession) -> AsyncIterator[asyncio.Task[SessionEnd]]:
    running = asyncio.create_task(session.run(), name="link-session")
    try:
        yield running
    finally:
        session.close()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def _wait_ready(session: LinkSession, running: asyncio.Task[SessionEnd], where: str) -> None:
    ready = asyncio.create_task(session.ready.wait())
    done, _ = await asyncio.wait(
        {ready, running}, timeout=_READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
    )
    if ready not in done:
        ready.cancel()
        end = session.end
        detail = f"{end.reason}: {end.detail}" if end else f"no Hello within {_READY_TIMEOUT_S} s"
        kind = DialFailure.BROKEN
        if end is not None and ErrorCode.INCOMPATIBLE.value in end.detail:
            kind = DialFailure.INCOMPATIBLE
        elif end is None or end.reason in (EndReason.STALLED, EndReason.CUT):
            kind = DialFailure.UNREACHABLE
        raise DialError(f"{where}: the link did not open ({detail})", kind)


def describe_client_error(exc: BaseException) -> str:
    """A short reason for a failed request, without aiohttp's internal object names."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)
