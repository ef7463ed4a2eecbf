"""A site with recorded HQ for the retrieval benchmark: the agent's own link server over a
store filled beforehand with signed HQ chunks of several cameras, and one camera live.

    .venv/bin/python bench/retrieval_site.py DIR --bind ADDRESS --devices 8 --chunks 72 \
        [--sent-log FILE] [--live-fps 25]

Each camera gets `--chunks` consecutive chunks of one second each, `--chunk-kib` of payload
apiece (512 KiB: an HQ GOP at about 4 Mbit/s) in 25 packets of random bytes (as
incompressible as H.264), sealed as the agent seals what it records (numbered, chained,
SHA-256, Ed25519) and stored through `ChunkStore.put`. The recordings end an hour before the
site starts, so a retrieval of them is of a finished span. No camera runs: the store is the
whole site, served over HTTPS (self-signed certificate) by the agent's API with its link
route, on `--bind`, the address the benchmark's network namespace gives the site.

Live: the first camera's LQ stream (640x360 H.264 at `--live-fps`, about 250 kbit/s, a
keyframe every second: the agent's LQ for a 25 fps camera) is published into the site's live
relay in real time, from a clip encoded at start (bench/lq_clip.py), each packet stamped
with the wall clock at publication (bench/wall_stamp.py) and each GOP sealed as a chunk, as
bench/replay_site.py does; it crosses the link only while the central pulls it (a viewer).
`--live-fps 0`: no live stream.

With `--sent-log`, everything the link sends is recorded (bench/sent_log.py) and written to
that file as JSON when the site stops.

Prints one JSON line once listening, `{"site_id", "port", "fingerprint", "username",
"password", "devices", "first_start_ns", "chunk_s", "chunks", "payload_bytes",
"live_device", "live_fps", "live_bitrate_bps"}` (`payload_bytes`: the payload of one chunk;
`live_device`: null without live), then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from bench_site_app import bench_site_app
from lq_clip import encode_lq_clip
from replay_site import ReplayedCamera
from sent_log import SentLog

from agent.config import AgentConfig, load_agent_config
from agent.site_tls import site_identity
from shared.api_server import ApiServer
from shared.chunk import GENESIS_HASH, ChunkDraft, seal_chunk
from shared.clock import NS_PER_S, Clock, SystemClock
from shared.live_relay import LiveRelay
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.passwords import hash_password
from shared.signing import SiteSigner
from shared.store import ChunkStore

SITE_ID = "retrieval-bench-site"
USERNAME = "central"
PASSWORD = "retrieval-site-pw"  # noqa: S105 - a throwaway benchmark site
PACKETS_PER_CHUNK = 25  # 25 fps, one GOP a second
CHUNK_S = 1
ENDS_BEFORE_START_S = 3600
HQ = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=1920, height=1080)
FRAME_TICKS = 90_000 // PACKETS_PER_CHUNK
LIVE_WIDTH, LIVE_HEIGHT, LIVE_BITRATE_BPS = 640, 360, 250_000

SITE_TOML = """
[site]
id = "{site_id}"
name = "Retrieval benchmark site"
[storage]
path = "store"
quota = "{quota_mib} MiB"
hold_budget_fraction = 0.9
[[users]]
username = "{username}"
password_hash = "{password_hash}"
"""
CAMERA_TOML = """
[[cameras]]
id = "{device_id}"
source = "synthetic"
"""


def device_ids(count: int) -> list[str]:
    return [f"cam-{n:02d}" for n in range(1, count + 1)]


def write_config(directory: Path, devices: list[str], quota_mib: int) -> AgentConfig:
    """The site's configuration (blocking: scrypt for the password)."""
    text = SITE_TOML.format(
        site_id=SITE_ID,
        quota_mib=quota_mib,
        username=USERNAME,
        password_hash=hash_password(PASSWORD),
    )
    text += "".join(CAMERA_TOML.format(device_id=d) for d in devices)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(text)
    return load_agent_config(path)


def fill_store(
    store: ChunkStore,
    signer: SiteSigner,
    devices: list[str],
    *,
    chunks: int,
    payload_bytes: int,
    first_start_ns: int,
) -> None:
    """`chunks` sealed HQ chunks per device from `first_start_ns` on (blocking)."""
    packet_bytes = payload_bytes // PACKETS_PER_CHUNK
    for device_id in devices:
        prev = GENESIS_HASH
        for seq in range(chunks):
            start_ns = first_start_ns + seq * CHUNK_S * NS_PER_S
            packets = tuple(
                MediaPacket(
                    "hq",
                    (seq * PACKETS_PER_CHUNK + i) * FRAME_TICKS,
                    (seq * PACKETS_PER_CHUNK + i) * FRAME_TICKS,
                    FRAME_TICKS,
                    i == 0,
                    os.urandom(packet_bytes),
                    start_ns + i * NS_PER_S // PACKETS_PER_CHUNK,
                )
                for i in range(PACKETS_PER_CHUNK)
            )
            draft = ChunkDraft(
                device_id, "hq", start_ns, start_ns + CHUNK_S * NS_PER_S, HQ, packets
            )
            chunk = seal_chunk(
                draft,
                site_id=SITE_ID,
                seq=seq,
                prev_chunk_hash=prev,
                discontinuity=seq == 0,
                signer=signer,
            )
            prev = chunk.chunk_hash
            store.put(chunk)


