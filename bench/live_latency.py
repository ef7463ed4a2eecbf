"""Central benchmark: live latency added by the central.

    .venv/bin/python bench/live_latency.py             # about 2 minutes
    .venv/bin/python bench/live_latency.py --quick     # about 20 s

The sites (bench/replay_site.py, a child process) replay each camera's reference stream
(320x180, 5 fps, ~120 kbit/s H.264) and stamp every packet with the wall clock as it is
published into the site's live relay (the stamp travels inside the packet, see
bench/wall_stamp.py). The central (`siteline central run`, a child process) dials the site.
For each watched camera, this process holds two viewers at once:

- direct: a link to the site, as the central opens one (`connect_to_site`, the live
  stream of the link protocol): what a viewer at the site's door would see;
- through the central: the central's live WebSocket (fragmented MP4), which the central
  feeds from its own link to the site.

Each packet's latency is its arrival minus its stamp; the same packet is seen by both, so
the difference (central minus direct) per packet is what the central adds: its link
client, relay and MP4 fragmenting, and the second TLS hop. Measured with the central
otherwise idle, and with `--load` other streams relayed by the central at the same time.
All processes share the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from central_process import CentralClient, CentralProcess, add_replay_sites, make_central
from json_child import JsonChild
from live_viewers import ViewerGroup

from shared.clock import SystemClock
from shared.link_io.dialing import connect_to_site

STREAM = "lq"


@dataclass
class DirectViewer:
    """Arrivals of one camera's packets over a link straight from the site."""

    arrivals: dict[int, int] = field(default_factory=dict)  # stamp -> arrival, ns


@contextlib.asynccontextmanager
async def direct_viewers(
    site: dict[str, object], devices: list[str]
) -> AsyncIterator[dict[str, DirectViewer]]:
    """One link to the site and a live stream on it for each device, read meanwhile."""
    viewers = {d: DirectViewer() for d in devices}
    async with (
        aiohttp.ClientSession() as http,
        connect_to_site(
            http,
            f"https://127.0.0.1:{site['port']}",
            username=str(site["username"]),
            password=str(site["password"]),
            fingerprint=str(site["fingerprint"]),
            clock=SystemClock(),
            software="latency bench",
        ) as link,
    ):

        async def read(device: str) -> None:
            async with link.live(device, STREAM) as batches:
                async for batch in batches:
                    arrived = time.time_ns()
                    for packet in batch.packets:
                        viewers[device].arrivals[packet.wall_ns] = arrived

        readers = [asyncio.create_task(read(d)) for d in devices]
        try:
            yield viewers
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


def percentiles(values: list[float]) -> str:
    if not values:
        return "no packets"
    ordered = sorted(values)
    p95 = ordered[round(0.95 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered):6.2f} ms, p95 {p95:6.2f} ms ({len(values)} packets)"


@dataclass
class Latencies:
    direct_ms: list[float] = field(default_factory=list)
    central_ms: list[float] = field(default_factory=list)
    added_ms: list[float] = field(default_factory=list)  # per packet seen by both
    central_only: int = 0  # packets the direct viewer missed (should be none)


async def measure(
    client: CentralClient,
    site: dict[str, object],
    watched: list[tuple[str, str]],  # (the central's id, the site's id) of each camera
    *,
    seconds: float,
) -> Latencies:
    group = ViewerGroup(client.session)
    async with direct_viewers(site, [remote for _, remote in watched]) as direct:
        await group.add(
            [client.ws_url(f"/devices/{central_id}/live") for central_id, _ in watched],
            client.headers,
            timeout_s=60.0,
        )
        await asyncio.sleep(2.0)  # each viewer gets the cached GOP at once: let it pass
        started_ns = time.time_ns()
        await asyncio.sleep(seconds)
        ended_ns = time.time_ns()
        await asyncio.sleep(1.0)  # the last packets of the window arrive
        viewers = list(group.viewers)
    await group.close()
    found = Latencies()
    for viewer, (_, remote) in zip(viewers, watched, strict=True):
        seen_direct = direct[remote].arrivals
        found.direct_ms += [
            (arrival - stamp) / 1e6
            for stamp, arrival in seen_direct.items()
            if started_ns <= stamp <= ended_ns
        ]
        for stamp, arrival in viewer.counts.arrivals:
            if not started_ns <= stamp <= ended_ns:
                continue
            found.central_ms.append((arrival - stamp) / 1e6)
            other = seen_direct.get(stamp)
            if other is None:
                found.central_only += 1
            else:
                found.added_ms.append((arrival - other) / 1e6)
    return found


async def main(watch: int, loads: list[int], recorded_load: int, seconds: float, sites: int) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="siteline-latency-bench-") as tmp:
        directory = Path(tmp)
        total = watch + max(*loads, recorded_load)
        replay = await JsonChild.start(
            "replay_site.py",
            str(directory / "sites"),
            "--devices",
            str(total),
            "--sites",
            str(sites),
            log=directory / "sites.log",
        )
        folder = await asyncio.to_thread(make_central, directory / "central")
        central = await CentralProcess.start(folder)
        client = CentralClient(central.base_url, central.fingerprint)
        try:
            await client.login()
            cameras = await add_replay_sites(client, replay.info["sites"])
            first_site = replay.info["sites"][0]
            remote_ids = sorted(first_site["devices"])[:watch]
            by_remote = dict(
                zip(
                    sorted(d for s in replay.info["sites"] for d in s["devices"]),
                    cameras,
                    strict=True,
                )
            )
            watched = [(by_remote[r], r) for r in remote_ids]
            others = [c for r, c in by_remote.items() if r not in set(remote_ids)]
            print(
                f"{watch} cameras watched both ways for {seconds:.0f} s, each "
                f"{replay.info['bitrate_bps'] / 1000:.0f} kbit/s at {replay.info['fps']} fps; "
                f"{total} cameras on {sites} site(s)"
            )
            scenarios = [(load, False) for load in sorted(loads)]
            if recorded_load:
                scenarios.append((recorded_load, True))
            for load, recorded in scenarios:
                background = ViewerGroup(client.session)
                if recorded:
                    for device_id in others[:load]:
                        await client.call(
                            "PATCH", f"/devices/{device_id}", json={"recording": "both"}
                        )
                if load:
                    await background.add(
                        [client.ws_url(f"/devices/{c}/live") for c in others[:load]],
                        client.headers,
                        timeout_s=60.0,
                    )
                found = await measure(client, first_site, watched, seconds=seconds)
                await background.close()
                what = f" and recording {load} of them" if recorded else ""
                print(f"\nthe central relaying {load + watch} streams{what}:")
                print(f"  direct from the site's link   {percentiles(found.direct_ms)}")
                print(f"  through the central           {percentiles(found.central_ms)}")
                print(f"  added by the central          {percentiles(found.added_ms)}")
                if found.central_only:
                    print(f"  ({found.central_only} packets came only through the central)")
        finally:
            await client.close()
            await central.stop()
            await replay.stop()
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watch", type=int, default=10, help="cameras watched both ways")
    parser.add_argument(
        "--load",
        type=int,
        nargs="+",
        default=[0, 200],
        help="other streams the central relays meanwhile",
    )
    parser.add_argument(
        "--recorded-load",
        type=int,
        default=200,
        help="then this many other streams relayed and recorded at the central (0: not)",
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="no load, 10 s")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.load, arguments.recorded_load, arguments.seconds = [0], 0, 10.0
    sys.exit(
        asyncio.run(
            main(
                arguments.watch,
                arguments.load,
                arguments.recorded_load,
                arguments.seconds,
                arguments.sites,
            )
        )
    )
