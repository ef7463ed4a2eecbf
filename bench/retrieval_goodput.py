"""Retrieval goodput over a shaped line: what a real central stores per second of a
retrieval job, as a fraction of the line's rate, without and with cuts.

    .venv/bin/python bench/retrieval_goodput.py --quick    # about 1 minute (*)
    .venv/bin/python bench/retrieval_goodput.py            # about 3 minutes (*)
    options: --mbit 20 --devices 8 --parallel 8 --job-seconds 60 --cut-every 30 --cut-seconds 2
    (*) plus about 2 x 80 s per job while the site answers holds late (docs/benchmarks.md)

A site (bench/retrieval_site.py: the agent's link server over a store filled with signed
512 KiB HQ chunks of `--devices` cameras) runs inside a network namespace whose uplink is
shaped with `tc tbf` at `--mbit` (bench/shaped_link.py). A real central (`siteline central
run`, a child process, bench/central_process.py) adds the site over the API, sets its
`parallel_devices`, and runs two retrieval jobs over the API, each of every camera for a span
sized to take about `--job-seconds` at the shaped rate:

- plain: the line stays up (goal: goodput >= 0.93 of the shaped rate);
- cuts: the line is taken down (`ip link set down`: no reset, packets vanish) for
  `--cut-seconds` every `--cut-every` seconds, the first `--cut-every` seconds after the
  job's first stored bytes are seen (so the cuts land in the transfer however long the job
  takes to begin it) (goal: >= 0.85).

Goodput = payload bytes the job stored (its progress `bytes`, summed over devices) / the
job's wall time (created to finished, from the job's record), divided by the shaped rate in
bytes per second. Every job must bring every chunk of its span (checked). Also reported:

- the rate while data flowed: from the first poll (every `POLL_S`) that saw bytes stored
  to the first that saw all of them, and the job's time before and after that (placing its
  holds at the site and starting its streams; releasing the holds);
- the frames that crossed the line during the job (this end's receive counter), as a share
  of the shaped rate and over the payload. The counter sees one set of headers per GSO
  packet (up to the bucket's 16 KB), while the token bucket charges the headers of every
  segment, so these understate the TCP/IP headers; over the baseline's they show the link
  protocol's own overhead;
- the CPU of the central and the site over the job.

Baseline, measured in the same run through the same shaped line, before and after the jobs:
one plain TCP stream of zeros from the namespace for `--baseline-seconds`
(bench/zero_sender.py), the most a TCP transfer gets through the line; goodput is also given
as a fraction of it.

Needs root and iproute2 (namespaces, veth, tc); elsewhere it stops saying so (exit code 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central_process import CentralClient, CentralProcess, make_central
from json_child import READY_TIMEOUT_S, JsonChild
from process_cpu import CpuWindow
from retrieval_site import PACKETS_PER_CHUNK
from shaped_link import (
    BulkReading,
    NamespaceUnavailable,
    ShapedLink,
    bulk_tcp_rate,
    shaped_link,
    unavailable_reason,
)

from shared.api_input import format_instant, parse_instant
from shared.clock import NS_PER_S

BENCH = Path(__file__).resolve().parent
PLAIN_GOAL = 0.93
CUTS_GOAL = 0.85
ONLINE_TIMEOUT_S = 60.0
POLL_S = 0.2
JOB_TIMEOUT_FACTOR = 4.0  # a job taking this many times its planned time (plus the slack)
JOB_TIMEOUT_SLACK_S = 400.0  # has failed
CHUNK_KIB = 512
STANDARD_CUT_EVERY_S = 30.0
FINAL_STATES = ("completed", "failed", "stopped")


@dataclass(frozen=True)
class Plan:
    mbit: float
    devices: int
    parallel: int
    job_seconds: float
    baseline_seconds: float
    cut_every_s: float
    cut_seconds: float
    central_log_level: str = "WARNING"

    @property
    def shaped_bytes_per_s(self) -> float:
        return self.mbit * 1e6 / 8  # tc's mbit is 10^6 bits

    @property
    def tc_rate(self) -> str:
        return f"{round(self.mbit * 1000)}kbit"

    def chunks_per_device(self, payload_bytes: int) -> int:
        """Chunks of each device in one job's span, for about `job_seconds` at the rate."""
        total = self.shaped_bytes_per_s * self.job_seconds
        return max(1, math.ceil(total / self.devices / payload_bytes))


