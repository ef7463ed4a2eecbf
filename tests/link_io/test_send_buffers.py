"""The link's send buffers are bounded at both kinds of site end: the server a central dials
(its request's transport) and the client that dials the central (under aiohttp's client
WebSocket), over real TLS on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from shared.clock import SystemClock
from shared.link_io.dialing import pinned_ssl
from shared.link_io.send_buffers import (
    TRANSPORT_HIGH_WATER_BYTES,
    TRANSPORT_LOW_WATER_BYTES,
    UNSENT_LOW_WATER_BYTES,
    bound_send_buffers,
    client_transport,
)
from shared.tls_identity import TlsIdentity

MIB = 1024 * 1024


def _unsent_low_water(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT))


def _assert_bounded(transport: asyncio.BaseTransport) -> None:
    assert isinstance(transport, asyncio.WriteTransport)
    assert transport.get_write_buffer_limits() == (
        TRANSPORT_LOW_WATER_BYTES,
        TRANSPORT_HIGH_WATER_BYTES,
    )
    assert _unsent_low_water(transport) == UNSENT_LOW_WATER_BYTES


class _Served:
    def __init__(self) -> None:
        self.transports: list[asyncio.BaseTransport] = []
        self.bounded: list[bool] = []
        self.received = 0
        self.done = asyncio.Event()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, str, _Served]]:
    """A WebSocket server over TLS that bounds its send buffers as the site's link route does,
    and sends 4 MiB to each client."""
    identity = await asyncio.to_thread(
        TlsIdentity.load_or_create,
        tmp_path / "cert.pem",
        tmp_path / "key.pem",
        common_name="test",
        clock=SystemClock(),
    )
    served = _Served()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse()
        await websocket.prepare(request)
        assert request.transport is not None
        served.bounded.append(bound_send_buffers(request.transport))
        served.transports.append(request.transport)
        for _ in range(64):
            await websocket.send_bytes(bytes(64 * 1024))
        await websocket.close()
        return websocket

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=identity.server_ssl_context())
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}/ws", identity.fingerprint, served
    finally:
        await runner.cleanup()


async def test_both_ends_of_a_tls_websocket_are_bounded_and_the_data_all_arrives(
    tls_server: tuple[str, str, _Served],
) -> None:
    url, fingerprint, served = tls_server
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, ssl=pinned_ssl(fingerprint)) as websocket,
    ):
        transport = client_transport(websocket)
        assert transport is not None, "aiohttp's client WebSocket no longer shows its transport"
        assert bound_send_buffers(transport)
        _assert_bounded(transport)
        received = 0
        async for message in websocket:
            assert message.type == aiohttp.WSMsgType.BINARY
            received += len(message.data)
    assert served.bounded == [True]
    _assert_bounded(served.transports[0])
    # Bounded buffers only make the writer wait more often: nothing is lost or cut short.
    assert received == 4 * MIB


async def test_a_closed_transport_or_none_is_left_alone() -> None:
    assert not bound_send_buffers(None)
    reader_ready = asyncio.Event()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reader_ready.set()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.close()
        assert not bound_send_buffers(writer.transport)
        await reader_ready.wait()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_plain_tcp_transport_is_bounded_too() -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert bound_send_buffers(writer.transport)
        _assert_bounded(writer.transport)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
