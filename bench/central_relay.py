"""Central benchmark: CPU per relayed reference stream, relayed only and relayed + recorded.

    .venv/bin/python bench/central_relay.py              # about 4.5 minutes
    .venv/bin/python bench/central_relay.py --quick      # about 1.5 minutes
    .venv/bin/python bench/central_relay.py --streams 25 100 250 500 --seconds 30 --sites 5

Three processes besides this one, on loopback, all HTTPS:

- the sites (bench/replay_site.py): the agent's link server with cameras whose reference
  stream (320x180, 5 fps, ~120 kbit/s H.264, 1 s GOP) is replayed from a clip encoded once,
  each GOP sealed as a stored chunk; `--sites` sites share the cameras;
- the central (`siteline central run`), which dials the sites (added through its API);
- the baseline (bench/plain_forward.py): a plain aiohttp WebSocket forward of the same bytes
  from the same sites, TLS in and TLS out, one message per packet.

This process holds one WebSocket viewer per stream, counts the packets each gets (every
packet carries its wall-clock stamp, bench/wall_stamp.py) and reads each process's CPU
(user + system, /proc) over a steady window. Modes, in this order:

1. plain forward: N viewers on the forwarder (the central is idle meanwhile);
2. relay: N viewers on the central's live WebSocket (`live_feed` on demand: one pull per
   device over its site's link, fan-out through the relay, fragmented MP4 to the viewer);
3. relay + record: the same devices set to `recording: "both"` (rule `always`), so the
   central rebuilds and checks each sealed chunk and stores it, and relays it.

For each N it prints each process's CPU, the central's CPU per stream, and the central's CPU
at 500 streams as a share of 2 cores, measured or extrapolated linearly from its idle CPU
and the largest N measured; goal: 500 reference streams at most 50% of 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from central_process import CentralClient, CentralProcess, add_replay_sites, make_central
from json_child import JsonChild
from live_viewers import ViewerGroup
from process_cpu import CpuShare, CpuWindow

from central.config import load_central_config
from shared.clock import SystemClock
from shared.store.chunk_store import ChunkStore

GOAL_STREAMS = 500
GOAL_SHARE_OF_TWO_CORES = 0.5
FIRST_PACKET_TIMEOUT_S = 60.0
PLAIN, RELAY, RECORD = "plain forward", "relay", "relay + record"


@dataclass(frozen=True)
class Measured:
    mode: str
    streams: int
    server: CpuShare  # the forwarder, or the central
    server_loop: CpuShare  # its main thread: the event loop
    site: CpuShare
    viewers: CpuShare
    delivered: float  # packets received / packets sent for the viewed streams
    latencies_ms: list[float]
    chunks_stored: int | None = None

    @property
    def median_latency_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("inf")

    @property
    def keeps_up(self) -> bool:
        return self.delivered >= KEEPS_UP and self.median_latency_ms <= KEEPS_UP_MEDIAN_MS

    def line(self) -> str:
        per_stream_ms = self.server.cores / self.streams * 1e3
        latency = "-"
        if self.latencies_ms:
            ordered = sorted(self.latencies_ms)
            p95 = ordered[round(0.95 * (len(ordered) - 1))]
            latency = f"{statistics.median(ordered):5.1f} / {p95:6.1f}"
        stored = ""
        if self.chunks_stored is not None:
            expected = self.streams * self.server.wall_s  # one chunk a second per stream
            stored = f"  chunks stored {self.chunks_stored} ({self.chunks_stored / expected:.0%})"
        return (
            f"{self.mode:<15}{self.streams:>5}  {self.server.cores * 100:6.1f}%"
            f"  {self.server_loop.cores * 100:6.1f}%"
            f"  {per_stream_ms:6.2f} ms/s  {self.site.cores * 100:6.1f}%"
            f"  {self.viewers.cores * 100:6.1f}%  {self.delivered:7.1%}  {latency:>15}{stored}"
        )


HEADER = (
    f"{'mode':<15}{'N':>5}  {'server':>7}  {'its loop':>7}  {'per stream':>11}  {'sites':>7}"
    f"  {'viewers':>7}  {'packets':>8}  {'latency ms':>15}\n"
    f"{'':<15}{'':>5}  {'(cores)':>7}  {'(thread)':>7}  {'(CPU/s)':>11}  {'':>7}  {'(this)':>7}"
    f"  {'delivered':>8}  {'median / p95':>15}"
)
KEEPS_UP = 0.99  # a server that delivers less of the packets is saturated
KEEPS_UP_MEDIAN_MS = 100.0  # so is one whose packets wait this long (the plain forward: ~5)


class CentralStoreCount:
    """Chunks in the central's store, read from this process (LMDB readers may share it)."""

    def __init__(self, config_path: Path) -> None:
        config = load_central_config(config_path)
        self._path = config.storage.media_path
        self._quota = config.storage.quota_bytes

    def chunks(self) -> int:
        store = ChunkStore.open(
            self._path,
            quota_bytes=self._quota,
            hold_budget_bytes=0,
            clock=SystemClock(),
            readonly=True,
        )
        try:
            return sum(s.chunk_count for s in store.streams())
        finally:
            store.close()