@dataclass(frozen=True)
class JobReading:
    """One job, measured. Instants are wall-clock nanoseconds: the job's record gives
    created, started and finished; this side's polls (every `POLL_S`) give when stored bytes
    were first seen and when all of them were."""

    label: str
    payload_bytes: int
    chunks: int
    created_ns: int
    started_ns: int
    first_seen_ns: int  # the first poll that saw bytes stored
    first_seen_bytes: int  # what it saw
    all_seen_ns: int  # the first poll that saw every byte stored
    finished_ns: int
    wire_bytes: int
    shaper_drops: int
    cuts: int
    central_cores: float
    site_cores: float

    @property
    def seconds(self) -> float:
        """The job's wall time, created to finished (the goal's measure)."""
        return (self.finished_ns - self.created_ns) / NS_PER_S

    @property
    def bytes_per_s(self) -> float:
        return self.payload_bytes / self.seconds

    @property
    def transfer_bytes_per_s(self) -> float:
        """The rate while data flowed: between the first poll that saw bytes stored and the
        first that saw them all."""
        span_s = (self.all_seen_ns - self.first_seen_ns) / NS_PER_S
        moved = self.payload_bytes - self.first_seen_bytes
        return moved / span_s if span_s > 0 else 0.0

    @property
    def before_data_s(self) -> float:
        """Created to the first stored bytes seen (holds placed at the site, streams
        started)."""
        return (self.first_seen_ns - self.created_ns) / NS_PER_S

    @property
    def after_data_s(self) -> float:
        """Every byte stored to finished (holds released at the site)."""
        return max(0, self.finished_ns - self.all_seen_ns) / NS_PER_S


@dataclass(frozen=True)
class SiteFacts:
    child: JsonChild
    info: dict[str, Any]


async def start_site(link: ShapedLink, directory: Path, plan: Plan) -> SiteFacts:
    """The site inside the namespace, its store filled with two jobs' spans per device."""
    chunk_payload = CHUNK_KIB * 1024 // PACKETS_PER_CHUNK * PACKETS_PER_CHUNK
    chunks = 2 * plan.chunks_per_device(chunk_payload)
    log = directory / "site.log"
    argv = link.run_inside(
        [sys.executable, str(BENCH / "retrieval_site.py"), str(directory / "site"),
         "--bind", link.site_address, "--devices", str(plan.devices), "--chunks", str(chunks),
         "--chunk-kib", str(CHUNK_KIB)]
    )  # fmt: skip
    with log.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=BENCH.parent, stdout=asyncio.subprocess.PIPE, stderr=log_file
        )
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            assert process.stdout is not None
            line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"the site ended before it was ready; see {log}")
        info: dict[str, Any] = json.loads(line)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return SiteFacts(JsonChild(process, info), info)


async def add_site(client: CentralClient, link: ShapedLink, site: SiteFacts, plan: Plan) -> str:
    """Add the site over the API, set its parallel devices, wait until it is online."""
    info = site.info
    added = await client.call(
        "POST",
        "/sites",
        json={
            "name": info["site_id"],
            "address": link.site_address,
            "port": info["port"],
            "username": info["username"],
            "password": info["password"],
            "fingerprint": info["fingerprint"],
        },
    )
    site_id: str = added["id"]
    await client.call(
        "PATCH", f"/sites/{site_id}", json={"retrieval": {"parallel_devices": plan.parallel}}
    )
    async with asyncio.timeout(ONLINE_TIMEOUT_S):
        while True:
            site_record = await client.call("GET", f"/sites/{site_id}")
            if site_record["status"]["state"] == "online":
                break
            await asyncio.sleep(POLL_S)
    return site_id