class LiveFeeder:
    """Publishes one camera's next live packet every frame interval, on an absolute
    schedule (a late wake-up publishes at once, then keeps the schedule)."""

    def __init__(self, camera: ReplayedCamera, *, fps: int, clock: Clock) -> None:
        self._camera = camera
        self._frame_ns = NS_PER_S // fps
        self._clock = clock

    async def run(self) -> None:
        started = self._clock.monotonic_ns()
        frame = 0
        while True:
            delay_ns = started + frame * self._frame_ns - self._clock.monotonic_ns()
            if delay_ns > 0:
                await self._clock.sleep(delay_ns / NS_PER_S)
            self._camera.publish_next(self._clock.now_ns())
            frame += 1


async def main(
    directory: Path,
    bind: str,
    devices_count: int,
    chunks: int,
    chunk_kib: int,
    *,
    sent_log: Path | None,
    live_fps: int,
) -> int:
    clock = SystemClock()
    devices = device_ids(devices_count)
    payload_bytes = chunk_kib * 1024 // PACKETS_PER_CHUNK * PACKETS_PER_CHUNK
    quota_mib = max(64, 2 * devices_count * chunks * (chunk_kib + 4) // 1024)
    config = await asyncio.to_thread(write_config, directory, devices, quota_mib)
    signer = await asyncio.to_thread(SiteSigner.load_or_create, config.storage.key_path)
    identity = await asyncio.to_thread(site_identity, config, clock)
    store = await asyncio.to_thread(
        ChunkStore.open,
        config.storage.path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=config.storage.hold_budget_bytes,
        clock=clock,
        home_site_id=SITE_ID,
    )
    try:
        now_s = clock.now_ns() // NS_PER_S
        first_start_ns = (now_s - ENDS_BEFORE_START_S - chunks * CHUNK_S) * NS_PER_S
        await asyncio.to_thread(
            fill_store,
            store,
            signer,
            devices,
            chunks=chunks,
            payload_bytes=payload_bytes,
            first_start_ns=first_start_ns,
        )
        relay = LiveRelay()
        sent = None if sent_log is None else SentLog()
        app, service = bench_site_app(
            config,
            store,
            signer=signer,
            fingerprint=identity.fingerprint,
            clock=clock,
            devices=devices,
            relay=relay,
            sent=sent,
        )
        feeder: LiveFeeder | None = None
        live_device = None
        live_bitrate = 0.0
        if live_fps:
            clip = await asyncio.to_thread(
                encode_lq_clip,
                width=LIVE_WIDTH,
                height=LIVE_HEIGHT,
                fps=live_fps,
                bitrate_bps=LIVE_BITRATE_BPS,
            )
            live_device, live_bitrate = devices[0], clip.bitrate_bps
            camera = ReplayedCamera(relay, live_device, clip, site_id=SITE_ID, signer=signer)
            feeder = LiveFeeder(camera, fps=live_fps, clock=clock)
        server = ApiServer(app, host=bind, port=0, ssl_context=identity.server_ssl_context())
        port = await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        print(
            json.dumps(
                {
                    "site_id": SITE_ID,
                    "port": port,
                    "fingerprint": identity.fingerprint,
                    "username": USERNAME,
                    "password": PASSWORD,
                    "devices": devices,
                    "first_start_ns": first_start_ns,
                    "chunk_s": CHUNK_S,
                    "chunks": chunks,
                    "payload_bytes": payload_bytes,
                    "live_device": live_device,
                    "live_fps": live_fps,
                    "live_bitrate_bps": live_bitrate,
                }
            ),
            flush=True,
        )
        feeding = None if feeder is None else asyncio.create_task(feeder.run())
        try:
            await stop.wait()
        finally:
            if feeding is not None:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeding
            await server.stop()
            await service.wait_idle()
            if sent is not None and sent_log is not None:
                await asyncio.to_thread(sent.write, sent_log)
    finally:
        await asyncio.to_thread(store.close)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--bind", required=True, help="the address to listen on")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--chunks", type=int, required=True, help="chunks per device")
    parser.add_argument("--chunk-kib", type=int, default=512)
    parser.add_argument("--sent-log", type=Path, help="write what the link sent here at exit")
    parser.add_argument("--live-fps", type=int, default=25, help="the live camera's (0: none)")
    arguments = parser.parse_args()
    sys.exit(
        asyncio.run(
            main(
                arguments.directory,
                arguments.bind,
                arguments.devices,
                arguments.chunks,
                arguments.chunk_kib,
                sent_log=arguments.sent_log,
                live_fps=arguments.live_fps,
            )
        )
    )
