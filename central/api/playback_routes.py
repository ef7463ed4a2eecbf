"""Playback to clients: a device's recordings as fragmented MP4 over a WebSocket, every
moment from the central's own store where it holds it (best quality per moment), and from
the site over the link only where it does not (see `central/held_first_playback.py`).

`GET /api/v1/devices/{device_id}/playback?start=ISO&end=ISO` (at most 24 hours) checks its
parameters and that something can be played before it upgrades, so a refusal is an ordinary
JSON error: `nothing_recorded` when neither the central nor the site has video there,
`site_offline` when the central holds nothing of the range and the site is offline. Whatever
the device's recording setting, a range the central holds whole plays without the site;
with the site offline the parts held play and the rest is announced as gaps. A device its
site no longer lists (`present` false) plays as with the site offline, since
the site would refuse it: what the central holds plays, the rest is gaps, and a range the
central holds nothing of is `nothing_recorded`. Then the
server sends, as fast as the client takes them:

- text ``{"type": "init", "mime": ...}`` then one binary init segment (at the start and at
  every LQ/HQ switch, whose picture size differs);
- text ``{"type": "segment", "stream": "lq"|"hq", "start", "end", "start_ns", "end_ns"}``
  then one binary media segment (one chunk's pictures);
- text ``{"type": "gap", "start", "end", "declared"}`` where nothing can be played
  (`declared`: the site said it did not record; otherwise something is missing, or is only
  at a site that is offline);
- text ``{"type": "end"}``, or ``{"type": "error", "message"}`` if a chunk turns out not to
  be authentic (playback stops there), then the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from aiohttp import web

from central.api.services import SERVICES
from central.api.web_app import ApiError, ApiRoute
from central.auth import Action
from central.device_timeline import quality_stream
from central.export.errors import ExportError
from central.held_first_playback import (
    HeldRecordings,
    NothingHeldSiteOffline,
    SiteFetch,
    held_first_pieces,
)
from central.playback import (
    NothingToPlay,
    PlaybackGap,
    PlaybackInit,
    PlaybackMedia,
    PlaybackPiece,
)
from central.site_playback import site_chunks
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
    link = services.registry.link(site.site_id)
    site_fetch: SiteFetch | None = None
    if link is not None and device.present:
        site_fetch = functools.partial(
            site_chunks,
            link,
            TransferExpectation(
                site.remote_site_id,
                device.remote_device_id,
                quality_stream(device),
                site.public_key,
            ),
        )
    pieces = held_first_pieces(
        HeldRecordings(
            services.store, site.public_key, site.remote_site_id, device.remote_device_id
        ),
        site_fetch,
        start_ns,
        end_ns,
    )
    try:
        first = await anext(pieces, None)
    except NothingHeldSiteOffline as exc:
        if not device.present:
            raise ApiError(
                409,
                "nothing_recorded",
                f"the central holds nothing of {device.name!r} between these instants, and "
                "its site no longer lists it",
            ) from exc
        raise ApiError(
            409,
            "site_offline",
            f"the central holds nothing of {device.name!r} between these instants, and its "
            "site is offline now",
        ) from exc
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