async def device_ids(client: CentralClient, site_id: str) -> list[str]:
    devices = (await client.call("GET", f"/devices?site={site_id}"))["devices"]
    cameras = sorted(
        (d for d in devices if d["kind"] == "camera"), key=lambda d: d["remote_device_id"]
    )
    return [d["id"] for d in cameras]


async def cut_periodically(link: ShapedLink, every_s: float, down_s: float) -> int:
    """Take the line down for `down_s` every `every_s` from now, until cancelled; then the
    number of cuts made (the line is up again whenever it returns)."""
    cuts = 0
    started = time.monotonic()
    try:
        while True:
            await asyncio.sleep(started + (cuts + 1) * every_s - time.monotonic())
            link.cut()
            cuts += 1
            try:
                await asyncio.sleep(down_s)
            finally:
                link.heal()
    except asyncio.CancelledError:
        return cuts


async def run_job(
    client: CentralClient,
    link: ShapedLink,
    pids: dict[str, int],
    *,
    label: str,
    devices: list[str],
    start_ns: int,
    end_ns: int,
    expected_chunks: int,
    plan: Plan,
    with_cuts: bool,
) -> JobReading:
    """Run one retrieval job of `devices` over [start_ns, end_ns) to its end, measured.
    With cuts, the first comes `cut_every_s` after the first stored bytes are seen (so the
    cuts land in the transfer however long the job takes to start it)."""
    wire_before = link.received_bytes()
    drops_before = link.shaper_drops()
    cpu = CpuWindow(pids)
    cpu.start()
    job = await client.call(
        "POST",
        "/retrievals",
        json={
            "device_ids": devices,
            "start": format_instant(start_ns),
            "end": format_instant(end_ns),
            "quality": "hq",
        },
    )
    expected_bytes: int | None = None
    cutter: asyncio.Task[int] | None = None
    first_seen: tuple[int, int] | None = None
    all_seen_ns: int | None = None
    cuts = 0
    try:
        try:
            async with asyncio.timeout(plan.job_seconds * JOB_TIMEOUT_FACTOR + JOB_TIMEOUT_SLACK_S):
                while job["state"] not in FINAL_STATES:
                    await asyncio.sleep(POLL_S)
                    job = await client.call("GET", f"/retrievals/{job['id']}")
                    seen_ns = time.time_ns()
                    stored = sum(p["bytes"] for p in job["progress"])
                    if first_seen is None and stored > 0:
                        first_seen = (seen_ns, stored)
                        if with_cuts:
                            cutter = asyncio.create_task(
                                cut_periodically(link, plan.cut_every_s, plan.cut_seconds)
                            )
                    if all_seen_ns is None and sum(p["chunks"] for p in job["progress"]) >= (
                        expected_chunks
                    ):
                        all_seen_ns = seen_ns
                        expected_bytes = stored
                        if cutter is not None:
                            cutter.cancel()
        except TimeoutError:
            raise RuntimeError(
                f"the {label} job did not end in time: {json.dumps(job, indent=1)}"
            ) from None
    finally:
        if cutter is not None:
            if not cutter.cancelling():
                cutter.cancel()
            cuts = await cutter
    used = cpu.stop()
    if job["state"] != "completed":
        raise RuntimeError(f"the {label} job ended {job['state']}: {job['reason']}")
    chunks = sum(p["chunks"] for p in job["progress"])
    payload = sum(p["bytes"] for p in job["progress"])
    if chunks != expected_chunks or first_seen is None or all_seen_ns is None:
        raise RuntimeError(f"the {label} job stored {chunks} chunks, not {expected_chunks}")
    if expected_bytes != payload:
        raise RuntimeError(f"the {label} job's bytes went from {expected_bytes} to {payload}")
    return JobReading(
        label=label,
        payload_bytes=payload,
        chunks=chunks,
        created_ns=parse_instant("created", job["created"]),
        started_ns=parse_instant("started", job["started"]),
        first_seen_ns=first_seen[0],
        first_seen_bytes=first_seen[1],
        all_seen_ns=all_seen_ns,
        finished_ns=parse_instant("finished", job["finished"]),
        wire_bytes=link.received_bytes() - wire_before,
        shaper_drops=link.shaper_drops() - drops_before,
        cuts=cuts,
        central_cores=used["central"].cores,
        site_cores=used["site"].cores,
    )


