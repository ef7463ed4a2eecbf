"""`siteline retrieve`: have the central retrieve a span of recordings from a site.

The central queues the job and runs it whenever the site's link is up, within the site's
retrieval window and bandwidth cap; the command returns once the job is made (printing its
id), or with `--wait` follows it with a progress line until it ends. Interrupting `--wait`
leaves the job running at the central. Exit 0 when the job is made (or, with `--wait`,
completed); 1 when the central refused the request or the job failed or was stopped; 2 for
usage and connection problems (as every client command).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from central.client_cli import (
    CONNECTION_HELP,
    EXIT_OK,
    EXIT_REFUSED,
    ClientSession,
    add_central_options,
    described,
    run_client_command,
)
from shared.sizes import format_size

POLL_S = 1.0
PLAIN_REPORT_EVERY = 10  # polls between progress lines when the output is not a terminal
BAR_WIDTH = 24


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `siteline retrieve` to `parser`."""
    parser.description = described(
        "Have the central retrieve the recordings of one or more devices of one site over a "
        "time span (high quality by default). The job waits for the site's link, its "
        "retrieval window and a free slot, survives restarts and cuts, and stores every "
        "chunk verified, once. With --wait, follow it to the end with a progress line."
    )
    parser.epilog = CONNECTION_HELP + (
        "\nexit codes: 0 the job was made (with --wait: it completed); 1 the central "
        "refused it, or it failed or was stopped; 2 usage or connection problems\n"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    what = parser.add_argument_group("the retrieval")
    what.add_argument(
        "--device",
        required=True,
        action="append",
        metavar="ID",
        help="the central's device id; more than once for several devices of one site",
    )
    what.add_argument("--start", required=True, metavar="ISO8601", help="e.g. 2024-05-01T12:00:00Z")
    what.add_argument("--end", required=True, metavar="ISO8601", help="after --start")
    what.add_argument("--quality", choices=("hq", "lq"), default="hq", help="default: hq")
    what.add_argument(
        "--wait", action="store_true", help="follow the job until it ends, with a progress line"
    )
    add_central_options(parser)
    parser.set_defaults(handler=_retrieve)


def _retrieve(args: argparse.Namespace) -> int:
    async def command(session: ClientSession) -> int:
        return await _run(session, args)

    return run_client_command(args, command)


async def _run(session: ClientSession, args: argparse.Namespace) -> int:
    job = await session.client.call(
        "POST",
        "/retrievals",
        body={
            "device_ids": list(args.device),
            "start": args.start,
            "end": args.end,
            "quality": args.quality,
        },
    )
    print(
        f"retrieval {job['id']}: {', '.join(job['device_ids'])} from {job['start']} to "
        f"{job['end']} ({job['quality']}), {job['state']}",
        file=session.out,
    )
    if not args.wait:
        print(f"its progress: GET /api/v1/retrievals/{job['id']}", file=session.out)
        return EXIT_OK
    try:
        job = await _follow(session, job["id"])
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            f"\nstopped following; retrieval {job['id']} goes on at the central",
            file=session.err,
        )
        raise
    return EXIT_OK if job["state"] == "completed" else EXIT_REFUSED


async def _follow(session: ClientSession, job_id: str) -> dict[str, Any]:
    terminal = session.out.isatty()
    polls = 0
    last_state = None
    while True:
        job: dict[str, Any] = await session.client.call("GET", f"/retrievals/{job_id}")
        ended = job["state"] in ("completed", "failed", "stopped")
        if terminal:
            print("\r" + progress_line(job), end="", file=session.out, flush=True)
        elif ended or job["state"] != last_state or polls % PLAIN_REPORT_EVERY == 0:
            print(progress_line(job), file=session.out, flush=True)
        last_state = job["state"]
        polls += 1
        if ended:
            if terminal:
                print(file=session.out)
            _report_end(job, session.out, session.err)
            return job
        await asyncio.sleep(POLL_S)


def progress_line(job: Mapping[str, Any]) -> str:
    """One line: a bar of the recording time covered, bytes, rate, time left, state."""
    progress: Sequence[Mapping[str, Any]] = job["progress"]
    fraction = sum(float(p["fraction"]) for p in progress) / max(1, len(progress))
    done = round(fraction * BAR_WIDTH)
    total_bytes = sum(int(p["bytes"]) for p in progress)
    rates = [int(p["rate_bps"]) for p in progress if p["rate_bps"] is not None]
    etas = [float(p["eta_s"]) for p in progress if p["eta_s"] is not None]
    parts = [
        f"[{'#' * done}{'.' * (BAR_WIDTH - done)}] {fraction * 100:5.1f}%",
        format_size(total_bytes),
    ]
    if rates:
        parts.append(f"{sum(rates) / 1e6:.2f} Mbit/s")
    if etas:
        parts.append(f"{_duration(max(etas))} left")
    state = job["state"]
    if job.get("reason") and state in ("pending", "failed"):
        state += f" ({job['reason']})"
    parts.append(state)
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _report_end(job: Mapping[str, Any], out: TextIO, err: TextIO) -> None:
    chunks = sum(int(p["chunks"]) for p in job["progress"])
    if job["state"] == "completed":
        print(f"retrieval {job['id']} completed: {chunks} chunks", file=out)
        return
    print(f"siteline: retrieval {job['id']} {job['state']}: {job.get('reason') or ''}", file=err)
    for progress in job["progress"]:
        if progress.get("failure"):
            print(f"  {progress['device_id']}: {progress['failure']}", file=err)