async def measure(
    mode: str,
    streams: int,
    group: ViewerGroup,
    pids: dict[str, int],
    *,
    fps: int,
    seconds: float,
    settle_s: float,
    store: CentralStoreCount | None = None,
) -> Measured:
    await asyncio.sleep(settle_s)
    window = CpuWindow(pids)
    stored_before = None if store is None else await asyncio.to_thread(store.chunks)
    packets_before = group.packets()
    marks = group.marks()
    # Marks the window for whoever profiles the server meanwhile (py-spy on its pid).
    print(f"  window: {mode}, {streams} streams, {seconds:.0f} s from now", flush=True)
    window.start()
    await asyncio.sleep(seconds)
    shares = window.stop()
    packets = group.packets() - packets_before
    stored = None
    if store is not None and stored_before is not None:
        stored = await asyncio.to_thread(store.chunks) - stored_before
    wall_s = shares["server"].wall_s
    return Measured(
        mode,
        streams,
        shares["server"],
        shares["server main thread"],
        shares["site"],
        shares["viewers"],
        packets / (streams * fps * wall_s),
        group.latencies_since(marks),
        stored,
    )


def report(
    results: list[Measured], idle_cores: float, fps: int, bitrate_bps: float, size: str
) -> None:
    print()
    print(HEADER)
    for result in results:
        print(result.line())
    print()
    print(
        f"central idle (sites online, nothing relayed): {idle_cores * 100:.1f}% of a core; "
        f"each stream {size}, {bitrate_bps / 1000:.0f} kbit/s at {fps} fps"
    )
    for mode in (PLAIN, RELAY, RECORD):
        runs = sorted((r for r in results if r.mode == mode), key=lambda r: r.streams)
        if not runs:
            continue
        smallest, largest = runs[0], runs[-1]
        marginal = None
        if largest.streams > smallest.streams:
            marginal = (largest.server.cores - smallest.server.cores) / (
                largest.streams - smallest.streams
            )
        if largest.streams >= GOAL_STREAMS:
            at_goal = largest.server.cores * GOAL_STREAMS / largest.streams
            how = f"measured at {largest.streams}"
        elif marginal is not None:
            at_goal = largest.server.cores + marginal * (GOAL_STREAMS - largest.streams)
            how = f"extrapolated from {smallest.streams}-{largest.streams} streams"
        else:
            at_goal = largest.server.cores * GOAL_STREAMS / largest.streams
            how = f"{largest.streams} streams scaled"
        share = at_goal / 2
        verdict = ""
        behind = [r for r in runs if not r.keeps_up]
        if mode != PLAIN:
            met = share <= GOAL_SHARE_OF_TWO_CORES and not behind
            verdict = f"; goal <= {GOAL_SHARE_OF_TWO_CORES:.0%}: {'met' if met else 'NOT met'}"
        if behind:
            first = behind[0]
            verdict += (
                f" (saturated at {first.streams} streams: {first.delivered:.1%} of the packets "
                f"delivered, median latency {first.median_latency_ms:.0f} ms, the process at "
                f"{first.server.cores:.0%} of a core, its event loop {first.server_loop.cores:.0%})"
            )
        slope = "" if marginal is None else f", each added stream {marginal * 1e3:.2f} ms/s"
        print(
            f"{mode:<15} {largest.server.cores / largest.streams * 1e3:5.2f} ms CPU per "
            f"stream-second at {largest.streams}{slope}; {GOAL_STREAMS} streams: "
            f"{at_goal * 100:5.1f}% of a core = {share:5.1%} of 2 cores ({how}){verdict}"
        )
    plain = {r.streams: r for r in results if r.mode == PLAIN}
    for run in results:
        base = plain.get(run.streams)
        if run.mode != PLAIN and base is not None and base.server.cores > 0:
            print(
                f"{run.mode} / plain forward at {run.streams} streams: "
                f"{run.server.cores / base.server.cores:.2f}"
            )