def _mbit(bytes_per_s: float) -> str:
    return f"{bytes_per_s * 8 / 1e6:6.2f} Mbit/s"


def report(plan: Plan, baselines: list[BulkReading], jobs: list[JobReading]) -> bool:
    """Print the table and the verdicts; whether every goal was met."""
    shaped = plan.shaped_bytes_per_s
    best = max(b.bytes_per_s for b in baselines)
    print()
    print(
        f"shaped rate {_mbit(shaped)} (tc tbf), {plan.devices} devices, "
        f"parallel_devices {plan.parallel}"
    )
    print(
        f"{'what':<40} {'payload rate':>14} {'/ shaped':>9} {'/ baseline':>11} "
        f"{'wire / shaped':>14} {'wire / payload':>15}"
    )
    rows: list[tuple[str, float, float, float]] = []
    for index, baseline in enumerate(baselines):
        rows.append(
            (
                f"baseline TCP stream ({'before' if index == 0 else 'after'})",
                baseline.bytes_per_s,
                baseline.wire_bytes / baseline.seconds,
                baseline.wire_bytes / baseline.payload_bytes,
            )
        )
    for job in jobs:
        rows.append(
            (
                f"{job.label}: whole job",
                job.bytes_per_s,
                job.wire_bytes / job.seconds,
                job.wire_bytes / job.payload_bytes,
            )
        )
        rows.append((f"{job.label}: while data flowed", job.transfer_bytes_per_s, 0.0, 0.0))
    for what, rate, wire_rate, overhead in rows:
        wire = f"{wire_rate / shaped:14.3f} {overhead:15.4f}" if wire_rate else ""
        print(f"{what:<40} {_mbit(rate):>14} {rate / shaped:9.3f} {rate / best:11.3f} {wire}")
    print()
    for job in jobs:
        print(
            f"{job.label}: {job.payload_bytes / 2**20:.1f} MiB in {job.chunks} chunks, "
            f"{job.seconds:.1f} s created to finished: "
            f"{(job.started_ns - job.created_ns) / NS_PER_S:.1f} s to started, "
            f"{job.before_data_s:.1f} s to the first bytes, "
            f"{(job.all_seen_ns - job.first_seen_ns) / NS_PER_S:.1f} s of data, "
            f"{job.after_data_s:.1f} s from the last bytes to finished; {job.cuts} cuts, "
            f"{job.shaper_drops} packets dropped by the shaper; CPU: central "
            f"{job.central_cores * 100:.1f}%, site {job.site_cores * 100:.1f}% of one core"
        )
    print()
    met = True
    goals = {"plain": PLAIN_GOAL, "cuts": CUTS_GOAL}
    for job in jobs:
        goal = goals[job.label.split()[0]]
        ratio = job.bytes_per_s / shaped
        ok = ratio >= goal
        met = met and ok
        verdict = "met" if ok else f"NOT met, short by {goal - ratio:.3f}"
        note = ""
        if job.cuts and plan.cut_every_s != STANDARD_CUT_EVERY_S:
            note = f" (cut every {plan.cut_every_s:g} s; the goal is for 30 s)"
        print(
            f"{job.label}: goodput / shaped rate {ratio:.3f} (goal >= {goal}): {verdict}{note}; "
            f"while data flowed {job.transfer_bytes_per_s / shaped:.3f}"
        )
    return met


