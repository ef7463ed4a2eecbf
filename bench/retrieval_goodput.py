"""Retrieval over a shaped line: goodput without and with cuts, the cap's accuracy, chunks
re-sent per cut, and live latency while retrieval fills the cap.

    .venv/bin/python bench/retrieval_goodput.py --quick    # about 1.5 minutes
    .venv/bin/python bench/retrieval_goodput.py            # about 5 minutes
    options: --mbit 20 --devices 8 --parallel 8 --job-seconds 60 --cut-every 30 --cut-seconds 2
             --cap-mbit 8 --cap-seconds 30 --live-seconds 20 --sample-s 0.1

A site (bench/retrieval_site.py: the agent's link server over a store filled with signed
512 KiB HQ chunks of `--devices` cameras, the first camera also live at 25 fps) runs inside
a network namespace whose uplink is shaped with `tc tbf` at `--mbit` (bench/shaped_link.py);
it records every frame its link sends (bench/sent_log.py). A real central (`siteline central
run`, a child process, bench/central_process.py) adds the site over the API, sets its
`parallel_devices`, and runs six retrieval jobs over the API, each of every camera for its
own span. This side reads the line's receive counter every `--sample-s` throughout
(bench/counter_samples.py). The jobs, in order:

1. plain: a span sized to take about `--job-seconds` at the shaped rate; the line stays up
   (goal: goodput >= 0.93 of the shaped rate);
2. cuts: the same size; the line is taken down (`ip link set down`: no reset, packets
   vanish) for `--cut-seconds` every `--cut-every` seconds, the first `--cut-every` seconds
   after the job's first stored bytes are seen (so the cuts land in the transfer however long
   the job takes to begin it) (goal: >= 0.85 with cuts every 30 s). TCP rides out such a
   cut: the link survives it. Also counted: the chunks the site sent more than once, each
   against the cut before it (bench/chunk_resends.py; goal: at most one per stream per cut),
   the link sessions that ended, and the segments TCP retransmitted in the namespace;
2b. cuts that end the link: the same size and cuts, but each begins by resetting every TCP
   connection of the site (`ss -K` in its namespace: a router restarting, a mobile line
   changing its address), so the link ends and the central must notice, dial again
   (backoff), and resume the job where it stood (same goals);
3. capped: the site's `max_bandwidth_bps` set to `--cap-mbit`, a span sized to take about
   `--cap-seconds` at the cap: its first and fullest 1 s windows, its 10 s windows and its
   whole transfer over the cap, on the line (raw, and corrected for the TCP/IP, TLS and
   WebSocket overhead the cap does not count) and as the site handed its frames over
   (bench/cap_accuracy.py; goal, on the corrected line: every 1 s window at most 5% over the
   cap, every 10 s window within 2% of it);
4. capped + live: a viewer watches the live camera through the central
   (bench/live_watch.py) for `--live-seconds` with no retrieval running, then while a second
   capped job of the same size runs: each packet's latency from the site's live relay to the
   viewer, median and p95, without and with the retrieval (no goal set);
5. uncapped + live: the cap lifted, a job of the same size with the viewer still watching:
   the same latency while retrieval fills the line itself (and the token bucket's queue).

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

The exit code is 1 when a goal is not met (the cuts goal is judged only for cuts every 30 s),
0 otherwise. Needs root and iproute2 (namespaces, veth, tc); elsewhere it stops saying so
(exit code 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cap_accuracy import CapReading, CapView, cap_reading
from central_process import CentralClient, CentralProcess, make_central
from chunk_resends import ResendReading, count_resends
from counter_samples import CounterSampler, CounterSamples
from json_child import READY_TIMEOUT_S, JsonChild
from live_watch import LatencyFigures, LiveWatch, latencies_between
from process_cpu import CpuWindow
from retrieval_site import PACKETS_PER_CHUNK
from sent_log import SiteSends
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
CHUNK_PAYLOAD_BYTES = CHUNK_KIB * 1024 // PACKETS_PER_CHUNK * PACKETS_PER_CHUNK
STANDARD_CUT_EVERY_S = 30.0
CUT_LINE = "line"  # the line goes down, nothing is reset: the link rides it out
CUT_RESET = "reset"  # the site's connections are reset, then the line goes down
FINAL_STATES = ("completed", "failed", "stopped")
CAP_WINDOW_GOAL = 1.05  # every 1 s window at most 5% over the cap
CAP_TEN_S_GOAL = 0.02  # every 10 s window within 2% of it
RESENDS_PER_STREAM_PER_CUT_GOAL = 1
LIVE_SETTLE_S = 2.0  # a new viewer gets the cached GOP at once: let it pass
LINE_OVERHEAD_SPREAD = 0.004  # line bytes / payload of the same job, run to run (measured)


@dataclass(frozen=True)
class Plan:
    mbit: float
    devices: int
    parallel: int
    job_seconds: float
    baseline_seconds: float
    cut_every_s: float
    cut_seconds: float
    cap_mbit: float
    cap_seconds: float
    live_seconds: float
    sample_s: float
    central_log_level: str = "WARNING"

    @property
    def shaped_bytes_per_s(self) -> float:
        return self.mbit * 1e6 / 8  # tc's mbit is 10^6 bits

    @property
    def tc_rate(self) -> str:
        return f"{round(self.mbit * 1000)}kbit"

    @property
    def cap_bps(self) -> int:
        return round(self.cap_mbit * 1e6)

    def chunks_per_device(self, payload_bytes: int) -> int:
        """Chunks of each device in the plain or cuts job's span, for about `job_seconds`
        at the shaped rate."""
        total = self.shaped_bytes_per_s * self.job_seconds
        return max(1, math.ceil(total / self.devices / payload_bytes))

    def capped_chunks_per_device(self, payload_bytes: int) -> int:
        """Chunks of each device in a capped job's span, for about `cap_seconds` at the
        cap."""
        total = self.cap_bps / 8 * self.cap_seconds
        return max(1, math.ceil(total / self.devices / payload_bytes))


@dataclass(frozen=True)
class Span:
    """A job's recordings: seqs [first_seq, first_seq + chunks) of every camera."""

    first_seq: int
    chunks: int


