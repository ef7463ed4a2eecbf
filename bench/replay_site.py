"""A cheap stand-in for sites in the central's benchmarks: K sites in one process, whose
cameras' reference (LQ) streams are replayed from one clip encoded once.

    .venv/bin/python bench/replay_site.py DIR --devices 500 [--sites 1]
    .venv/bin/python bench/replay_site.py DIR --shop --idle --sites 250 [--first-index 250]

Each site is the agent's own link server (`agent.link_endpoint.link_route` on the agent's
API application, HTTPS with a self-signed certificate) over a `SiteService` whose cameras
exist only in its configuration; their `LiveRelay` is fed here instead of by recorders.
Every camera publishes the clip's packets (bench/lq_clip.py) in real time with fresh
timestamps: pts and dts counting on, the wall clock at publication, and the same wall time
inside the packet (bench/wall_stamp.py) for latency measurements. Cameras are spread evenly
over the frame interval, so the sites send a steady flow rather than bursts; they all start
at the clip's first keyframe, so their keyframes and seals come in the same frame (the worst
case), unless `--spread-gops` starts camera k k frames late (modulo the GOP). Each one-second
GOP is sealed as the agent seals a stored chunk (numbered, chained, SHA-256, Ed25519) and
its seal published after the next keyframe, as the agent's recorder does, so the central can
record the stream from the relay. Nothing is stored.

Besides the link, each site serves `GET /api/v1/bench/plain/{device_id}`: a WebSocket that
sends each packet's bytes as one binary message, the same bytes at the same pace, for the
plain forwarding baseline (bench/plain_forward.py).

With `--devices N` the sites have N cameras in all, dealt out in turn (`cam-0001` to the
first site), each with its motion metadata device. With `--shop` each site has instead the
six devices of bench/central_listing.py: two cameras (`cam-a`, with a microphone, and
`cam-b`, neither with motion metadata), an input, an output and a speaker, under the same
names (`Entrance {index}`, `Yard {index}`, ...). Only the cameras' reference streams are
replayed; the microphone, the input (its state never changes), the output and the speaker
are listed and publish nothing. With `--idle` no camera publishes anything either (no clip
is encoded): the sites are live links and nothing else, as an idle chain's sites are when
nobody watches. `--first-index K` numbers the sites from K, so that several processes can
share one set of sites (ids, names and folders stay distinct). `--nice 19` makes the sites
yield the CPU to the central when both want it: they stand for other machines.

Prints one JSON line once listening, `{"sites": [{"site_id", "port", "fingerprint",
"username", "password", "devices"}]}` (`devices`: the camera ids), and the clip's `fps`,
`bitrate_bps` and `size` unless idle; with `--shop` each site also has `device_list`, its
devices as its API and link list them. Then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from bench_site_app import bench_site_app
from lq_clip import LqClip, encode_lq_clip
from wall_stamp import stamped

from agent.accounts import Principal
from agent.api_bodies import device_json
from agent.config import AgentConfig, load_agent_config
from agent.site_service import SiteService
from agent.site_tls import site_identity
from agent.web_api import API_PREFIX
from shared.api_server import ApiServer
from shared.chunk import GENESIS_HASH, ChunkDraft, seal_chunk
from shared.clock import NS_PER_S, Clock, SystemClock
from shared.live_relay import LiveRelay
from shared.media import MediaPacket
from shared.passwords import hash_password
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore

USERNAME = "central"
PASSWORD = "replay-site-pw"  # noqa: S105 - a throwaway benchmark site on loopback
STREAM = "lq"
SLOTS_PER_FRAME = 20  # cameras are spread over this many instants per frame interval

SITE_TOML = """
[site]
id = "{site_id}"
name = "Replay site {index}"
[storage]
path = "store"
quota = "64 MiB"
[[users]]
username = "{username}"
password_hash = "{password_hash}"
"""
CAMERA_TOML = """
[[cameras]]
id = "{device_id}"
source = "synthetic"
"""
SHOP_TOML = """
[[cameras]]
id = "cam-a"
name = "Entrance {index}"
source = "synthetic"
[cameras.synthetic]
audio = true
[cameras.motion]
enabled = false
[[cameras]]
id = "cam-b"
name = "Yard {index}"
source = "synthetic"
[cameras.motion]
enabled = false
[[inputs]]
id = "door"
name = "Back door"
[[outputs]]
id = "siren"
name = "Siren"
[[speakers]]
id = "speaker"
name = "Shop floor"
"""
SHOP_CAMERAS = ["cam-a", "cam-b"]


class ReplayedCamera:
    """One camera: the clip's packets with fresh timestamps, each GOP sealed as a chunk."""

    def __init__(
        self, relay: LiveRelay, device_id: str, clip: LqClip, *, site_id: str, signer: SiteSigner
    ) -> None:
        self._relay = relay
        self.device_id = device_id
        self._clip = clip
        self._site_id = site_id
        self._signer = signer
        self._index = 0
        self._chunk: list[MediaPacket] = []
        self._seq = 0
        self._prev_hash = GENESIS_HASH
        self._silent_frames = 0
        relay.set_codec(device_id, STREAM, clip.codec)

    def start_after(self, frames: int) -> None:
        """Publish nothing for the first `frames` frames (a camera switched on later)."""
        self._silent_frames = frames

    def publish_next(self, wall_ns: int) -> None:
        if self._silent_frames > 0:
            self._silent_frames -= 1
            return
        clip = self._clip
        source = clip.packets[self._index % len(clip.packets)]
        ticks = clip.frame_ticks
        pts = self._index * ticks
        packet = MediaPacket(
            STREAM, pts, pts, ticks, source.keyframe, stamped(source.data, wall_ns), wall_ns
        )
        self._index += 1
        self._relay.publish(self.device_id, packet)
        if source.keyframe and self._chunk:
            self._seal(wall_ns)
        self._chunk.append(packet)

    def _seal(self, end_ns: int) -> None:
        packets = tuple(self._chunk)
        self._chunk = []
        draft = ChunkDraft(
            self.device_id, STREAM, packets[0].wall_ns, end_ns, self._clip.codec, packets
        )
        chunk = seal_chunk(
            draft,
            site_id=self._site_id,
            seq=self._seq,
            prev_chunk_hash=self._prev_hash,
            discontinuity=self._seq == 0,
            signer=self._signer,
        )
        self._seq += 1
        self._prev_hash = chunk.chunk_hash
        self._relay.publish_sealed(chunk)