async def main(plan: Plan) -> int:
    reason = unavailable_reason()
    if reason is not None:
        print(f"retrieval_goodput: cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="siteline-retrieval-bench-") as tmp:
        directory = Path(tmp)
        try:
            with shaped_link(plan.tc_rate) as link:
                return await _measure(plan, link, directory)
        except NamespaceUnavailable as exc:
            print(f"retrieval_goodput: cannot run: {exc}", file=sys.stderr)
            return 2


async def _measure(plan: Plan, link: ShapedLink, directory: Path) -> int:
    print(f"baseline: one TCP stream for {plan.baseline_seconds:g} s ...", flush=True)
    baselines = [await bulk_tcp_rate(link, plan.baseline_seconds)]
    print("filling the site's store and starting the central ...", flush=True)
    site = await start_site(link, directory, plan)
    central: CentralProcess | None = None
    client: CentralClient | None = None
    try:
        folder = await asyncio.to_thread(make_central, directory / "central")
        central = await CentralProcess.start(folder, log_level=plan.central_log_level)
        client = CentralClient(central.base_url, central.fingerprint)
        await client.login()
        site_id = await add_site(client, link, site, plan)
        devices = await device_ids(client, site_id)
        if len(devices) != plan.devices:
            raise RuntimeError(f"the central lists {len(devices)} cameras, not {plan.devices}")
        span_chunks = int(site.info["chunks"]) // 2
        span_ns = span_chunks * int(site.info["chunk_s"]) * NS_PER_S
        first_ns = int(site.info["first_start_ns"])
        pids = {"central": central.pid, "site": site.child.pid}
        jobs = []
        for index, (label, with_cuts) in enumerate(
            (
                ("plain", False),
                (f"cuts ({plan.cut_seconds:g} s every {plan.cut_every_s:g} s)", True),
            )
        ):
            print(f"job {label}: {plan.devices} x {span_chunks} chunks ...", flush=True)
            jobs.append(
                await run_job(
                    client,
                    link,
                    pids,
                    label=label,
                    devices=devices,
                    start_ns=first_ns + index * span_ns,
                    end_ns=first_ns + (index + 1) * span_ns,
                    expected_chunks=plan.devices * span_chunks,
                    plan=plan,
                    with_cuts=with_cuts,
                )
            )
    except BaseException:
        print(f"failed; the central's log: {directory / 'central' / 'central.log'}, "
              f"the site's: {directory / 'site.log'}", file=sys.stderr)  # fmt: skip
        for log in (directory / "central" / "central.log", directory / "site.log"):
            if log.exists():
                print(f"--- last lines of {log.name}:", file=sys.stderr)
                lines = [n for n in log.read_text().splitlines() if "aiohttp.access" not in n]
                print("\n".join(lines[-40:]), file=sys.stderr)
        raise
    finally:
        if client is not None:
            await client.close()
        if central is not None:
            await central.stop()
        await site.child.stop()
    print(f"baseline again: one TCP stream for {plan.baseline_seconds:g} s ...", flush=True)
    baselines.append(await bulk_tcp_rate(link, plan.baseline_seconds))
    return 0 if report(plan, baselines, jobs) else 1


def plan_from(arguments: argparse.Namespace) -> Plan:
    quick = arguments.quick
    return Plan(
        mbit=arguments.mbit,
        devices=arguments.devices,
        parallel=arguments.parallel,
        job_seconds=arguments.job_seconds or (15.0 if quick else 60.0),
        baseline_seconds=arguments.baseline_seconds or (6.0 if quick else 20.0),
        cut_every_s=arguments.cut_every or (8.0 if quick else 30.0),
        cut_seconds=arguments.cut_seconds,
        central_log_level=arguments.central_log_level,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short spans (about a minute)")
    parser.add_argument("--mbit", type=float, default=20.0, help="the shaped rate, Mbit/s")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=8, help="the site's parallel_devices")
    parser.add_argument("--job-seconds", type=float, help="a job's planned time (60; quick 15)")
    parser.add_argument("--baseline-seconds", type=float, help="the TCP stream's (20; quick 6)")
    parser.add_argument("--cut-every", type=float, help="seconds between cuts (30; quick 8)")
    parser.add_argument("--cut-seconds", type=float, default=2.0, help="each cut's length")
    parser.add_argument("--central-log-level", default="WARNING", help="e.g. INFO, DEBUG")
    sys.exit(asyncio.run(main(plan_from(parser.parse_args()))))