@dataclass(frozen=True)
class JobReading:
    """One job, measured. Instants are wall-clock nanoseconds: the job's record gives
    created, started and finished; this side's polls (every `POLL_S`) give when stored bytes
    were first seen and when all of them were."""

    label: str
    span: Span
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
    tcp_retransmits: int  # segments TCP in the namespace sent again
    cut_starts_ns: tuple[int, ...]  # monotonic
    began_mono_ns: int  # this side's monotonic clock as the job was created
    ended_mono_ns: int  # and as it was seen ended
    central_cores: float
    site_cores: float

    @property
    def cuts(self) -> int:
        return len(self.cut_starts_ns)

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


async def start_site(
    link: ShapedLink, directory: Path, plan: Plan, *, chunks: int, sent_log: Path
) -> SiteFacts:
    """The site inside the namespace, its store filled with `chunks` per device, recording
    what its link sends into `sent_log`."""
    log = directory / "site.log"
    argv = link.run_inside(
        [sys.executable, str(BENCH / "retrieval_site.py"), str(directory / "site"),
         "--bind", link.site_address, "--devices", str(plan.devices), "--chunks", str(chunks),
         "--chunk-kib", str(CHUNK_KIB), "--sent-log", str(sent_log)]
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


async def cameras(client: CentralClient, site_id: str) -> dict[str, str]:
    """The central's id of each camera of the site, by the site's id, in that order."""
    devices = (await client.call("GET", f"/devices?site={site_id}"))["devices"]
    found = sorted(
        (d for d in devices if d["kind"] == "camera"), key=lambda d: d["remote_device_id"]
    )
    return {d["remote_device_id"]: d["id"] for d in found}


async def cut_periodically(
    link: ShapedLink, every_s: float, down_s: float, made: list[int], *, reset: bool
) -> None:
    """Take the line down for `down_s` every `every_s` from now, until cancelled, adding
    the monotonic instant of each cut to `made` (the line is up again whenever it
    returns). With `reset`, each cut first resets the site's TCP connections, which ends
    the link."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(started + (len(made) + 1) * every_s - time.monotonic())
        made.append(time.monotonic_ns())
        if reset:
            link.reset_connections()
        link.cut()
        try:
            await asyncio.sleep(down_s)
        finally:
            link.heal()


async def run_job(
    client: CentralClient,
    link: ShapedLink,
    pids: dict[str, int],
    *,
    label: str,
    devices: list[str],
    span: Span,
    site_info: dict[str, Any],
    plan: Plan,
    cuts: str | None,
) -> JobReading:
    """Run one retrieval job of `devices` over `span` to its end, measured. With `cuts`
    (CUT_LINE or CUT_RESET, see `cut_periodically`), the first comes `cut_every_s` after
    the first stored bytes are seen (so the cuts land in the transfer however long the job
    takes to start it)."""
    chunk_ns = int(site_info["chunk_s"]) * NS_PER_S
    start_ns = int(site_info["first_start_ns"]) + span.first_seq * chunk_ns
    end_ns = start_ns + span.chunks * chunk_ns
    expected_chunks = len(devices) * span.chunks
    wire_before = link.received_bytes()
    drops_before = link.shaper_drops()
    retransmits_before = link.site_tcp_retransmits()
    cpu = CpuWindow(pids)
    cpu.start()
    began_mono_ns = time.monotonic_ns()
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
    cutter: asyncio.Task[None] | None = None
    cut_starts: list[int] = []
    first_seen: tuple[int, int] | None = None
    all_seen_ns: int | None = None
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
                        if cuts is not None:
                            cutter = asyncio.create_task(
                                cut_periodically(
                                    link,
                                    plan.cut_every_s,
                                    plan.cut_seconds,
                                    cut_starts,
                                    reset=cuts == CUT_RESET,
                                )
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
            cutter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cutter
    ended_mono_ns = time.monotonic_ns()
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
        span=span,
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
        tcp_retransmits=link.site_tcp_retransmits() - retransmits_before,
        cut_starts_ns=tuple(cut_starts),
        began_mono_ns=began_mono_ns,
        ended_mono_ns=ended_mono_ns,
        central_cores=used["central"].cores,
        site_cores=used["site"].cores,
    )


@dataclass(frozen=True)
class LatencySpan:
    what: str
    seconds: float
    figures: LatencyFigures


@dataclass(frozen=True)
class LiveReading:
    """The live camera's latency at the central's viewer: with no retrieval running, then
    over each watched job's transfer (its first transfer frame to its last)."""

    device: str
    fps: int
    bitrate_bps: float
    spans: list[LatencySpan]


@dataclass(frozen=True)
class Findings:
    baselines: list[BulkReading]
    goodput_jobs: list[JobReading]  # plain, cuts, cuts that end the link
    capped_jobs: list[JobReading]  # capped, capped with live
    uncapped_live: JobReading
    resends: list[ResendReading]  # of the goodput jobs
    caps: list[CapReading]  # of the capped jobs
    live: LiveReading
    links_opened: int  # over the whole run, the site's record
    links_never_ended: int  # their handlers had not returned when the site stopped
    sent: SiteSends  # what the site handed to its links


def _mbit(bytes_per_s: float) -> str:
    return f"{bytes_per_s * 8 / 1e6:6.2f} Mbit/s"


def _print_goodput(plan: Plan, found: Findings) -> None:
    shaped = plan.shaped_bytes_per_s
    best = max(b.bytes_per_s for b in found.baselines)
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
    for index, baseline in enumerate(found.baselines):
        rows.append(
            (
                f"baseline TCP stream ({'before' if index == 0 else 'after'})",
                baseline.bytes_per_s,
                baseline.wire_bytes / baseline.seconds,
                baseline.wire_bytes / baseline.payload_bytes,
            )
        )
    for job in found.goodput_jobs:
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
    for job in [*found.goodput_jobs, *found.capped_jobs, found.uncapped_live]:
        print(
            f"{job.label}: {job.payload_bytes / 2**20:.1f} MiB in {job.chunks} chunks, "
            f"{job.seconds:.1f} s created to finished: "
            f"{(job.started_ns - job.created_ns) / NS_PER_S:.1f} s to started, "
            f"{job.before_data_s:.1f} s to the first bytes, "
            f"{(job.all_seen_ns - job.first_seen_ns) / NS_PER_S:.1f} s of data, "
            f"{job.after_data_s:.1f} s from the last bytes to finished; {job.cuts} cuts, "
            f"{job.shaper_drops} packets dropped by the shaper, {job.tcp_retransmits} TCP "
            f"segments retransmitted; CPU: central {job.central_cores * 100:.1f}%, "
            f"site {job.site_cores * 100:.1f}% of one core"
        )


def _ten_s(view: CapView) -> str:
    if view.lowest_10s is None or view.highest_10s is None:
        return "(< 10 s)"
    return f"{view.lowest_10s:.3f}-{view.highest_10s:.3f}"


def _print_caps(plan: Plan, found: Findings) -> None:
    print()
    print(
        f"cap {_mbit(plan.cap_bps / 8)} (max_bandwidth_bps {plan.cap_bps}), "
        f"parallel_devices {plan.parallel}; ratios to the cap, line sampled every "
        f"{plan.sample_s:g} s"
    )
    print(
        f"{'job: view':<42} {'first 1 s':>9} {'fullest 1 s':>11} {'10 s windows':>13} {'whole':>7}"
    )
    for job, cap in zip(found.capped_jobs, found.caps, strict=True):
        views = (
            ("line, raw", cap.line_raw),
            (f"line, corrected (k {cap.overhead:.4f})", cap.line_corrected),
            ("site, frames handed over", cap.site),
        )
        for name, view in views:
            print(
                f"{job.label + ': ' + name:<42} {view.first_1s:9.3f} {view.fullest_1s:11.3f} "
                f"{_ten_s(view):>13} {view.whole:7.3f}"
            )
    print(
        "(k: line bytes / link frame bytes the site sent over the transfer; site: its transfer "
        "frames only; the line of capped + live carries the live stream too, which the cap "
        "does not count)"
    )


def _recovery(sent: SiteSends, job: JobReading) -> str:
    """For each cut of `job`: when the site saw a new link open, and when it sent the span's
    next chunk head, in seconds after the cut began."""
    parts = []
    for index, cut_ns in enumerate(job.cut_starts_ns):
        until_ns = (
            job.cut_starts_ns[index + 1]
            if index + 1 < len(job.cut_starts_ns)
            else job.ended_mono_ns
        )
        opened = sent.sessions_opened_between(cut_ns, until_ns)
        heads = [c.at_ns for c in sent.chunks if cut_ns <= c.at_ns <= until_ns]
        link = (
            f"new link +{(opened[0].opened_ns - cut_ns) / NS_PER_S:.1f} s"
            if opened
            else "same link"
        )
        chunk = f"next chunk +{(heads[0] - cut_ns) / NS_PER_S:.1f} s" if heads else "no chunk"
        parts.append(f"{link}, {chunk}")
    return "; ".join(parts)


def _print_resends(found: Findings) -> None:
    print()
    for job, resends in zip(found.goodput_jobs, found.resends, strict=True):
        print(
            f"{job.label}: the site sent {resends.sends} chunks of the span "
            f"({resends.distinct} different), {resends.resent} more than once "
            f"({resends.resent_payload_bytes / 2**20:.2f} MiB of payload); {resends.cuts} "
            f"cuts, at most {resends.most_per_stream_per_cut} re-sent per stream per cut, "
            f"{resends.before_any_cut} before any cut; {resends.sessions_opened} new links; "
            f"{job.tcp_retransmits} TCP segments retransmitted"
        )
        if job.cuts:
            print(f"  after each cut: {_recovery(found.sent, job)}")
    plain, *with_cuts = found.goodput_jobs
    for cuts in with_cuts:
        if not cuts.cuts:
            continue
        # The jobs carry the same payload: what the cuts job's line carried beyond the
        # plain job's is what crossed it twice (chunks, TCP segments) and the new links.
        extra = cuts.wire_bytes - plain.wire_bytes * cuts.payload_bytes / plain.payload_bytes
        noise = LINE_OVERHEAD_SPREAD * plain.wire_bytes
        print(
            f"{cuts.label}: line bytes minus the plain job's {extra / 2**20:+.2f} MiB, "
            f"{extra / cuts.cuts / CHUNK_PAYLOAD_BYTES:+.2f} chunks' worth per cut (give or "
            f"take {noise / 2**20:.2f} MiB: the counter's share of headers varies by about "
            f"{LINE_OVERHEAD_SPREAD:.1%} between runs)"
        )
    print(
        f"links the central opened to the site: {found.links_opened}; the site had not "
        f"ended {found.links_never_ended} of them when it stopped (after the central had)"
    )


def _print_live(found: Findings) -> None:
    live = found.live
    print()
    print(
        f"live {live.device} through the central ({live.fps} fps, "
        f"{live.bitrate_bps / 1000:.0f} kbit/s), from the site's relay to the viewer:"
    )
    for span in live.spans:
        figures = span.figures
        print(
            f"  {span.what:<36} median {figures.median_ms:6.1f} ms, p95 "
            f"{figures.p95_ms:6.1f} ms, max {figures.max_ms:6.1f} ms ({figures.packets} "
            f"packets in {span.seconds:.1f} s)"
        )


def report(plan: Plan, found: Findings) -> bool:
    """Print the tables and the verdicts; whether every goal was met."""
    _print_goodput(plan, found)
    _print_caps(plan, found)
    _print_resends(found)
    _print_live(found)
    print()
    shaped = plan.shaped_bytes_per_s
    met = True
    goals = {"plain": PLAIN_GOAL, "cuts": CUTS_GOAL}
    for job in found.goodput_jobs:
        goal = goals[job.label.split()[0]]
        ratio = job.bytes_per_s / shaped
        ok = ratio >= goal
        verdict = "met" if ok else f"NOT met, short by {goal - ratio:.3f}"
        if job.cuts and plan.cut_every_s != STANDARD_CUT_EVERY_S:
            verdict = f"not judged: cut every {plan.cut_every_s:g} s, the goal is for 30 s"
        else:
            met = met and ok
        print(
            f"{job.label}: goodput / shaped rate {ratio:.3f} (goal >= {goal}): {verdict}; "
            f"while data flowed {job.transfer_bytes_per_s / shaped:.3f}"
        )
    cap = found.caps[0].line_corrected
    fullest_ok = cap.fullest_1s <= CAP_WINDOW_GOAL
    ten_ok = (
        cap.lowest_10s is not None
        and cap.highest_10s is not None
        and abs(cap.lowest_10s - 1) <= CAP_TEN_S_GOAL
        and abs(cap.highest_10s - 1) <= CAP_TEN_S_GOAL
    )
    met = met and fullest_ok and ten_ok
    print(
        f"cap (line, corrected): fullest 1 s window {cap.fullest_1s:.3f} of the cap, the first "
        f"{cap.first_1s:.3f} (goal <= {CAP_WINDOW_GOAL}): {'met' if fullest_ok else 'NOT met'}; "
        f"10 s windows {_ten_s(cap)} (goal within {1 - CAP_TEN_S_GOAL:.2f}-"
        f"{1 + CAP_TEN_S_GOAL:.2f}): {'met' if ten_ok else 'NOT met'}; whole {cap.whole:.3f}"
    )
    for job, resends in list(zip(found.goodput_jobs, found.resends, strict=True))[1:]:
        resends_ok = resends.meets(RESENDS_PER_STREAM_PER_CUT_GOAL)
        met = met and resends_ok
        print(
            f"{job.label}: re-sent per stream per cut: at most "
            f"{resends.most_per_stream_per_cut} over {resends.cuts} cuts, "
            f"{resends.before_any_cut} before any cut (goal <= "
            f"{RESENDS_PER_STREAM_PER_CUT_GOAL}): {'met' if resends_ok else 'NOT met'}"
        )
    quiet, loaded = found.live.spans[0].figures, found.live.spans[1].figures
    print(
        f"live latency: median {quiet.median_ms:.1f} ms, p95 {quiet.p95_ms:.1f} ms without "
        f"retrieval; median {loaded.median_ms:.1f} ms, p95 {loaded.p95_ms:.1f} ms while it "
        "filled the cap (no goal set)"
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


@dataclass(frozen=True)
class _Run:
    """What the jobs phase brought, before the site's record is read."""

    goodput_jobs: list[JobReading]
    capped_jobs: list[JobReading]
    uncapped_live: JobReading
    quiet_window_ns: tuple[int, int]  # wall clock
    live_arrivals: list[tuple[int, int]]  # (stamp, arrival), wall clock
    live_device: str
    wall_minus_mono_ns: int  # this side's wall clock minus its monotonic one


async def _measure(plan: Plan, link: ShapedLink, directory: Path) -> int:
    print(f"baseline: one TCP stream for {plan.baseline_seconds:g} s ...", flush=True)
    baselines = [await bulk_tcp_rate(link, plan.baseline_seconds)]
    print("filling the site's store and starting the central ...", flush=True)
    plain_chunks = plan.chunks_per_device(CHUNK_PAYLOAD_BYTES)
    capped_chunks = plan.capped_chunks_per_device(CHUNK_PAYLOAD_BYTES)
    spans = [
        Span(0, plain_chunks),
        Span(plain_chunks, plain_chunks),
        Span(2 * plain_chunks, plain_chunks),
        Span(3 * plain_chunks, capped_chunks),
        Span(3 * plain_chunks + capped_chunks, capped_chunks),
        Span(3 * plain_chunks + 2 * capped_chunks, capped_chunks),
    ]
    sent_log = directory / "sent.json"
    site = await start_site(
        link, directory, plan, chunks=3 * plain_chunks + 3 * capped_chunks, sent_log=sent_log
    )
    sampler = CounterSampler(link.received_bytes, plan.sample_s)
    sampler.start()
    central: CentralProcess | None = None
    client: CentralClient | None = None
    try:
        folder = await asyncio.to_thread(make_central, directory / "central")
        central = await CentralProcess.start(folder, log_level=plan.central_log_level)
        client = CentralClient(central.base_url, central.fingerprint)
        await client.login()
        site_id = await add_site(client, link, site, plan)
        pids = {"central": central.pid, "site": site.child.pid}
        run = await _run_jobs(plan, client, link, site, site_id=site_id, pids=pids, spans=spans)
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
        line = await sampler.stop()
    sent = await asyncio.to_thread(SiteSends.load, sent_log)
    print(f"baseline again: one TCP stream for {plan.baseline_seconds:g} s ...", flush=True)
    baselines.append(await bulk_tcp_rate(link, plan.baseline_seconds))
    findings = _findings(plan, site, run, baselines=baselines, line=line, sent=sent)
    return 0 if report(plan, findings) else 1


async def _run_jobs(
    plan: Plan,
    client: CentralClient,
    link: ShapedLink,
    site: SiteFacts,
    *,
    site_id: str,
    pids: dict[str, int],
    spans: list[Span],
) -> _Run:
    """The six jobs and the live viewer's spans; see the module docstring."""
    by_remote = await cameras(client, site_id)
    if len(by_remote) != plan.devices:
        raise RuntimeError(f"the central lists {len(by_remote)} cameras, not {plan.devices}")
    devices = list(by_remote.values())
    live_device = site.info["live_device"]
    if live_device is None:
        raise RuntimeError("the site has no live camera")

    async def job(label: str, span: Span, *, cuts: str | None = None) -> JobReading:
        print(f"job {label}: {plan.devices} x {span.chunks} chunks ...", flush=True)
        return await run_job(
            client,
            link,
            pids,
            label=label,
            devices=devices,
            span=span,
            site_info=site.info,
            plan=plan,
            cuts=cuts,
        )

    plain = await job("plain", spans[0])
    every = f"{plan.cut_seconds:g} s every {plan.cut_every_s:g} s"
    cuts = await job(f"cuts ({every}, line down)", spans[1], cuts=CUT_LINE)
    resets = await job(f"cuts ({every}, link reset)", spans[2], cuts=CUT_RESET)
    await client.call(
        "PATCH",
        f"/sites/{site_id}",
        json={"retrieval": {"max_bandwidth_bps": plan.cap_bps, "parallel_devices": plan.parallel}},
    )
    capped = await job("capped", spans[3])
    watch = LiveWatch(client, by_remote[live_device])
    print(f"live: watching {live_device} through the central ...", flush=True)
    await watch.open()
    try:
        await asyncio.sleep(LIVE_SETTLE_S)
        quiet_start_ns = time.time_ns()
        await asyncio.sleep(plan.live_seconds)
        quiet_end_ns = time.time_ns()
        with_live = await job("capped + live", spans[4])
        await client.call(
            "PATCH", f"/sites/{site_id}", json={"retrieval": {"max_bandwidth_bps": None}}
        )
        uncapped = await job("uncapped + live", spans[5])
        arrivals = watch.arrivals()
    finally:
        await watch.close()
    return _Run(
        goodput_jobs=[plain, cuts, resets],
        capped_jobs=[capped, with_live],
        uncapped_live=uncapped,
        quiet_window_ns=(quiet_start_ns, quiet_end_ns),
        live_arrivals=arrivals,
        live_device=live_device,
        wall_minus_mono_ns=time.time_ns() - time.monotonic_ns(),
    )


def _findings(
    plan: Plan,
    site: SiteFacts,
    run: _Run,
    *,
    baselines: list[BulkReading],
    line: CounterSamples,
    sent: SiteSends,
) -> Findings:
    devices = set(site.info["devices"])
    resends = [
        count_resends(
            sent,
            devices=devices,
            first_seq=job.span.first_seq,
            chunks=job.span.chunks,
            job_start_ns=job.began_mono_ns,
            job_end_ns=job.ended_mono_ns,
            cut_starts_ns=list(job.cut_starts_ns),
        )
        for job in run.goodput_jobs
    ]
    caps = [
        cap_reading(plan.cap_bps, line, sent, job.began_mono_ns, job.ended_mono_ns)
        for job in run.capped_jobs
    ]
    fps = int(site.info["live_fps"])
    quiet_s = (run.quiet_window_ns[1] - run.quiet_window_ns[0]) / NS_PER_S
    quiet_ms = latencies_between(run.live_arrivals, *run.quiet_window_ns)
    quiet = LatencyFigures.of(quiet_ms)
    spans = [LatencySpan("no retrieval running", quiet_s, quiet)]
    for what, job in (
        ("while the capped job transferred", run.capped_jobs[1]),
        ("while an uncapped job transferred", run.uncapped_live),
    ):
        frames = sent.transfer_sends(job.began_mono_ns, job.ended_mono_ns)
        start_ns = frames[0][0] + run.wall_minus_mono_ns
        end_ns = frames[-1][0] + run.wall_minus_mono_ns
        seconds = (end_ns - start_ns) / NS_PER_S
        figures = LatencyFigures.of(latencies_between(run.live_arrivals, start_ns, end_ns))
        spans.append(LatencySpan(what, seconds, figures))
    live = LiveReading(
        device=run.live_device,
        fps=fps,
        bitrate_bps=float(site.info["live_bitrate_bps"]),
        spans=spans,
    )
    return Findings(
        baselines,
        run.goodput_jobs,
        run.capped_jobs,
        run.uncapped_live,
        resends,
        caps,
        live,
        links_opened=len(sent.sessions),
        links_never_ended=len(sent.sessions_never_closed()),
        sent=sent,
    )


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
        cap_mbit=arguments.cap_mbit,
        cap_seconds=arguments.cap_seconds or (12.0 if quick else 30.0),
        live_seconds=arguments.live_seconds or (8.0 if quick else 20.0),
        sample_s=arguments.sample_s,
        central_log_level=arguments.central_log_level,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short spans (about 1.5 minutes)")
    parser.add_argument("--mbit", type=float, default=20.0, help="the shaped rate, Mbit/s")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=8, help="the site's parallel_devices")
    parser.add_argument("--job-seconds", type=float, help="a job's planned time (60; quick 15)")
    parser.add_argument("--baseline-seconds", type=float, help="the TCP stream's (20; quick 6)")
    parser.add_argument("--cut-every", type=float, help="seconds between cuts (30; quick 8)")
    parser.add_argument("--cut-seconds", type=float, default=2.0, help="each cut's length")
    parser.add_argument("--cap-mbit", type=float, default=8.0, help="the retrieval cap, Mbit/s")
    parser.add_argument("--cap-seconds", type=float, help="a capped job's time (30; quick 12)")
    parser.add_argument(
        "--live-seconds", type=float, help="live watched without retrieval (20; quick 8)"
    )
    parser.add_argument("--sample-s", type=float, default=0.1, help="line counter's interval")
    parser.add_argument("--central-log-level", default="WARNING", help="e.g. INFO, DEBUG")
    sys.exit(asyncio.run(main(plan_from(parser.parse_args()))))
