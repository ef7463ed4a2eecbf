"""The baseline for the central's relay: a plain aiohttp WebSocket forward of the same bytes.

    .venv/bin/python bench/plain_forward.py DIR SITES_JSON

SITES_JSON is what bench/replay_site.py printed. This process serves HTTPS (a self-signed
certificate made in DIR) with one route, `GET /forward/{site}/{device_id}`: a WebSocket that,
while a viewer holds it, opens a WebSocket to that replay site's plain route (each packet's
bytes as one message, over HTTPS, logged in as the site's account) and sends every message on
as it comes. It moves the bytes the central moves, TLS in and TLS out, one message per
packet, and nothing else: no link protocol, no relay, no MP4. Its CPU per stream is what
the central's relay costs beyond moving bytes.

Prints one JSON line once listening, `{"port", "fingerprint"}`; runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shared.api_server import ApiServer
from shared.clock import SystemClock
from shared.tls_identity import server_identity
from shared.tls_pinning import pinned_fingerprint

SITES = web.AppKey("sites", list)
HTTP = web.AppKey("http", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.WebSocketResponse:
    site = request.app[SITES][int(request.match_info["site"])]
    device_id = request.match_info["device_id"]
    http = request.app[HTTP]
    viewer = web.WebSocketResponse()
    await viewer.prepare(request)
    url = f"https://127.0.0.1:{site['port']}/api/v1/bench/plain/{device_id}"
    async with http.ws_connect(
        url,
        headers={"Authorization": f"Bearer {site['token']}"},
        ssl=pinned_fingerprint(site["fingerprint"]),
    ) as upstream:
        closing = asyncio.create_task(_until_closed(viewer))
        with contextlib.suppress(ConnectionError, RuntimeError):
            async for message in upstream:
                if closing.done() or message.type != aiohttp.WSMsgType.BINARY:
                    break
                await viewer.send_bytes(message.data)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
    return viewer


async def _until_closed(socket: web.WebSocketResponse) -> None:
    async for _ in socket:
        pass


async def _log_in(http: aiohttp.ClientSession, site: dict[str, Any]) -> str:
    async with http.post(
        f"https://127.0.0.1:{site['port']}/api/v1/auth/login",
        json={"username": site["username"], "password": site["password"]},
        ssl=pinned_fingerprint(site["fingerprint"]),
    ) as reply:
        reply.raise_for_status()
        token: str = (await reply.json())["token"]
        return token


async def main(directory: Path, sites_json: str) -> int:
    sites: list[dict[str, Any]] = json.loads(sites_json)["sites"]
    clock = SystemClock()
    identity = await asyncio.to_thread(
        server_identity,
        directory / "forward-cert.pem",
        directory / "forward-key.pem",
        common_name="plain forward",
        bind="127.0.0.1",
        clock=clock,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for site in sites:
            site["token"] = await _log_in(http, site)
        app = web.Application()
        app[SITES] = sites
        app[HTTP] = http
        app.router.add_get("/forward/{site}/{device_id}", forward)
        server = ApiServer(app, host="127.0.0.1", port=0, ssl_context=identity.server_ssl_context())
        port = await server.start()
        print(json.dumps({"port": port, "fingerprint": identity.fingerprint}), flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("sites_json")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.directory, arguments.sites_json)))
