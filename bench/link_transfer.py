"""Link benchmark: transfer throughput, wire overhead, and live latency beside a transfer.

    .venv/bin/python bench/link_transfer.py [--megabytes 256] [--rounds 3]

A real agent API (HTTPS, self-signed certificate pinned by the client, the link route) on
loopback serves a store filled with signed 512 KiB chunks (an HQ GOP at ~4 Mbit/s):

(a) throughput: `LinkClient.transfer` of every chunk (verified: signature, payload hash,
    chain) against a baseline measured in the same run, a plain aiohttp download over the
    same HTTPS server of the same bytes (the faster of a file response and an in-memory
    response); goal: ratio >= 0.8;
(b) wire bytes (frames the site sent for the transfer) / stored bytes (header, signature
    and payload of each chunk); goal: <= 1.005;
(c) live latency: packets published into the site's live relay every 40 ms, stamped with
    the wall clock, received over the same link; the median and 95th percentile of
    (arrival - stamp) alone, then while a full-speed transfer shares the link.

Client and server run in one process and one event loop, for both the baseline and the
link, on a 2-core machine: the figures are CPU-bound, not network-bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from agent.accounts import Accounts
from agent.config import load_agent_config
from agent.event_hub import EventHub
from agent.link_endpoint import link_route
from agent.site_service import SiteService
from agent.site_tls import site_identity
from agent.web_api import build_web_app
from shared.api_server import ApiServer
from shared.chunk import GENESIS_HASH, ChunkDraft, SignedChunk, seal_chunk
from shared.clock import NS_PER_S, SystemClock
from shared.link_io.dialing import connect_to_site, pinned_ssl
from shared.live_relay import LiveRelay
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.passwords import hash_password
from shared.signing import SiteSigner
from shared.store import ChunkStore
from shared.transfer_acceptance import AcceptedChunk, TransferCursor, TransferExpectation

MIB = 1 << 20
CHUNK_BYTES = 512 * 1024
PASSWORD = "bench-password"  # noqa: S105 - the benchmark's own throwaway site
H264 = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=1920, height=1080)

CONFIG = """
[site]
id = "bench-site"
name = "Benchmark site"
[storage]
path = "store"
quota = "{quota_mib} MiB"
[[users]]
username = "central"
password_hash = "{password_hash}"
[[cameras]]
id = "cam-1"
source = "synthetic"
"""


def _chunks(signer: SiteSigner, total_bytes: int, t0_ns: int) -> list[SignedChunk]:
    chunks: list[SignedChunk] = []
    prev = GENESIS_HASH
    for seq in range(total_bytes // CHUNK_BYTES):
        start_ns = t0_ns + seq * NS_PER_S
        packets = tuple(
            MediaPacket(
                "hq",
                i * 3600,
                i * 3600,
                3600,
                i == 0,
                os.urandom(CHUNK_BYTES // 25),
                start_ns + i * NS_PER_S // 25,
            )
            for i in range(25)
        )
        draft = ChunkDraft("cam-1", "hq", start_ns, start_ns + NS_PER_S, H264, packets)
        chunk = seal_chunk(
            draft,
            site_id="bench-site",
            seq=seq,
            prev_chunk_hash=prev,
            discontinuity=False,
            signer=signer,
        )
        prev = chunk.chunk_hash
        chunks.append(chunk)
    return chunks


async def _download(http: aiohttp.ClientSession, url: str, token: str, fingerprint: str) -> int:
    size = 0
    async with http.get(
        url, headers={"Authorization": f"Bearer {token}"}, ssl=pinned_ssl(fingerprint)
    ) as response:
        response.raise_for_status()
        async for block in response.content.iter_chunked(256 * 1024):
            size += len(block)
    return size


def _percentiles(values: list[float]) -> str:
    if not values:
        return "no packets"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):6.1f} ms, p95 {p95:6.1f} ms ({len(values)} packets)"


async def _live_latency(
    client, relay: LiveRelay, clock: SystemClock, seconds: float
) -> list[float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    stop = asyncio.Event()

    async def publish() -> None:
        index = 0
        while not stop.is_set():
            now = clock.now_ns()
            relay.publish(
                "cam-1", MediaPacket("lq", index, index, 1, index % 25 == 0, os.urandom(2000), now)
            )
            index += 1
            await asyncio.sleep(0.04)

    publisher = asyncio.create_task(publish())
    deadline = time.monotonic() + seconds
    async with client.live("cam-1", "lq") as packets:
        async for batch in packets:
            arrived = clock.now_ns()
            latencies += [(arrived - p.wall_ns) / 1e6 for p in batch.packets]
            if time.monotonic() >= deadline:
                break
    stop.set()
    await publisher
    return latencies[5:]  # the cached GOP comes at once; skip it


async def main(megabytes: int, rounds: int) -> int:
    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="siteline-link-bench-") as tmp:
        directory = Path(tmp)
        total = megabytes * MIB
        config_path = directory / "agent.toml"
        config_path.write_text(
            CONFIG.format(quota_mib=max(64, megabytes * 2), password_hash=hash_password(PASSWORD))
        )
        config = load_agent_config(config_path)
        signer = SiteSigner.load_or_create(config.storage.key_path)
        identity = site_identity(config, clock)
        chunks = _chunks(signer, total, clock.now_ns() - 86_400 * NS_PER_S)
        stored_bytes = sum(len(c.header_bytes) + len(c.signature) + len(c.payload) for c in chunks)
        baseline_file = directory / "same-bytes.bin"
        with baseline_file.open("wb") as out:
            for chunk in chunks:
                out.write(chunk.header_bytes + chunk.signature + chunk.payload)
        store = ChunkStore.open(
            config.storage.path,
            quota_bytes=config.storage.quota_bytes,
            hold_budget_bytes=config.storage.hold_budget_bytes,
            clock=clock,
            home_site_id=config.site.id,
        )
        for chunk in chunks:
            store.put(chunk)
        stored_count = len(chunks)
        del chunks
        relay = LiveRelay()
        relay.set_codec(
            "cam-1", "lq", CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=640, height=360)
        )
        service = SiteService(
            config,
            store,
            public_key=signer.public_key,
            fingerprint=identity.fingerprint,
            clock=clock,
            cameras_up=lambda: {},
            version="bench",
        )

        same_bytes = baseline_file.read_bytes()

        async def file_route(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(baseline_file)

        async def memory_route(request: web.Request) -> web.StreamResponse:
            return web.Response(body=same_bytes, content_type="application/octet-stream")

        app = build_web_app(
            service,
            Accounts(config.users, clock=clock),
            extra_routes=[
                link_route(
                    events=EventHub(),
                    live=relay,
                    clock=clock,
                    software="bench",
                    read_timeout_s=30.0,
                ),
                web.get("/bench/same-bytes", file_route),
                web.get("/bench/same-bytes-in-memory", memory_route),
            ],
        )
        server = ApiServer(app, host="127.0.0.1", port=0, ssl_context=identity.server_ssl_context())
        port = await server.start()
        base = f"https://127.0.0.1:{port}"
        expectation = TransferExpectation("bench-site", "cam-1", "hq", signer.public_key)
        print(
            f"{stored_bytes / MIB:.0f} MiB in {stored_bytes // (CHUNK_BYTES + 1)} chunks "
            f"of 512 KiB, over HTTPS on loopback, best of {rounds}"
        )
        try:
            async with (
                aiohttp.ClientSession() as http,
                connect_to_site(
                    http,
                    base,
                    username="central",
                    password=PASSWORD,
                    fingerprint=identity.fingerprint,
                    clock=clock,
                    software="bench",
                ) as client,
            ):
                async with http.post(
                    f"{base}/api/v1/auth/login",
                    ssl=pinned_ssl(identity.fingerprint),
                    json={"username": "central", "password": PASSWORD},
                ) as r:
                    token = (await r.json())["token"]
                download_s, transfer_s, wire = [], [], 0
                for _ in range(rounds):
                    for path in ("/bench/same-bytes", "/bench/same-bytes-in-memory"):
                        started = time.perf_counter()
                        size = await _download(http, f"{base}{path}", token, identity.fingerprint)
                        download_s.append(time.perf_counter() - started)
                        assert size == stored_bytes

                    committed = 0

                    async def commit(accepted: AcceptedChunk) -> None:
                        nonlocal committed
                        committed += 1

                    started = time.perf_counter()
                    outcome = await client.transfer(
                        expectation,
                        TransferCursor(),
                        0,
                        1 << 62,
                        commit=commit,
                        window_bytes=8 * MIB,
                    )
                    transfer_s.append(time.perf_counter() - started)
                    wire = outcome.wire_bytes
                    assert committed == outcome.chunks == stored_count, (committed, stored_count)
                baseline = stored_bytes / min(download_s) / MIB
                link = stored_bytes / min(transfer_s) / MIB
                print(f"(a) plain aiohttp download (best)   {baseline:8.1f} MiB/s")
                print(
                    f"    link transfer (verified) {link:8.1f} MiB/s   ratio {link / baseline:.2f}"
                    f"  (goal >= 0.8: {'met' if link / baseline >= 0.8 else 'NOT met'})"
                )
                ratio = wire / stored_bytes
                print(
                    f"(b) wire bytes / stored bytes {ratio:.5f}"
                    f"  (goal <= 1.005: {'met' if ratio <= 1.005 else 'NOT met'})"
                )
                alone = await _live_latency(client, relay, clock, 4.0)
                busy = asyncio.Event()
                transfers = 0

                async def keep_transferring() -> None:
                    nonlocal transfers
                    while not busy.is_set():
                        await client.transfer(
                            expectation,
                            TransferCursor(),
                            0,
                            1 << 62,
                            commit=lambda accepted: asyncio.sleep(0),
                            window_bytes=8 * MIB,
                        )
                        transfers += 1

                background = asyncio.create_task(keep_transferring())
                shared = await _live_latency(client, relay, clock, 4.0)
                busy.set()
                await background
                print(f"(c) live latency alone              {_percentiles(alone)}")
                print(
                    f"    live latency during transfers   {_percentiles(shared)}"
                    f" ({transfers} full-speed transfers of it all ran meanwhile)"
                )
                if alone and shared:
                    added = statistics.median(shared) - statistics.median(alone)
                    print(f"    added by the transfer (median)  {added:6.1f} ms")
        finally:
            await server.stop()
            await service.wait_idle()
            store.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.megabytes, arguments.rounds)))
