"""Central benchmark: login and device listing with 1,000 sites against 1 site.

    .venv/bin/python bench/central_listing.py            # about 12 minutes
    .venv/bin/python bench/central_listing.py --quick    # about 3.5 minutes
    .venv/bin/python bench/central_listing.py --quick --scenarios online   # 2 minutes
    .venv/bin/python bench/central_listing.py --quick --rounds 200 --spread-s 200  # to profile

A real central (`siteline central run`, a child process, HTTPS) is started five times:

- baseline: 1 site with 6 devices;
- 1,000 sites with 6 devices each, whose ports are closed: every dial fails at once and
  every connector retries with backoff in the background (the busiest failure);
- the same 1,000 sites, disabled: the same catalog and answers with no connector at work,
  which tells what the number of sites costs from what their connectors cost;
- 1,000 sites whose addresses accept TCP connections and never answer (nothing fails fast;
  not in `--quick`);
- 1,000 sites that are online, each with a live link to the central (`online`, below).

`--scenarios` picks which of the 1,000-site ones run (the baseline always does).

The sites are written into the catalog before the central starts (as if added long ago), so
from its first second every connector dials, fails and retries, and after
`offline_notice_after_s` (30 s) each raises its "site offline" notification. The measuring
client runs in this process: after a warm-up it times, round after round, `POST
/api/v1/auth/login` (scrypt), `GET /api/v1/devices` and `GET /api/v1/sites`, and the paged
forms `?limit=100` of both and `GET /api/v1/devices?limit=6` (the same answer at both
scales: one site's devices), with the rounds spread over the window that includes the
start-up and the offline notices; then, the steady phase, login and the pages alone for 80 s
(quick: 10 s), with no complete list between them; then the central's CPU over a few seconds
with no request.
The 6-device page is timed twice a round: right after login (`(after login)`), and after
the 100-item pages. What a request costs depends on the one before it: right after one that
did a few ms of work (scrypt, or a 100-item page at 1,000 sites) it takes 0.2-0.5 ms longer,
at either scale. Measured with a 1-site and a 1,000-site central side by side, requests
alternated between them: the same page at 1,000 sites is 1.00-1.02 times the 1-site time
alone, after login or after a small page, and 1.16-1.47 times right after the 100-item
pages, which take 3-7 times as long at 1,000 sites as at 1. So the first row compares the
page itself; the second also carries what the pages before it left behind.
It prints median and 95th percentile per request and the ratio of the 1,000-site figure to
the 1-site one, and the central's CPU, of which its main thread's (the event loop's). Each
central's process id is printed when it starts, for a profiler (`py-spy record --pid`).

`online`: 1,000 real sites (bench/online_sites.py: bench/replay_site.py `--shop --idle`, the
agent's own link server with its own certificate, signing key and account per site, 250
sites to a process) listing the same six devices under the same names; their cameras
publish nothing, as an idle chain's do when nobody watches, so the figure is what 1,000 live
links cost, not video. The catalog holds each site at its real port, with its fingerprint
and password, enabled, and its devices exactly as the site lists them, each with
`live_feed` never and `recording` site_only, so the central pulls no stream (the answers
differ from the other scenarios' by the streams' formats and that rule: the complete device
list is 1% smaller, the pages alike). The central dials them all from its start (login on
each site, the link, the device list and the status); the bench waits until `GET /sites`
shows every site online, prints how long that took and the CPU it cost the central and the
sites, and only then starts the rounds (so the first phase is the 45 s after they are all
online, not the central's start). A link at rest costs each side a Ping every 10 s and the
central a status read every 60 s. The sites run at the lowest priority: they stand for
other machines, and on these two cores their logins (scrypt, about 36 ms of CPU each: 36 of
the 41-47 CPU-s the sites use to come online) would otherwise starve the central (its
answers 4-9 s late while the sites came online). So the time to bring them online here is
bound by the sites' scrypt, which in the field each site does on its own CPU. One process
can carry the 1,000 idle sites (measured: online in 33 s, 4% of a core at rest); they are
spread over four because one's ready line (1.6 MB) is longer than bench/json_child.py reads.

Goal: ratio at most 1.2 for login and listing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from central_process import (
    ADMIN_PASSWORD,
    CentralClient,
    CentralFolder,
    CentralProcess,
    free_port,
    make_central,
    open_catalog,
)
from online_sites import SITES_PER_PROCESS, OnlineSites, wait_online, write_online_sites
from process_cpu import CpuWindow

from central.catalog.records import NewDevice, NewSite, StreamInfo
from shared.media import MediaKind

GOAL_RATIO = 1.2
PAGE = 100
SMALL_PAGE = 6
AFTER_LOGIN = "(after login)"
SILENT = "silent"
CLOSED = "closed"
DISABLED = "disabled"
ONLINE = "online"
ONLINE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Scenario:
    label: str
    sites: int
    kind: str  # CLOSED, SILENT, DISABLED (closed ports, and the sites switched off) or ONLINE


@dataclass
class Timings:
    seconds: dict[str, list[float]] = field(default_factory=dict)
    steady: dict[str, list[float]] = field(default_factory=dict)  # pages alone, after start-up
    sizes: dict[str, int] = field(default_factory=dict)
    central_cores: float = 0.0
    loop_cores: float = 0.0  # of which its main thread, the event loop's
    quiet_cores: float = 0.0  # the central's own CPU with no request at all
    quiet_loop_cores: float = 0.0
    sites_cores: float = 0.0  # the site processes' (online sites only), while measured
    quiet_sites_cores: float = 0.0
    states: Counter[str] = field(default_factory=Counter)


def site_addresses(count: int) -> list[str]:
    """Distinct loopback addresses (a site's address and port must be unique)."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]


def site_devices(index: int) -> list[NewDevice]:
    """Six devices, as a small site lists them: two cameras, a microphone, an input, an
    output and a speaker."""
    video = (StreamInfo("hq", MediaKind.VIDEO), StreamInfo("lq", MediaKind.VIDEO))
    return [
        NewDevice("cam-a", "camera", f"Entrance {index}", video),
        NewDevice("cam-b", "camera", f"Yard {index}", video),
        NewDevice("cam-a.mic", "microphone", f"Entrance {index} microphone",
                  (StreamInfo("audio", MediaKind.AUDIO),)),
        NewDevice("door", "input", "Back door", (StreamInfo("state", MediaKind.EVENTS),)),
        NewDevice("siren", "output", "Siren"),
        NewDevice("speaker", "speaker", "Shop floor"),
    ]  # fmt: skip


def write_sites(folder: CentralFolder, count: int, port: int, *, enabled: bool = True) -> None:
    """`count` sites the central dials at 127.0.x.y:`port`, plain HTTP (blocking)."""
    catalog = open_catalog(folder)
    try:
        for index, address in enumerate(site_addresses(count)):
            catalog.add_site(
                NewSite(
                    name=f"Site {index}",
                    dial="central",
                    address=address,
                    port=port,
                    scheme="http",
                    username="u",
                    enabled=enabled,
                ),
                "pw-of-the-site",
                site_devices(index),
            )
    finally:
        catalog.close()


class SilentListeners:
    """Accepts TCP connections on many addresses and never answers."""

    def __init__(self, addresses: list[str], port: int) -> None:
        self._addresses = addresses
        self._port = port
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []
        self.accepted = 0

    async def __aenter__(self) -> SilentListeners:
        self._server = await asyncio.start_server(self._hold, self._addresses, self._port)
        return self

    async def __aexit__(self, *_: object) -> None:
        for writer in self._held:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _hold(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        self.accepted += 1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def timed(call: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    started = time.perf_counter()
    size = await call()
    return time.perf_counter() - started, size


async def measure(
    client: CentralClient,
    central: CentralProcess,
    *,
    rounds: int,
    spread_s: float,
    steady_rounds: int,
    steady_s: float,
    quiet_s: float,
    site_pids: dict[str, int] | None = None,
) -> Timings:
    """`site_pids`: processes of the sites, whose CPU is taken over the same windows."""
    timings = Timings()
    pids = {"central": central.pid, **(site_pids or {})}

    async def login() -> int:
        async with client.session.post(
            client.url("/auth/login"), json={"username": "admin", "password": ADMIN_PASSWORD}
        ) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"login answered {reply.status}: {body[:200]!r}")
            return len(body)

    def get(path: str) -> Callable[[], Awaitable[int]]:
        async def call() -> int:
            async with client.session.get(client.url(path), headers=client.headers) as reply:
                body = await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"GET {path} answered {reply.status}: {body[:200]!r}")
                return len(body)

        return call

    calls = {
        "POST /auth/login": login,
        # The same page right after login (what a client does first), so that what comes
        # before it is the same at both scales; see the module docstring.
        f"GET /devices?limit={SMALL_PAGE} {AFTER_LOGIN}": get(f"/devices?limit={SMALL_PAGE}"),
        "GET /devices": get("/devices"),
        "GET /sites": get("/sites"),
        f"GET /devices?limit={PAGE}": get(f"/devices?limit={PAGE}"),
        f"GET /sites?limit={PAGE}": get(f"/sites?limit={PAGE}"),
        # the same answer at both scales: one site's six devices
        f"GET /devices?limit={SMALL_PAGE}": get(f"/devices?limit={SMALL_PAGE}"),
    }
    for name in [n for n in calls if "limit=" in n]:
        path = name.removeprefix("GET ").removesuffix(f" {AFTER_LOGIN}")
        async with client.session.get(client.url(path), headers=client.headers) as reply:
            if reply.status == 400:  # a central without paging
                print(f"  ({name} is refused by this central: not measured)")
                del calls[name]
    for _ in range(3):  # warm-up: connections, caches, the first token
        for call in calls.values():
            await call()
    window = CpuWindow(pids)
    window.start()
    started = time.monotonic()
    for index in range(rounds):
        for name, call in calls.items():
            seconds, size = await timed(call)
            timings.seconds.setdefault(name, []).append(seconds)
            timings.sizes[name] = size
        next_round = started + (index + 1) * spread_s / rounds
        await asyncio.sleep(max(0.0, next_round - time.monotonic()))
    shares = window.stop()
    timings.central_cores = shares["central"].cores
    timings.loop_cores = shares["central main thread"].cores
    timings.sites_cores = sum(shares[name].cores for name in site_pids or {})
    # The steady state: the start-up's dial waves are over (the connectors retry every
    # 60-75 s from then on) and nobody asks for a complete list, whose answer (megabytes) leaves its
    # garbage and cold caches to the request after it. Login and pages alone, interleaved.
    steady = {name: call for name, call in calls.items() if "limit=" in name or "login" in name}
    started = time.monotonic()
    for index in range(steady_rounds):
        for name, call in steady.items():
            seconds, _size = await timed(call)
            timings.steady.setdefault(name, []).append(seconds)
        next_round = started + (index + 1) * steady_s / steady_rounds
        await asyncio.sleep(max(0.0, next_round - time.monotonic()))
    quiet = CpuWindow(pids)
    quiet.start()
    await asyncio.sleep(quiet_s)
    shares = quiet.stop()
    timings.quiet_cores = shares["central"].cores
    timings.quiet_loop_cores = shares["central main thread"].cores
    timings.quiet_sites_cores = sum(shares[name].cores for name in site_pids or {})
    sites = await client.call("GET", "/sites")
    timings.states = Counter(s["status"]["state"] for s in sites["sites"])
    return timings


async def run_scenario(
    scenario: Scenario,
    directory: Path,
    *,
    rounds: int,
    spread_s: float,
    steady_rounds: int,
    steady_s: float,
    quiet_s: float,
    sites_per_process: int = SITES_PER_PROCESS,
) -> Timings:
    folder = await asyncio.to_thread(make_central, directory)
    listeners = None
    site_pids: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        # Left in reverse: the client, the central, then what stands for the sites.
        if scenario.kind == ONLINE:
            online = await stack.enter_async_context(
                OnlineSites(directory / "sites", scenario.sites, per_process=sites_per_process)
            )
            site_pids = online.pids
            await asyncio.to_thread(write_online_sites, folder, online.sites)
        else:
            port = free_port()
            enabled = scenario.kind != DISABLED
            await asyncio.to_thread(write_sites, folder, scenario.sites, port, enabled=enabled)
            if scenario.kind == SILENT:
                listeners = await stack.enter_async_context(
                    SilentListeners(site_addresses(scenario.sites), port)
                )
        central = await CentralProcess.start(folder)
        started = time.monotonic()
        stack.push_async_callback(central.stop)
        print(f"  {scenario.label}: the central runs as process {central.pid}", flush=True)
        client = CentralClient(central.base_url, central.fingerprint)
        stack.push_async_callback(client.close)
        await client.login()
        if scenario.kind == ONLINE:
            await bring_online(client, central, scenario.sites, site_pids, started=started)
        timings = await measure(
            client,
            central,
            rounds=rounds,
            spread_s=spread_s,
            steady_rounds=steady_rounds,
            steady_s=steady_s,
            quiet_s=quiet_s,
            site_pids=site_pids,
        )
    extra = "" if listeners is None else f", {listeners.accepted} connections accepted"
    if site_pids:
        extra += (
            f"; the {len(site_pids)} site processes used {timings.sites_cores * 100:.0f}% of a "
            f"core while measured, {timings.quiet_sites_cores * 100:.0f}% with no request"
        )
    states = ", ".join(f"{n} {s}" for s, n in sorted(timings.states.items()))
    print(
        f"  {scenario.label}: the central used {timings.central_cores * 100:.0f}% of a core "
        f"(its event loop {timings.loop_cores * 100:.0f}%) while measured, "
        f"{timings.quiet_cores * 100:.0f}% (loop {timings.quiet_loop_cores * 100:.0f}%) in "
        f"the {quiet_s:.0f} s after with no request; sites at the end: {states}{extra}"
    )
    return timings


async def bring_online(
    client: CentralClient,
    central: CentralProcess,
    count: int,
    site_pids: dict[str, int],
    *,
    started: float,
) -> None:
    """Wait until the central has every site online; say how long that took and what it
    cost. Measured all the same if some are not online within `ONLINE_TIMEOUT_S`."""
    window = CpuWindow({"central": central.pid, **site_pids})
    window.start()
    waited = await wait_online(client, count, timeout_s=ONLINE_TIMEOUT_S, started=started)
    shares = window.stop()
    cost = (
        f"the central used {shares['central'].cpu_s:.1f} CPU-s (its event loop "
        f"{shares['central main thread'].cpu_s:.1f}), the sites "
        f"{sum(shares[name].cpu_s for name in site_pids):.1f}"
    )
    if waited.seconds is None:
        states = ", ".join(f"{n} {s}" for s, n in sorted(waited.states.items()))
        print(f"  NOT all online after {ONLINE_TIMEOUT_S:.0f} s: {states}; {cost}")
        for problem, number in waited.problems.most_common(5):
            print(f"    {number} x {problem}")
    else:
        print(
            f"  all {count} sites online {waited.seconds:.1f} s after the central started; {cost}",
            flush=True,
        )


def report(scenarios: list[Scenario], results: list[Timings]) -> None:
    phases: list[tuple[str, Callable[[Timings], dict[str, list[float]]]]] = [
        ("start-up (every request, the first seconds of the central)", lambda t: t.seconds),
        ("steady (login and pages alone, after the start-up)", lambda t: t.steady),
    ]
    for title, phase in phases:
        print(f"\n{title}")
        report_phase(scenarios, [phase(r) for r in results], [r.sizes for r in results])


def report_phase(
    scenarios: list[Scenario], results: list[dict[str, list[float]]], sizes: list[dict[str, int]]
) -> None:
    base = results[0]
    header = f"{'request':<36}" + "".join(f"{s.label:>28}" for s in scenarios)
    print(header + "   (median / p95 ms, answer size)")
    for name in base:
        cells = []
        for result, size in zip(results, sizes, strict=True):
            values = result[name]
            cells.append(
                f"{statistics.median(values) * 1e3:9.2f} /{percentile(values, 0.95) * 1e3:8.2f}"
                f" {size.get(name, 0) / 1024:7.0f}K"
            )
        print(f"{name:<36}" + "".join(f"{c:>28}" for c in cells))
    for scenario, result in zip(scenarios[1:], results[1:], strict=True):
        print(f"ratios, {scenario.label} / {scenarios[0].label} (goal <= {GOAL_RATIO}):")
        for name, values in result.items():
            median_ratio = statistics.median(values) / statistics.median(base[name])
            p95_ratio = percentile(values, 0.95) / percentile(base[name], 0.95)
            verdict = "met" if median_ratio <= GOAL_RATIO else "NOT met"
            print(f"  {name:<36} median {median_ratio:6.2f}   p95 {p95_ratio:6.2f}   {verdict}")
    idle = [r for s, r in zip(scenarios, results, strict=True) if s.kind == DISABLED]
    for scenario, result in zip(scenarios, results, strict=True):
        if not idle or scenario.sites == 1 or scenario.kind == DISABLED:
            continue
        # The same catalog and answers (online: with the stream formats): what is left is what
        # the connectors, or the live links, cost.
        print(f"ratios, {scenario.label} / disabled (the connectors' share):")
        for name, values in result.items():
            median_ratio = statistics.median(values) / statistics.median(idle[0][name])
            p95_ratio = percentile(values, 0.95) / percentile(idle[0][name], 0.95)
            print(f"  {name:<36} median {median_ratio:6.2f}   p95 {p95_ratio:6.2f}")


async def main(
    quick: bool,
    rounds: int | None,
    spread_s: float | None,
    kinds: list[str] | None = None,
    sites_per_process: int = SITES_PER_PROCESS,
) -> int:
    default_rounds, default_spread_s, quiet_s = (20, 20.0, 5.0) if quick else (50, 45.0, 10.0)
    # Default: the steady phase (45-125 s) holds the connectors' first retry at the capped
    # backoff (91-106 s), the wave they repeat every 60-75 s from then on; quick: none.
    steady_rounds, steady_s = (100, 10.0) if quick else (400, 80.0)
    rounds = default_rounds if rounds is None else rounds
    spread_s = default_spread_s if spread_s is None else spread_s
    if kinds is None:
        kinds = [CLOSED, DISABLED, ONLINE] if quick else [CLOSED, DISABLED, SILENT, ONLINE]
    scenarios = [Scenario("1 site", 1, CLOSED)]
    scenarios += [Scenario(f"1,000 sites, {kind}", 1000, kind) for kind in kinds]
    print(
        f"{rounds} rounds over {spread_s:.0f} s after a warm-up of 3, then {steady_rounds} "
        f"rounds of login and pages over {steady_s:.0f} s; each site with 6 devices, "
        "HTTPS on loopback, central in a child process"
    )
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="siteline-listing-bench-") as tmp:
        for index, scenario in enumerate(scenarios):
            results.append(
                await run_scenario(
                    scenario,
                    Path(tmp) / f"central-{index}",
                    rounds=rounds,
                    spread_s=spread_s,
                    steady_rounds=steady_rounds,
                    steady_s=steady_s,
                    quiet_s=quiet_s,
                    sites_per_process=sites_per_process,
                )
            )
    report(scenarios, results)
    print(f"total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no silent sites")
    parser.add_argument("--rounds", type=int, help="rounds of requests (default 50; quick 20)")
    parser.add_argument(
        "--spread-s", type=float, help="seconds the rounds are spread over (default 45; quick 20)"
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=[CLOSED, DISABLED, SILENT, ONLINE],
        help="the 1,000-site scenarios to run after the 1-site baseline (default all; quick: "
        "all but silent)",
    )
    parser.add_argument(
        "--sites-per-process",
        type=int,
        default=SITES_PER_PROCESS,
        help=f"online sites per site process (default {SITES_PER_PROCESS})",
    )
    arguments = parser.parse_args()
    sys.exit(
        asyncio.run(
            main(
                arguments.quick,
                arguments.rounds,
                arguments.spread_s,
                arguments.scenarios,
                arguments.sites_per_process,
            )
        )
    )