async def main(
    counts: list[int],
    seconds: float,
    sites: int,
    settle_s: float,
    profile: Path | None,
    *,
    lq: str | None = None,
    spread_gops: bool = False,
) -> int:
    counts = sorted(set(counts))
    results: list[Measured] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="siteline-relay-bench-") as tmp:
        directory = Path(tmp)
        replay = await JsonChild.start(
            "replay_site.py",
            str(directory / "sites"),
            "--devices",
            str(max(counts)),
            "--sites",
            str(sites),
            *(["--lq", lq] if lq else []),
            *(["--spread-gops"] if spread_gops else []),
            log=directory / "sites.log",
        )
        fps = int(replay.info["fps"])
        bitrate = float(replay.info["bitrate_bps"])
        folder = await asyncio.to_thread(make_central, directory / "central")
        central = await CentralProcess.start(folder, profile=profile)
        client = CentralClient(central.base_url, central.fingerprint)
        forwarder: JsonChild | None = None
        me = {"viewers": os.getpid()}
        try:
            await client.login()
            cameras = await add_replay_sites(client, replay.info["sites"])
            camera_sites = {}
            for index, site in enumerate(replay.info["sites"]):
                for device in site["devices"]:
                    camera_sites[device] = index
            remote = sorted(camera_sites)
            print(
                f"{max(counts)} cameras on {sites} site(s), central and sites ready "
                f"in {time.monotonic() - started:.0f} s; windows of {seconds:.0f} s; "
                f"central pid {central.pid}",
                flush=True,
            )
            idle = CpuWindow({"central": central.pid})
            idle.start()
            await asyncio.sleep(min(seconds, 10.0))
            idle_cores = idle.stop()["central"].cores

            # 1. the baseline: a plain forward of the same bytes
            forwarder = await JsonChild.start(
                "plain_forward.py",
                str(directory),
                json.dumps({"sites": replay.info["sites"]}),
                log=directory / "forward.log",
            )
            pins = aiohttp.Fingerprint(
                bytes.fromhex(str(forwarder.info["fingerprint"]).replace(":", ""))
            )
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=pins, limit=0)
            ) as plain_session:
                group = ViewerGroup(plain_session)
                port = forwarder.info["port"]
                pids = {"server": forwarder.pid, "site": replay.pid, **me}
                for count in counts:
                    urls = [
                        f"wss://127.0.0.1:{port}/forward/{camera_sites[d]}/{d}"
                        for d in remote[len(group.viewers) : count]
                    ]
                    await group.add(urls, {}, timeout_s=FIRST_PACKET_TIMEOUT_S)
                    results.append(
                        await measure(
                            PLAIN, count, group, pids, fps=fps, seconds=seconds, settle_s=settle_s
                        )
                    )
                    print(results[-1].line(), flush=True)
                await group.close()
            await forwarder.stop()
            forwarder = None

            # 2. the central's relay, and 3. relay + recording at the central
            pids = {"server": central.pid, "site": replay.pid, **me}
            store = CentralStoreCount(folder.config_path)
            for mode in (RELAY, RECORD):
                group = ViewerGroup(client.session)
                for count in counts:
                    added = cameras[len(group.viewers) : count]
                    if mode == RECORD:
                        for device_id in added:
                            await client.call(
                                "PATCH", f"/devices/{device_id}", json={"recording": "both"}
                            )
                    urls = [client.ws_url(f"/devices/{d}/live") for d in added]
                    await group.add(urls, client.headers, timeout_s=FIRST_PACKET_TIMEOUT_S)
                    results.append(
                        await measure(
                            mode,
                            count,
                            group,
                            pids,
                            fps=fps,
                            seconds=seconds,
                            settle_s=settle_s,
                            store=store if mode == RECORD else None,
                        )
                    )
                    print(results[-1].line(), flush=True)
                await group.close()
            log = (folder.directory / "central.log").read_text(errors="replace")
            misses = log.count("missed chunk")
            if misses:
                print(f"(the central's log names {misses} missed chunks)")
        finally:
            await client.close()
            if forwarder is not None:
                await forwarder.stop()
            await central.stop()
            await replay.stop()
        report(results, idle_cores, fps, bitrate, str(replay.info["size"]))
    print(f"total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 250, 500])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window")
    parser.add_argument("--settle", type=float, default=4.0, help="before each window")
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="25 and 100 streams, 8 s windows")
    parser.add_argument(
        "--profile-central", type=Path, help="run the central under cProfile, stats to this file"
    )
    parser.add_argument(
        "--lq",
        help="the replayed reference stream, WIDTHxHEIGHT@FPS:KBPS (default 320x180@5:120; "
        "the agent's default LQ is 640x360@8:250)",
    )
    parser.add_argument(
        "--spread-gops",
        action="store_true",
        help="the cameras' keyframes spread over the GOP, as real cameras' are (default: all "
        "in the same frame, the worst case)",
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.streams, arguments.seconds, arguments.settle = [25, 100], 8.0, 2.0
    sys.exit(
        asyncio.run(
            main(
                arguments.streams,
                arguments.seconds,
                arguments.sites,
                arguments.settle,
                arguments.profile_central,
                lq=arguments.lq,
                spread_gops=arguments.spread_gops,
            )
        )
    )
