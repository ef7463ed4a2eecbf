"""The link across a real network path whose cable is pulled mid-transfer.

`siteline agent run` runs inside its own network namespace with plain HTTP, its uplink
shaped with `tc tbf`; the test plays the central from this namespace. In each dial direction
a transfer is cut by taking the veth link down (a half-open connection: no reset, no FIN),
the stall is detected by the read timeout, the link comes back, and the transfer resumes from
the committed cursor to a copy identical to the site's, with no chunk committed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from shared.clock import NS_PER_S, SystemClock
from shared.link_io.client import LinkClient, LinkLost
from shared.link_io.dialing import DialError, connect_to_site, serve_dialled_in_site
from shared.link_io.session import EndReason
from shared.transfer_acceptance import AcceptedChunk, TransferCursor, TransferExpectation
from tests.agent_api.api_site import PASSWORDS, api_config
from tests.agent_process import running_agent
from tests.faults.netns import NamespacePair, namespace_or_skip

SITE_PORT = 8080
CENTRAL_PORT = 8090
CENTRAL_READ_TIMEOUT_S = 3.0
SITE_READ_TIMEOUT_S = 3  # the agent's minimum
SHAPED_RATE = "2mbit"  # the recorded HQ takes a second or two, so the cut lands mid-transfer
RECORD_S = 8.0
COMMITS_BEFORE_CUT = 2
ENROLMENT_TOKEN = "enrol-" + "n" * 24
RECONNECT_TIMEOUT_S = 90.0


class CopyStore:
    """What the central would commit: chunks by seq, each exactly once."""

    def __init__(self, on_commit: Callable[[int], None] = lambda _count: None) -> None:
        self.chunks: dict[int, tuple[bytes, bytes, bytes]] = {}
        self.cursor = TransferCursor()
        self._on_commit = on_commit

    async def commit(self, accepted: AcceptedChunk) -> None:
        chunk = accepted.chunk
        seq = chunk.header.seq
        assert seq not in self.chunks, f"chunk {seq} committed twice"
        self.chunks[seq] = (chunk.header_bytes, chunk.signature, chunk.payload)
        self.cursor = TransferCursor(seq, chunk.chunk_hash)
        self._on_commit(len(self.chunks))


def _site_toml(ns: NamespacePair, *, dial_out: bool) -> str:
    api = f'bind = "{ns.site_address}"\nport = {SITE_PORT}\nscheme = "http"\nadvertise = false\n'
    link = f"\n[link]\nread_timeout_s = {SITE_READ_TIMEOUT_S}\n"
    if dial_out:
        link += (
            f'central_url = "http://{ns.host_address}:{CENTRAL_PORT}/api/v1/sites/link"\n'
            f'enrolment_token = "{ENROLMENT_TOKEN}"\naccount = "admin"\n'
        )
    return api + link


async def _recording_window(link: LinkClient, site_id: str) -> tuple[TransferExpectation, int]:
    """What to copy: cam-a's HQ from the beginning until RECORD_S of it is stored."""
    public_key = bytes.fromhex((await link.site_info())["public_key"])
    await asyncio.sleep(RECORD_S)
    return TransferExpectation(site_id, "cam-a", "hq", public_key), time.time_ns() - NS_PER_S


async def _cut_and_resume(
    ns: NamespacePair,
    first_link: LinkClient,
    next_link: Callable[[], Awaitable[LinkClient]],
    expectation: TransferExpectation,
    end_ns: int,
) -> tuple[CopyStore, LinkClient]:
    """Copy [0, end_ns), pulling the cable after a few commits; the link that finished."""
    pulled = asyncio.Event()

    def maybe_pull(count: int) -> None:
        if count == COMMITS_BEFORE_CUT and not pulled.is_set():
            ns.link_down()
            pulled.set()

    copy = CopyStore(maybe_pull)
    with pytest.raises(LinkLost) as lost:
        await first_link.transfer(expectation, copy.cursor, 0, end_ns, commit=copy.commit)
    assert pulled.is_set(), lost.value.end
    assert lost.value.end.reason is EndReason.STALLED, lost.value.end
    assert len(copy.chunks) >= COMMITS_BEFORE_CUT
    ns.link_up()
    link = await next_link()
    # Resume until a pass brings nothing new (the last chunk of the range may still have
    # been open when a pass began).
    while (await link.transfer(expectation, copy.cursor, 0, end_ns, commit=copy.commit)).chunks:
        pass
    return copy, link


