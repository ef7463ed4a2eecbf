"""The fault proxy itself: it forwards both ways, delays by its latency each way, slices
what it writes, stalls and cuts."""

from __future__ import annotations

import asyncio
import time

from tests.link_io.link_site import TcpProxy

WAIT_S = 10.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _round_trip(proxy: TcpProxy, payload: bytes) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    async with asyncio.timeout(WAIT_S):
        echoed = await reader.readexactly(len(payload))
    took_s = time.monotonic() - started
    writer.close()
    return echoed, took_s


async def test_latency_delays_each_way_and_slices_are_written_one_by_one() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = TcpProxy(port, latency_s=0.15, slice_bytes=7)
    await proxy.start()
    try:
        payload = bytes(range(256)) * 4
        echoed, took_s = await _round_trip(proxy, payload)
        assert echoed == payload  # every byte, in order, through slices both ways
        assert took_s >= 0.3  # 0.15 s out and 0.15 s back, at least
        assert proxy.sends >= 2 * -(-len(payload) // 7)
        assert proxy.forwarded_to_client == len(payload)
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()


async def test_a_stall_holds_everything_back_and_a_cut_resets() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = TcpProxy(port)
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.flowing.clear()
        writer.write(b"held back")
        await writer.drain()
        assert not await _arrives(reader, within_s=0.3)
        proxy.flowing.set()
        async with asyncio.timeout(WAIT_S):
            assert await reader.readexactly(9) == b"held back"
        proxy.cut()
        async with asyncio.timeout(WAIT_S):
            assert await reader.read(10) == b""  # reset: the stream ends
        writer.close()
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()


async def _arrives(reader: asyncio.StreamReader, *, within_s: float) -> bool:
    try:
        async with asyncio.timeout(within_s):
            await reader.read(1)
    except TimeoutError:
        return False
    return True
