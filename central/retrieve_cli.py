"""`siteline retrieve`: have the central retrieve a span of recordings from a site.

The central queues the job and runs it whenever the site's link is up, within the site's
retrieval window and bandwidth cap; the command returns once the job is made (printing its
id), or with `--wait` follows it with a progress line until it ends. Interrupting `--wait`
leaves the job running at the central. Exit 0 when the job is made (or, with `--wait`,
completed); 1 when the central refused the request or the job failed or was stopped; 2 for
usage and connection problems (as every client command).

The same command manages the jobs: `--list` prints one line per job (the newest 100, or
`--state` ones), `--show JOB` one job's progress (with `--wait`, followed to its end), and
`--stop JOB` stops one (what it brought stays; an operator restarts it by asking for the
span again, which goes on after what the central holds).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import quote

from central.client_cli import (
    CONNECTION_HELP,
    EXIT_OK,
    EXIT_REFUSED,
    ClientSession,
    add_central_options,
    described,
    run_client_command,
    usage_failure,
)
from shared.sizes import format_size

ENDED = ("completed", "failed", "stopped")
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
    what = parser.add_argument_group("a new retrieval (--device, --start and --end are needed)")
    what.add_argument(
        "--device",
        action="append",
        metavar="ID",
        help="the central's device id; more than once for several devices of one site",
    )
    what.add_argument("--start", metavar="ISO8601", help="e.g. 2024-05-01T12:00:00Z")
    what.add_argument("--end", metavar="ISO8601", help="after --start")
    what.add_argument("--quality", choices=("hq", "lq"), default="hq", help="default: hq")
    what.add_argument(
        "--wait", action="store_true", help="follow the job until it ends, with a progress line"
    )
    jobs = parser.add_argument_group("the jobs there are (instead of a new retrieval)")
    action = jobs.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="one line per job, newest first")
    action.add_argument("--show", metavar="JOB", help="one job's progress (--wait: follow it)")
    action.add_argument("--stop", metavar="JOB", help="stop a job; what it brought stays")
    jobs.add_argument(
        "--state",
        metavar="STATE[,STATE]",
        help="with --list: only jobs in these states (pending, running, completed, ...)",
    )
    add_central_options(parser)
    parser.set_defaults(handler=_retrieve)


def _retrieve(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem is not None:
        return usage_failure(problem)

    async def command(session: ClientSession) -> int:
        return await _run(session, args)

    return run_client_command(args, command)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, found before contacting the central."""
    if args.state is not None and not args.list:
        return "--state goes with --list"
    for option in ("show", "stop"):
        job_id = getattr(args, option)
        if job_id is not None and not _is_job_id(job_id):
            return f"--{option} {job_id!r}: not a retrieval job id"
    if args.list or args.show is not None or args.stop is not None:
        return None
    missing = [f"--{name}" for name in ("device", "start", "end") if not getattr(args, name)]
    if missing:
        return f"a new retrieval needs {', '.join(missing)} (or give --list, --show or --stop)"
    return None


async def _run(session: ClientSession, args: argparse.Namespace) -> int:
    if args.list:
        return await _list(session, args.state)
    if args.show is not None:
        job = await session.client.call("GET", f"/retrievals/{args.show}")
        if args.wait and job["state"] not in ENDED:
            job = await _follow(session, job["id"])
        else:
            print(_job_line(job), file=session.out)
            print("  " + progress_line(job), file=session.out)
        return EXIT_OK
    if args.stop is not None:
        job = await session.client.call("POST", f"/retrievals/{args.stop}/stop")
        chunks = sum(int(p["chunks"]) for p in job["progress"])
        print(f"retrieval {job['id']} {job['state']}: {chunks} chunks stay", file=session.out)
        return EXIT_OK
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


async def _list(session: ClientSession, states: str | None) -> int:
    query = "" if states is None else f"?state={quote(states, safe=',')}"
    answer = await session.client.call("GET", f"/retrievals{query}")
    jobs: list[dict[str, Any]] = answer["retrievals"]
    for job in jobs:
        print(_job_line(job), file=session.out)
        print("  " + progress_line(job), file=session.out)
    if not jobs:
        print("no retrievals", file=session.out)
    elif answer.get("next"):
        print("(more: GET /api/v1/retrievals?after=" + answer["next"] + ")", file=session.out)
    return EXIT_OK


def _job_line(job: Mapping[str, Any]) -> str:
    return (
        f"{job['id']}  {job['state']:<9}  {job['origin']:<9}  {job['start']} to {job['end']} "
        f"({job['quality']})  {', '.join(job['device_ids'])}"
    )


def _is_job_id(text: str) -> bool:
    """Whether a job id given on the command line can be put in a path as it is."""
    return bool(text) and all(c.isalnum() or c in "-_" for c in text)


async def _follow(session: ClientSession, job_id: str) -> dict[str, Any]:
    terminal = session.out.isatty()
    polls = 0
    last_state = None
    while True:
        job: dict[str, Any] = await session.client.call("GET", f"/retrievals/{job_id}")
        ended = job["state"] in ENDED
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
        parts.append(_rate(sum(rates)))
    if etas:
        parts.append(f"{_duration(max(etas))} left")
    state = job["state"]
    if job.get("reason") and state in ("pending", "failed"):
        state += f" ({job['reason']})"
    parts.append(state)
    return "  ".join(parts)


def _rate(bits_per_s: int) -> str:
    """A rate in Mbit/s from 1 Mbit/s up, in kbit/s below (a low cap keeps its digits)."""
    if bits_per_s >= 1_000_000:
        return f"{bits_per_s / 1e6:.2f} Mbit/s"
    return f"{bits_per_s / 1e3:.0f} kbit/s"


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
