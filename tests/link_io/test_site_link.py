"""The link over real sockets: a recording site, its HTTPS API and link, a client that dials
it (or that it dials), transfers cut and resumed, live beside a transfer, a stalled peer."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agent.config import LinkSettings
from agent.link_endpoint import CentralUplink
from agent.system_events import SystemEvent, SystemEventKind
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, SystemClock
from shared.link import messages as m
from shared.link_io.client import LinkClient, LinkLost, RequestFailed
from shared.link_io.dialing import DialError, connect_to_site, serve_dialled_in_site
from shared.link_io.session import EndReason
from shared.tls_pinning import pinned_fingerprint
from shared.transfer_acceptance import AcceptedChunk, TransferCursor, TransferExpectation
from tests.agent_api.api_site import PASSWORDS
from tests.link_io.link_site import READ_TIMEOUT_S, LinkSite, TcpProxy, running_link_site

ALL_TIME = (0, 1 << 62)


@contextlib.asynccontextmanager
async def dial(
    site: LinkSite, username: str = "admin", *, port: int | None = None, read_timeout_s: float = 3
) -> AsyncIterator[LinkClient]:
    async with (
        aiohttp.ClientSession() as http,
        connect_to_site(
            http,
            f"https://127.0.0.1:{port or site.port}",
            username=username,
            password=PASSWORDS[username],
            fingerprint=site.identity.fingerprint,
            clock=site.clock,
            software="test-central",
            read_timeout_s=read_timeout_s,
        ) as client,
    ):
        yield client


class CopyStore:
    """What the central would commit: chunks by seq, each exactly once."""

    def __init__(self) -> None:
        self.chunks: dict[int, SignedChunk] = {}
        self.commits = 0

    async def commit(self, accepted: AcceptedChunk) -> None:
        seq = accepted.chunk.header.seq
        assert seq not in self.chunks, f"chunk {seq} committed twice"
        self.chunks[seq] = accepted.chunk
        self.commits += 1


def _expectation(site: LinkSite, device_id: str, stream: str) -> TransferExpectation:
    return TransferExpectation(site.config.site.id, device_id, stream, site.signer.public_key)


async def test_dial_in_operations_for_a_limited_account(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site, dial(site, "clerk") as client:
        info = await client.site_info()
        assert info["id"] == site.config.site.id
        assert info["fingerprint"] == site.identity.fingerprint
        assert info["public_key"] == site.signer.public_key.hex()
        assert [d["id"] for d in await client.devices()] == ["cam-a", "door"]
        await site.wait_for_chunks("cam-a", "lq", 2)
        now = site.clock.now_ns()
        timeline = await client.timeline("cam-a", "lq", now - 3600 * NS_PER_S, now)
        assert timeline["streams"][0]["spans"], timeline
        status = await client.status()
        assert [c["id"] for c in status["cameras"]] == ["cam-a"]
        expires = site.clock.now_ns() + 3600 * NS_PER_S
        placed = await client.place_hold(
            "cam-a",
            streams=("lq",),
            start_ns=now - 3600 * NS_PER_S,
            end_ns=now,
            expires_ns=expires,
            reason="t",
        )
        hold_id = placed["holds"][0]["id"]
        assert [h["id"] for h in await client.list_holds()] == [hold_id]
        await client.release_hold(hold_id)
        assert await client.list_holds() == []
        # cam-b exists but clerk may not see it: the same answer as a device that does not
        for device in ("cam-b", "no-such-camera"):
            with pytest.raises(RequestFailed) as caught:
                await client.timeline(device, "lq", 0, NS_PER_S)
            assert caught.value.code is m.FailureCode.NOT_FOUND
            assert caught.value.message == f"no device {device!r}"
            with pytest.raises(RequestFailed) as caught:
                await client.transfer(
                    _expectation(site, device, "lq"),
                    TransferCursor(),
                    *ALL_TIME,
                    commit=CopyStore().commit,
                )
            assert caught.value.code is m.FailureCode.NOT_FOUND


async def test_a_dial_opens_one_connection_for_the_login_and_the_link(tmp_path: Path) -> None:
    """The login's TLS connection carries the link too: one handshake per dial, not two
    (a central with 1,000 sites made 2,000)."""
    async with running_link_site(tmp_path) as site:
        proxy = TcpProxy(site.port)
        await proxy.start()
        try:
            async with dial(site, port=proxy.port) as client:
                assert (await client.site_info())["id"] == site.site_id
                assert proxy.accepted == 1
        finally:
            await proxy.close()


async def test_the_link_needs_a_valid_token(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site, aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await http.ws_connect(
                    f"{site.base_url}/api/v1/link",
                    headers=headers,
                    ssl=pinned_fingerprint(site.identity.fingerprint),
                )
            assert caught.value.status == 401
        with pytest.raises(DialError, match="wrong username or password"):
            async with connect_to_site(
                http,
                site.base_url,
                username="admin",
                password="wrong",
                fingerprint=site.identity.fingerprint,
                clock=site.clock,
                software="t",
            ):
                pass
        wrong_pin = "00:" * 31 + "00"
        with pytest.raises(DialError, match="not the pinned one"):
            async with connect_to_site(
                http,
                site.base_url,
                username="admin",
                password=PASSWORDS["admin"],
                fingerprint=wrong_pin,
                clock=site.clock,
                software="t",
            ):
                pass


async def test_garbage_on_the_link_closes_it_and_the_site_goes_on(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path) as site,
        aiohttp.ClientSession() as http,
        dial(site) as client,
    ):
        if True:
            token_url = f"{site.base_url}/api/v1/auth/login"
            ssl = pinned_fingerprint(site.identity.fingerprint)
            async with http.post(
                token_url, json={"username": "admin", "password": "admin-pw"}, ssl=ssl
            ) as response:
                token = (await response.json())["token"]
            ws = await http.ws_connect(
                f"{site.base_url}/api/v1/link",
                headers={"Authorization": f"Bearer {token}"},
                ssl=ssl,
            )
            await ws.send_bytes((100).to_bytes(4, "big") + b"\xc1" * 100)  # 0xc1: never used
            received = b""
            while True:
                message = await ws.receive(timeout=5)
                if message.type is not aiohttp.WSMsgType.BINARY:
                    break
                received += message.data
            assert b"expected Hello first" in received or b"malformed" in received
            await ws.close()
            assert (await client.site_info())["id"] == site.config.site.id  # others unaffected


async def test_a_transfer_gives_a_verified_identical_copy(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site, dial(site) as client:
        await site.wait_for_chunks("cam-a", "hq", 4)
        copy = CopyStore()
        outcome = await client.transfer(
            _expectation(site, "cam-a", "hq"), TransferCursor(), *ALL_TIME, commit=copy.commit
        )
        stored = await asyncio.to_thread(
            site.store.chunks_after_seq, "cam-a", "hq", -1, limit=10_000, max_bytes=1 << 40
        )
        assert outcome.chunks >= 4
        received = [copy.chunks[s] for s in sorted(copy.chunks)]
        assert [c.header_bytes for c in received] == [
            c.header_bytes for c in stored[: len(received)]
        ]
        assert all(c.payload == s.payload for c, s in zip(received, stored, strict=False))
        assert outcome.cursor.seq == received[-1].header.seq
        stored_bytes = sum(len(c.header_bytes) + 64 + len(c.payload) for c in received)
        assert stored_bytes <= outcome.wire_bytes <= stored_bytes * 1.005
        # resuming from the end sends only what was recorded since
        later = await client.transfer(
            _expectation(site, "cam-a", "hq"), outcome.cursor, *ALL_TIME, commit=copy.commit
        )
        assert all(seq > outcome.cursor.seq for seq in list(copy.chunks)[outcome.chunks :])
        assert copy.commits == outcome.chunks + later.chunks


async def test_a_transfer_cut_again_and_again_resumes_to_an_identical_copy(
    tmp_path: Path,
) -> None:
    async with running_link_site(tmp_path) as site:
        await site.wait_for_chunks("cam-a", "hq", 6)
        stored = await asyncio.to_thread(
            site.store.chunks_after_seq, "cam-a", "hq", -1, limit=6, max_bytes=1 << 40
        )
        last = stored[-1].header
        proxy = TcpProxy(site.port)
        await proxy.start()
        copy = CopyStore()
        cursor = TransferCursor()
        try:
            for attempt in range(40):
                proxy.cut_after_bytes = proxy.forwarded_to_client + 7_000 + 3_001 * attempt
                try:
                    async with dial(site, port=proxy.port) as client:
                        outcome = await client.transfer(
                            _expectation(site, "cam-a", "hq"),
                            cursor,
                            0,
                            last.end_ns,
                            commit=copy.commit,
                        )
                        cursor = outcome.cursor
                        break
                except (LinkLost, DialError):
                    cursor = TransferCursor(*_last(copy))
            else:
                raise AssertionError("the transfer never completed")
        finally:
            await proxy.close()
        assert proxy.cuts >= 2
        assert [copy.chunks[s].header_bytes for s in sorted(copy.chunks)] == [
            c.header_bytes for c in stored
        ]
        assert copy.commits == len(stored)  # nothing stored twice


def _last(copy: CopyStore) -> tuple[int | None, bytes | None]:
    if not copy.chunks:
        return None, None
    chunk = copy.chunks[max(copy.chunks)]
    return chunk.header.seq, chunk.chunk_hash


async def test_live_keeps_flowing_while_a_transfer_runs(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site, dial(site) as client:
        await site.wait_for_chunks("cam-b", "hq", 3)
        async with client.live("cam-a", "lq") as packets:
            first = await asyncio.wait_for(anext(packets), 10)
            assert first.codec is not None  # the codec comes first
            assert first.packets[0].keyframe  # then the cached GOP, from its keyframe
            cam_a, cam_b = site.site.cameras
            assert cam_a.source.live_watched  # watched: packets reach the loop promptly
            assert not cam_b.source.live_watched
            transfer = asyncio.create_task(
                client.transfer(
                    _expectation(site, "cam-b", "hq"),
                    TransferCursor(),
                    *ALL_TIME,
                    commit=slow_commit,
                    window_bytes=32 * 1024,
                )
            )
            during = 0
            while not transfer.done():
                await asyncio.wait_for(anext(packets), 10)
                during += 1
            assert during >= 2  # live batches arrived while the transfer ran
            assert (await transfer).chunks >= 3
        for _ in range(100):  # the site hears of the cancel a moment later
            if not cam_a.source.live_watched:
                break
            await asyncio.sleep(0.05)
        assert not cam_a.source.live_watched  # the last viewer left: batches again


async def test_live_credit_goes_back_a_quarter_window_at_a_time(tmp_path: Path) -> None:
    """The central gives a live stream's credit back once a quarter of the window was taken,
    not packet by packet (one Credit per packet cost both ends a message each): the site's
    credit dips by up to a quarter and comes back, and the stream runs on well past the
    window."""
    window = 16 * 1024
    async with running_link_site(tmp_path) as site, dial(site) as client:
        await site.wait_for_chunks("cam-a", "lq", 1)
        async with client.live("cam-a", "lq", window_bytes=window) as packets:
            request_id = client.connection.new_request_id() - 1  # the live request's
            taken = 0
            lowest = window
            while taken < 3 * window:  # stalls here if no credit came back
                batch = await asyncio.wait_for(anext(packets), 10)
                taken += batch.frame_bytes
                lowest = min(lowest, client.connection.outstanding_credit(request_id))
                assert client.connection.outstanding_credit(request_id) <= window
    assert lowest < window - window // 8  # held back between grants, not given per packet


async def slow_commit(accepted: AcceptedChunk) -> None:
    """A commit as slow as a synced write on a slow disk, so the transfer takes a while."""
    await asyncio.sleep(0.3)


async def test_events_reach_the_subscriber(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site, dial(site, "clerk") as client:
        async with client.events(("storage_low", "camera_lost")) as events:
            await asyncio.sleep(0.2)  # let the subscription reach the site
            now = site.clock.now_ns()
            site.site.events.publish(SystemEvent(SystemEventKind.CAMERA_LOST, "cam-b", now))
            site.site.events.publish(SystemEvent(SystemEventKind.MOTION_STARTED, "cam-a", now))
            site.site.events.publish(SystemEvent(SystemEventKind.CAMERA_LOST, "cam-a", now))
            item = await asyncio.wait_for(anext(events), 10)
        assert (item.kind, item.device_id, item.at_ns) == ("camera_lost", "cam-a", now)


async def test_a_stalled_link_is_detected_within_the_read_timeout(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site:
        proxy = TcpProxy(site.port)
        await proxy.start()
        try:
            async with dial(site, port=proxy.port, read_timeout_s=1.5) as client:
                await client.site_info()
                proxy.flowing.clear()  # nothing passes, nothing is closed
                with pytest.raises(LinkLost) as caught:
                    await asyncio.wait_for(client.status(), 30)
                assert caught.value.end.reason is EndReason.STALLED
        finally:
            proxy.flowing.set()
            await proxy.close()


async def test_a_link_lives_while_only_the_site_sends_and_the_sides_time_out_apart(
    tmp_path: Path,
) -> None:
    """The site gives up on a link it hears nothing on after 3 s, this central after 30 s.
    The site sends live video all along (its own idle pings never start), and the central
    has nothing to send: it holds the stream's credit back, unread. Its idle pings (a third
    of its own timeout) would come too late for the site, so the site pings on its own
    silence and the link lives on."""
    async with (
        running_link_site(tmp_path) as site,
        dial(site, read_timeout_s=30) as client,
        client.live("cam-a", "lq") as batches,
    ):
        first = await asyncio.wait_for(anext(batches), 10)  # its credit is given back
        assert first.packets
        await asyncio.sleep(3 * READ_TIMEOUT_S)
        assert client.is_open
        assert [c["id"] for c in (await client.status())["cameras"]] == ["cam-a", "cam-b"]


async def test_the_site_dials_out_and_the_central_uses_the_link(tmp_path: Path) -> None:
    token = "enrol-" + "x" * 20
    links: asyncio.Queue[LinkClient] = asyncio.Queue()
    done = asyncio.Event()
    clock = SystemClock()

    async def accept(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            raise web.HTTPUnauthorized()

        async def on_link(client: LinkClient) -> None:
            await links.put(client)
            await done.wait()

        return await serve_dialled_in_site(
            request, clock=clock, software="test-central", on_link=on_link
        )

    app = web.Application()
    app.router.add_get("/api/v1/sites/link", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    central = web.TCPSite(runner, "127.0.0.1", 0)
    await central.start()
    port = runner.addresses[0][1]
    try:
        async with running_link_site(tmp_path) as site:
            await site.wait_for_chunks("cam-a", "lq", 2)
            account = next(u for u in site.config.users if u.username == "clerk")
            for presented, refused in ((token[:-1] + "y", True), (token, False)):
                settings = _uplink_settings(port, presented)
                uplink = CentralUplink(
                    settings,
                    account,
                    site.service,
                    events=site.site.events,
                    live=site.site.live,
                    clock=clock,
                    software="agent",
                    rng=random.Random(1),
                )
                running = asyncio.create_task(uplink.run())
                try:
                    if refused:
                        for _ in range(200):
                            if uplink.last_problem is not None:
                                break
                            await asyncio.sleep(0.05)
                        assert "refused the link (HTTP 401)" in uplink.last_problem
                        continue
                    client = await asyncio.wait_for(links.get(), 10)
                    assert (await client.site_info())["id"] == site.config.site.id
                    assert [d["id"] for d in await client.devices()] == ["cam-a", "door"]
                    copy = CopyStore()
                    outcome = await client.transfer(
                        _expectation(site, "cam-a", "lq"),
                        TransferCursor(),
                        *ALL_TIME,
                        commit=copy.commit,
                    )
                    assert outcome.chunks >= 2
                finally:
                    done.set()
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
                    done.clear()
    finally:
        await runner.cleanup()


def _uplink_settings(port: int, token: str) -> LinkSettings:
    return LinkSettings(
        read_timeout_s=5.0,
        central_url=f"http://127.0.0.1:{port}/api/v1/sites/link",
        enrolment_token=token,
        central_fingerprint=None,
        account="clerk",
    )


async def test_every_link_operation_hides_a_forbidden_device(tmp_path: Path) -> None:
    """`clerk` may not see cam-b: each operation answers as for a device that does not
    exist; holds on cam-b are not listed and cannot be released."""
    async with running_link_site(tmp_path) as site:
        now = site.clock.now_ns()
        async with dial(site) as admin:
            placed = await admin.place_hold(
                "cam-b",
                streams=("lq",),
                start_ns=now - NS_PER_S,
                end_ns=now,
                expires_ns=now + 3600 * NS_PER_S,
                reason="admin's",
            )
        hold_id = placed["holds"][0]["id"]
        async with dial(site, "clerk") as clerk:
            attempts = {
                "timeline": clerk.timeline("cam-b", "lq", now - NS_PER_S, now),
                "hold": clerk.place_hold(
                    "cam-b",
                    streams=("lq",),
                    start_ns=now - NS_PER_S,
                    end_ns=now,
                    expires_ns=now + NS_PER_S,
                    reason="x",
                ),
                "release": clerk.release_hold(hold_id),
                "transfer": clerk.transfer(
                    _expectation(site, "cam-b", "lq"),
                    TransferCursor(),
                    *ALL_TIME,
                    commit=CopyStore().commit,
                ),
            }
            for name, attempt in attempts.items():
                with pytest.raises(RequestFailed) as caught:
                    await attempt
                assert caught.value.code is m.FailureCode.NOT_FOUND, name
            async with clerk.live("cam-b", "lq") as packets:
                with pytest.raises(RequestFailed) as caught:
                    await anext(packets)
                assert caught.value.code is m.FailureCode.NOT_FOUND
            assert await clerk.list_holds() == []
        async with dial(site, "nobody") as nobody:
            assert await nobody.devices() == []


@pytest.mark.parametrize(
    ("window_chunks", "next_chunk_sent"),
    [(0.5, False), (8, True)],
    ids=["window-smaller-than-a-chunk", "window-of-several-chunks"],
)
async def test_with_a_window_smaller_than_a_chunk_the_site_has_one_chunk_out(
    tmp_path: Path, window_chunks: float, next_chunk_sent: bool
) -> None:
    """What a cut that ends the link makes the site send again is what it sent beyond the
    last committed chunk. With a window smaller than a chunk (the central's retrieval without
    a cap), the credit lent for the chunk under way is all the site has: until the central
    has committed the first chunk, nothing of the next arrives. The control: with a window
    of several chunks the next one does, so the measure can tell."""
    async with running_link_site(tmp_path) as site, dial(site) as client:
        await site.wait_for_chunks("cam-a", "hq", 4)
        stored = await asyncio.to_thread(
            site.store.chunks_after_seq, "cam-a", "hq", -1, limit=4, max_bytes=1 << 40
        )
        smallest = min(len(chunk.payload) for chunk in stored)
        beyond_the_first: list[int] = []
        before_the_request = client.session.bytes_received

        async def slow_first_commit(accepted: AcceptedChunk) -> None:
            if not beyond_the_first:
                await asyncio.sleep(1.0)
                chunk = accepted.chunk
                own = len(chunk.header_bytes) + len(chunk.signature) + len(chunk.payload)
                received = client.session.bytes_received - before_the_request
                beyond_the_first.append(received - own)

        await client.transfer(
            _expectation(site, "cam-a", "hq"),
            TransferCursor(),
            0,
            stored[3].header.end_ns,
            commit=slow_first_commit,
            window_bytes=max(1024, int(smallest * window_chunks)),
        )
        [beyond] = beyond_the_first
        framing = 1024  # the chunk's frame headers, and the link's own small messages
        if next_chunk_sent:
            assert beyond >= smallest, f"{beyond} bytes; chunks of {smallest} bytes or more"
        else:
            assert beyond < framing, f"{beyond} bytes of the next chunks came before the commit"