class Replayer:
    """Publishes every camera's next packet at its turn: camera j at slot j mod SLOTS."""

    def __init__(self, cameras: list[ReplayedCamera], *, fps: int, clock: Clock) -> None:
        self._slots: list[list[ReplayedCamera]] = [[] for _ in range(SLOTS_PER_FRAME)]
        for index, camera in enumerate(cameras):
            self._slots[index % SLOTS_PER_FRAME].append(camera)
        self._slot_ns = NS_PER_S // fps // SLOTS_PER_FRAME
        self._clock = clock

    async def run(self) -> None:
        started = self._clock.monotonic_ns()
        tick = 0
        while True:
            delay_ns = started + tick * self._slot_ns - self._clock.monotonic_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / NS_PER_S)
            now_ns = self._clock.now_ns()
            for camera in self._slots[tick % SLOTS_PER_FRAME]:
                camera.publish_next(now_ns)
            tick += 1


def plain_route(relay: LiveRelay) -> web.RouteDef:
    """The baseline's source: each packet's bytes as one WebSocket message."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        reader = asyncio.create_task(_until_closed(socket))
        with (
            relay.subscribe(request.match_info["device_id"], STREAM) as viewer,
            contextlib.suppress(ConnectionError, RuntimeError),
        ):
            while not reader.done():
                _, packets = await viewer.next_batch()
                await socket.send_bytes(b"".join(p.data for p in packets))
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        return socket

    return web.get(f"{API_PREFIX}/bench/plain/{{device_id}}", handle)


async def _until_closed(socket: web.WebSocketResponse) -> None:
    async for _ in socket:
        pass


@dataclass
class ReplaySite:
    site_id: str
    devices: list[str]
    relay: LiveRelay
    signer: SiteSigner
    fingerprint: str
    server: ApiServer
    service: SiteService
    store: ChunkStore
    port: int = 0


async def open_site(
    directory: Path,
    index: int,
    devices: list[str],
    *,
    password_hash: str,
    clock: Clock,
    shop: bool = False,
) -> ReplaySite:
    """Site number `index` with the cameras `devices`, or with `shop` the six devices of a
    small shop (`devices` is then `SHOP_CAMERAS`)."""
    site_id = f"replay-site-{index}"
    text = SITE_TOML.format(
        site_id=site_id, index=index, username=USERNAME, password_hash=password_hash
    )
    if shop:
        text += SHOP_TOML.format(index=index)
    else:
        text += "".join(CAMERA_TOML.format(device_id=d) for d in devices)
    config = await asyncio.to_thread(_write_config, directory, text)
    signer = await asyncio.to_thread(SiteSigner.load_or_create, config.storage.key_path)
    identity = await asyncio.to_thread(site_identity, config, clock)
    store = await asyncio.to_thread(
        ChunkStore.open,
        config.storage.path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=config.storage.hold_budget_bytes,
        clock=clock,
        home_site_id=site_id,
    )
    relay = LiveRelay()
    app, service = bench_site_app(
        config,
        store,
        signer=signer,
        fingerprint=identity.fingerprint,
        clock=clock,
        devices=devices,
        relay=relay,
        extra_routes=[plain_route(relay)],
    )
    server = ApiServer(app, host="127.0.0.1", port=0, ssl_context=identity.server_ssl_context())
    site = ReplaySite(site_id, devices, relay, signer, identity.fingerprint, server, service, store)
    site.port = await server.start()
    return site


def _write_config(directory: Path, text: str) -> AgentConfig:
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "agent.toml"
    config_path.write_text(text)
    return load_agent_config(config_path)


def gop_frames(clip: LqClip) -> int:
    """Frames from one keyframe of the clip to the next (the whole clip if it has one)."""
    keyframes = [i for i, packet in enumerate(clip.packets) if packet.keyframe]
    return keyframes[1] - keyframes[0] if len(keyframes) > 1 else len(clip.packets)


def device_ids(count: int, sites: int) -> list[list[str]]:
    """`count` camera ids, dealt out to `sites` sites in turn (cam-0001 to site 0, ...)."""
    names = [f"cam-{n:04d}" for n in range(1, count + 1)]
    return [names[k::sites] for k in range(sites)]


def parse_lq_profile(text: str) -> tuple[int, int, int, int]:
    """`WIDTHxHEIGHT@FPS:KBPS` (e.g. 640x360@8:250) as (width, height, fps, bit/s)."""
    try:
        size, rest = text.split("@")
        width, height = (int(n) for n in size.split("x"))
        fps_text, kbps = rest.split(":")
        return width, height, int(fps_text), int(kbps) * 1000
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected WIDTHxHEIGHT@FPS:KBPS, e.g. 640x360@8:250"
        ) from None


def encode_clip(lq: tuple[int, int, int, int] | None) -> LqClip:
    """The clip every camera replays: `lq` as parsed by `parse_lq_profile`, or the default."""
    if lq is None:
        return encode_lq_clip()
    width, height, fps, bitrate_bps = lq
    return encode_lq_clip(width=width, height=height, fps=fps, bitrate_bps=bitrate_bps)


def site_json(site: ReplaySite, *, shop: bool) -> dict[str, object]:
    """What a benchmark needs to add the site to a central (with `shop`, its devices too)."""
    found: dict[str, object] = {
        "site_id": site.site_id,
        "port": site.port,
        "fingerprint": site.fingerprint,
        "username": USERNAME,
        "password": PASSWORD,
        "devices": site.devices,
    }
    if shop:
        everything = Principal(USERNAME, frozenset({"*"}))
        found["device_list"] = [device_json(d) for d in site.service.devices(everything)]
    return found


async def main(
    directory: Path,
    devices: int,
    sites: int,
    lq: tuple[int, int, int, int] | None = None,
    *,
    shop: bool = False,
    idle: bool = False,
    first_index: int = 0,
    spread_gops: bool = False,
) -> int:
    clock = SystemClock()
    clip = None if idle else await asyncio.to_thread(encode_clip, lq)
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    layout = [SHOP_CAMERAS] * sites if shop else device_ids(devices, sites)
    opened: list[ReplaySite] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        for offset, names in enumerate(layout):
            index = first_index + offset
            opened.append(
                await open_site(
                    directory / f"site-{index}",
                    index,
                    list(names),
                    password_hash=password_hash,
                    clock=clock,
                    shop=shop,
                )
            )
        ready: dict[str, object] = {}
        if clip is not None:
            ready |= {
                "bitrate_bps": clip.bitrate_bps,
                "fps": clip.fps,
                "size": f"{clip.codec.width}x{clip.codec.height}",
            }
        ready["sites"] = [site_json(s, shop=shop) for s in opened]
        print(json.dumps(ready), flush=True)
        if clip is None:
            await stop.wait()
        else:
            cameras = [
                ReplayedCamera(s.relay, d, clip, site_id=s.site_id, signer=s.signer)
                for s in opened
                for d in s.devices
            ]
            cameras.sort(key=lambda c: c.device_id)  # neighbours in time are on different sites
            if spread_gops:
                gop = gop_frames(clip)
                for number, camera in enumerate(cameras):
                    camera.start_after(number % gop)
            replaying = asyncio.create_task(Replayer(cameras, fps=clip.fps, clock=clock).run())
            await stop.wait()
            replaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replaying
    finally:
        for site in opened:
            await site.server.stop()
            await site.service.wait_idle()
            site.store.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    layouts = parser.add_mutually_exclusive_group(required=True)
    layouts.add_argument("--devices", type=int, help="cameras in all, dealt out to the sites")
    layouts.add_argument(
        "--shop", action="store_true", help="each site with a small shop's six devices"
    )
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument("--first-index", type=int, default=0, help="number of the first site")
    parser.add_argument("--idle", action="store_true", help="the cameras publish nothing")
    parser.add_argument(
        "--spread-gops",
        action="store_true",
        help="cameras start one frame apart, so their keyframes (and seals) spread over the "
        "GOP as real cameras' do, instead of all at once",
    )
    parser.add_argument(
        "--nice", type=int, default=0, help="lower this process's priority by this much"
    )
    parser.add_argument(
        "--lq", type=parse_lq_profile, help="WIDTHxHEIGHT@FPS:KBPS (default 320x180@5:120)"
    )
    arguments = parser.parse_args()
    if arguments.nice:
        os.nice(arguments.nice)  # before any thread starts: every thread inherits it
    sys.exit(
        asyncio.run(
            main(
                arguments.directory,
                arguments.devices or 0,
                arguments.sites,
                arguments.lq,
                shop=arguments.shop,
                idle=arguments.idle,
                first_index=arguments.first_index,
                spread_gops=arguments.spread_gops,
            )
        )
    )