async def _assert_identical(
    link: LinkClient, expectation: TransferExpectation, end_ns: int, copy: CopyStore
) -> None:
    """A fresh copy over the healthy link is the same, chunk for chunk and byte for byte."""
    reference = CopyStore()
    await link.transfer(expectation, TransferCursor(), 0, end_ns, commit=reference.commit)
    assert len(reference.chunks) >= COMMITS_BEFORE_CUT + 2
    assert sorted(copy.chunks) == sorted(reference.chunks)
    assert copy.chunks == reference.chunks


async def test_a_central_dialling_over_http_resumes_after_the_cable_is_pulled(
    tmp_path: Path,
) -> None:
    with namespace_or_skip() as ns:
        ns.shape_site_uplink(SHAPED_RATE)
        config = api_config(tmp_path, api_toml=_site_toml(ns, dial_out=False))
        base_url = f"http://{ns.site_address}:{SITE_PORT}"
        async with (
            running_agent(config.file, wrap=ns.run_inside) as agent,
            aiohttp.ClientSession() as http,
        ):
            await agent.until_serving(http, f"{base_url}/api/v1/site")
            async with contextlib.AsyncExitStack() as links:

                async def dial() -> LinkClient:
                    async with asyncio.timeout(RECONNECT_TIMEOUT_S):
                        while True:
                            try:
                                return await links.enter_async_context(
                                    connect_to_site(
                                        http,
                                        base_url,
                                        username="admin",
                                        password=PASSWORDS["admin"],
                                        fingerprint=None,
                                        clock=SystemClock(),
                                        software="test-central",
                                        read_timeout_s=CENTRAL_READ_TIMEOUT_S,
                                    )
                                )
                            except DialError:
                                await asyncio.sleep(0.5)

                first = await dial()
                expectation, end_ns = await _recording_window(first, config.site.id)
                copy, link = await _cut_and_resume(ns, first, dial, expectation, end_ns)
                await _assert_identical(link, expectation, end_ns, copy)
            assert await agent.stop() == 0, agent.output


@contextlib.asynccontextmanager
async def _central(address: str) -> AsyncIterator[asyncio.Queue[LinkClient]]:
    """A stand-in central that takes dialled-in links; each new link arrives in the queue."""
    links: asyncio.Queue[LinkClient] = asyncio.Queue()

    async def accept(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {ENROLMENT_TOKEN}":
            raise web.HTTPUnauthorized()

        async def on_link(client: LinkClient) -> None:
            await links.put(client)

        return await serve_dialled_in_site(
            request,
            clock=SystemClock(),
            software="test-central",
            on_link=on_link,
            read_timeout_s=CENTRAL_READ_TIMEOUT_S,
        )

    app = web.Application()
    app.router.add_get("/api/v1/sites/link", accept)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, address, CENTRAL_PORT).start()
    try:
        yield links
    finally:
        await runner.cleanup()


async def test_a_site_dialling_out_comes_back_after_the_cable_is_pulled(tmp_path: Path) -> None:
    with namespace_or_skip() as ns:
        ns.shape_site_uplink(SHAPED_RATE)
        config = api_config(tmp_path, api_toml=_site_toml(ns, dial_out=True))
        async with (
            _central(ns.host_address) as links,
            running_agent(config.file, wrap=ns.run_inside) as agent,
        ):

            async def next_link() -> LinkClient:
                async with asyncio.timeout(RECONNECT_TIMEOUT_S):
                    return await links.get()

            first = await next_link()
            expectation, end_ns = await _recording_window(first, config.site.id)
            copy, link = await _cut_and_resume(ns, first, next_link, expectation, end_ns)
            await _assert_identical(link, expectation, end_ns, copy)
            assert await agent.stop() == 0, agent.output
        assert "link to http://" in agent.output  # the agent said where its uplink went
