"""Playback to clients: the central's recordings of a device as fragmented MP4 over a
WebSocket, the best quality for each moment (see `central/playback.py`).

`GET /api/v1/devices/{device_id}/playback?start=ISO&end=ISO` (at most 24 hours) checks its
parameters and that something is recorded before it upgrades, so a refusal is an ordinary
JSON error. A device recorded at the central plays from the central's store; a device
recorded only at its site plays its high quality straight from the site over the link
(`central/site_playback.py`; the site must be online). Then the server sends, as fast as
the client takes them:

- text ``{"type": "init", "mime": ...}`` then one binary init segment (at the start and at
  every LQ/HQ switch, whose picture size differs);
- text ``{"type": "segment", "stream": "lq"|"hq", "start", "end", "start_ns", "end_ns"}``
  then one binary media segment (one chunk's pictures);
- text ``{"type": "gap", "start", "end", "declared"}`` where nothing was recorded
  (`declared`: the site said so; otherwise something is missing);
- text ``{"type": "end"}``, or ``{"type": "error", "message"}`` if a chunk turns out not to
  be authentic (playback stops there), then the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Generator, Iterator

from aiohttp import web

from central.api.services import SERVICES
from central.api.web_app import ApiError, ApiRoute
from central.auth import Action
from central.device_timeline import quality_stream
from central.export.errors import ExportError
from central.playback import (
    NothingToPlay,
    PlaybackGap,
    PlaybackInit,
    PlaybackMedia,
    PlaybackPiece,
    playback_pieces,
)
from central.site_playback import site_playback_pieces
from shared.api_input import BadRequest, format_instant, parse_instant, query_values
from shared.clock import NS_PER_S
from shared.link_io.client import LinkLost, RequestFailed
from shared.transfer_acceptance import ChunkRejected, TransferExpectation

MAX_PLAYBACK_NS = 24 * 3600 * NS_PER_S
SEND_TIMEOUT_S = 30.0
_PLAYBACK_FAILURES = (ExportError, ChunkRejected, RequestFailed, LinkLost)


def playback_routes() -> list[ApiRoute]:
    return [ApiRoute("GET", "/devices/{device_id}/playback", playback_socket, Action.PLAYBACK)]


async def playback_socket(request: web.Request) -> web.StreamResponse:
    query = query_values(request.query.items(), required=("start", "end"), optional=("token",))
    start_ns = parse_instant("start", query["start"])
    end_ns = parse_instant("end", query["end"])
    if end_ns <= start_ns:
        raise BadRequest("end", "must be after start")
    if end_ns - start_ns > MAX_PLAYBACK_NS:
        raise BadRequest("end", "a playback covers at most 24 hours")
    services = request.app[SERVICES]
    device = await asyncio.to_thread(services.catalog.device, request.match_info["device_id"])
    site = await asyncio.to_thread(services.catalog.site, device.site_id)
    if site.remote_site_id is None or site.public_key is None:
        raise ApiError(409, "nothing_recorded", "the central has not reached this site yet")
    if device.recording == "site_only":
        link = services.registry.link(site.site_id)
        if link is None:
            raise ApiError(
                409,
                "site_offline",
                f"{device.name!r} is recorded only at its site, which is offline now",
            )
        pieces: AsyncGenerator[PlaybackPiece, None] = site_playback_pieces(
            link,
            TransferExpectation(
                site.remote_site_id,
                device.remote_device_id,
                quality_stream(device),
                site.public_key,
            ),
            start_ns,
            end_ns,
        )
    else:
        pieces = _in_threads(
            playback_pieces(
                services.store,
                public_key=site.public_key,
                site_id=site.remote_site_id,
                device_id=device.remote_device_id,
                start_ns=start_ns,
                end_ns=end_ns,
            )
        )
    try:
        first = await anext(pieces, None)
    except NothingToPlay as exc:
        raise ApiError(409, "nothing_recorded", str(exc)) from exc
    except _PLAYBACK_FAILURES as exc:
        raise ApiError(409, "playback_failed", str(exc)) from exc
    if first is None:
        raise ApiError(409, "nothing_recorded", "nothing is recorded between these instants")
    socket = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await socket.prepare(request)
    try:
        piece: PlaybackPiece | None = first
        while piece is not None:
            await _send(socket, piece)
            try:
                piece = await anext(pieces, None)
            except _PLAYBACK_FAILURES as exc:
                await _send_json(socket, {"type": "error", "message": str(exc)})
                break
        else:
            await _send_json(socket, {"type": "end"})
    except (ConnectionError, TimeoutError, RuntimeError):
        pass  # the client went, or took nothing for SEND_TIMEOUT_S
    finally:
        await pieces.aclose()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await socket.close()
    return socket


async def _in_threads(
    pieces: Generator[PlaybackPiece, None, None],
) -> AsyncGenerator[PlaybackPiece, None]:
    """A blocking generator's pieces, each taken in a worker thread."""
    try:
        while (piece := await asyncio.to_thread(_next, pieces)) is not None:
            yield piece
    finally:
        pieces.close()


def _next(pieces: Iterator[PlaybackPiece]) -> PlaybackPiece | None:
    return next(pieces, None)


async def _send(socket: web.WebSocketResponse, piece: PlaybackPiece) -> None:
    match piece:
        case PlaybackInit(mime, data):
            await _send_json(socket, {"type": "init", "mime": mime})
            await _send_bytes(socket, data)
        case PlaybackMedia(data, stream, start_ns, end_ns):
            await _send_json(
                socket,
                {
                    "type": "segment",
                    "stream": stream,
                    "start": format_instant(start_ns),
                    "end": format_instant(end_ns),
                    "start_ns": start_ns,
                    "end_ns": end_ns,
                },
            )
            await _send_bytes(socket, data)
        case PlaybackGap(start_ns, end_ns, declared):
            await _send_json(
                socket,
                {
                    "type": "gap",
                    "start": format_instant(start_ns),
                    "end": format_instant(end_ns),
                    "declared": declared,
                },
            )


async def _send_json(socket: web.WebSocketResponse, body: dict[str, object]) -> None:
    async with asyncio.timeout(SEND_TIMEOUT_S):
        await socket.send_json(body)


async def _send_bytes(socket: web.WebSocketResponse, data: bytes) -> None:
    async with asyncio.timeout(SEND_TIMEOUT_S):
        await socket.send_bytes(data)
