"""Live video to clients: fragmented MP4 over a WebSocket, for a browser's Media Source
Extensions.

`GET /api/v1/devices/{device_id}/live` upgrades to a WebSocket (the bearer token as for every
route; browsers, which cannot set headers on a WebSocket, may give it as the `token` query
parameter instead). The server then sends:

- text ``{"type": "status", "state": "streaming" | "interrupted", "reason": ...}`` when the
  feed starts or stops (a site going offline shows here, and the socket stays open: the
  video resumes by itself when the site is back);
- text ``{"type": "init", "mime": "video/mp4; codecs=\\"avc1...\\""}`` followed by one binary
  message, the init segment (again after a codec change or an interruption: a new
  `SourceBuffer` segment sequence);
- binary media segments (``moof`` + ``mdat``), the first of each sequence on a keyframe.

The socket closes when the client goes, when its session ends, or when the central stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgpack
from aiohttp import WSMsgType, web

from central.api.services import SERVICES
from central.api.web_app import STOPPING, ApiError, ApiRoute
from central.auth import Action
from central.live_feeds import LiveRefused, LiveWatch
from shared.api_input import query_values
from shared.fragmented_mp4 import FragmentedMp4Writer
from shared.live_relay import LiveBatch
from shared.media import CodecConfig, MediaFormatError

_log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0
HEARTBEAT_S = 20.0


def live_routes() -> list[ApiRoute]:
    return [ApiRoute("GET", "/devices/{device_id}/live", live_socket, Action.LIVE)]


async def live_socket(request: web.Request) -> web.StreamResponse:
    query_values(request.query.items(), required=(), optional=("token",))
    services = request.app[SERVICES]
    device_id = request.match_info["device_id"]
    try:
        watching = services.live.watch(device_id)
        watch = await watching.__aenter__()
    except LiveRefused as exc:
        raise ApiError(409, exc.code, exc.message) from exc
    try:
        socket = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096)
        await socket.prepare(request)
        reader = asyncio.create_task(_until_client_closes(socket))
        stopping = asyncio.create_task(request.app[STOPPING].wait())
        sending = asyncio.create_task(_send_live(socket, watch, device_id))
        try:
            await asyncio.wait({reader, stopping, sending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, stopping, sending):
                task.cancel()
            for task in (reader, stopping, sending):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(ConnectionError, RuntimeError):
            await socket.close()
        return socket
    finally:
        await watching.__aexit__(None, None, None)


async def _until_client_closes(socket: web.WebSocketResponse) -> None:
    async for message in socket:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            return


async def _send_live(socket: web.WebSocketResponse, watch: LiveWatch, device_id: str) -> None:
    """The feed's state when it changes, and its packets as MP4, until cancelled. One
    waiting point: the viewer gives the next batch, or a notice when the state changed."""
    state = watch.state
    writer: FragmentedMp4Writer | None = None
    shown: tuple[bool, str] | None = None
    try:
        while True:
            if (state.streaming, state.reason) != shown:
                shown = (state.streaming, state.reason)
                await _send_json(
                    socket,
                    {
                        "type": "status",
                        "state": "streaming" if state.streaming else "interrupted",
                        "reason": state.reason,
                    },
                )
                if not state.streaming:
                    writer = None  # after an interruption a new init segment starts over
            item = await watch.viewer.next_batch_or_notice()
            if not isinstance(item, LiveBatch):
                continue  # the state changed: shown above
            if item.codec is not None:
                codec = CodecConfig.from_wire(msgpack.unpackb(item.codec, raw=False))
                if writer is None:
                    writer = FragmentedMp4Writer(codec)
                    await _send_init(socket, writer.mime_type, writer.init_segment)
                else:
                    init = writer.change_codec(codec)
                    await _send_init(socket, writer.mime_type, init)
            if writer is None:
                continue  # packets before the codec: nothing to show them with
            out = [fragment.data for fragment in writer.fragments(item.packets)]
            if out:
                await _send_bytes(socket, out[0] if len(out) == 1 else b"".join(out))
    except MediaFormatError as exc:
        _log.warning("live %s cannot be sent as MP4: %s", device_id, exc)
        await _send_json(socket, {"type": "status", "state": "interrupted", "reason": str(exc)})


async def _send_init(socket: web.WebSocketResponse, mime: str, init: bytes) -> None:
    await _send_json(socket, {"type": "init", "mime": mime})
    await _send_bytes(socket, init)


async def _send_json(socket: web.WebSocketResponse, body: dict[str, object]) -> None:
    async with asyncio.timeout(SEND_TIMEOUT_S):
        await socket.send_json(body)


async def _send_bytes(socket: web.WebSocketResponse, data: bytes) -> None:
    async with asyncio.timeout(SEND_TIMEOUT_S):
        await socket.send_bytes(data)
