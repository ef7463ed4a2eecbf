"""The retrieval issue's acceptance scenario, played end to end by an operator.

"From the CLI and API an operator retrieves the HQ of several cameras for a span over a
capped, windowed link that is cut repeatedly, sees progress, stops and restarts jobs, and
finds every requested chunk in the central store exactly once and verified."

A real recording site of three cameras sits behind a TCP proxy that cuts the link
(`proxied_run`); the central runs in this process. The operator caps the site's retrieval
and sets a daily window that excludes the current time; a job made over the API waits,
pending, saying it waits for the window, with its holds already placed at the site. The
window is then moved over the current time and the job runs, its chunks and bytes rising,
through repeated cuts. The operator stops it mid-way (its holds at the site are released,
nothing more arrives), then "restarts" it as an operator does: a new job over the same span
and cameras, made and followed to its end with `siteline retrieve --wait` in a child
process, while the link is cut again.

The verdict is over both jobs together: every chunk of the span of every camera at the
central exactly once, verified (the run checker: nothing lost, duplicated or unexpected, no
chain break), each with its receipt; the delivery history shows each chunk delivered once
over both jobs, apart from at most one re-send per stream per cut, so the second job did not
fetch again what the first one stored; the holds are gone. Windows are chosen relative to
the site's clock now, by the real clock; a window may cross midnight, which the engine
supports (central/retrieval/retrieval_window.py).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.api_input import format_instant, parse_instant
from shared.sizes import format_size
from tests.agent.site_config import small_camera, write_site_config
from tests.agent_api.api_site import DEVICES_TOML
from tests.central.central_fixture import ADMIN_PASSWORD
from tests.central.cli_process import CommandResult, central_env, siteline
from tests.central.retrieval_faults.fault_run import (
    HQ,
    WAIT_S,
    Span,
    chunks_so_far,
    create_job,
    ended,
    job_until,
    recorded_span,
    set_cap,
    site_until,
)
from tests.central.retrieval_faults.proxied_run import ProxiedRun, proxied_run
from tests.retrieval_checker import (
    ChunkFact,
    Cut,
    Delivery,
    RetrievalJob,
    check_retrieval,
    chunks_in_store,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICES = ["cam-a", "cam-b", "cam-c"]
SPAN_CHUNKS = 7
"""Chunks of the first camera in the span; the others have about as many."""
CAP_BPS = 600_000
"""Slow enough that both jobs outlast their cuts, fast enough to keep the test short."""
CUTS_IN_FIRST_JOB = 2
CUTS_IN_SECOND_JOB = 2
STOP_AT_CHUNKS = 9
"""The first job is stopped once it has this many chunks (of the 23 or so of the span)."""
WINDOW_REASON = "waiting for the retrieval window"
POLL_S = 0.05


def _three_camera_site(folder: Path) -> None:
    """The test site's configuration with a third camera; `running_link_site` starts the
    site of an existing folder from its agent.toml."""
    write_site_config(folder, DEVICES_TOML + small_camera("cam-c"))


def _window(zone: ZoneInfo, now: datetime, from_h: int, to_h: int) -> dict[str, str]:
    """The daily window from `from_h` to `to_h` hours after `now`, as the site's clock
    shows those instants (whole minutes: the window is open from the start's minute)."""

    def clock_time(hours: int) -> str:
        return (now + timedelta(hours=hours)).astimezone(zone).strftime("%H:%M")

    return {"window_start": clock_time(from_h), "window_end": clock_time(to_h)}


async def _set_window(run: ProxiedRun, window: dict[str, str]) -> None:
    site_path = f"/sites/{run.added.site_id}"
    status, body = await run.central.call("PATCH", site_path, json={"retrieval": window})
    assert status == 200, body
    assert {name: body["retrieval"][name] for name in window} == window, body


async def _site_holds(run: ProxiedRun, count: int) -> None:
    """Until the site holds `count` spans (bounded)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if len(await asyncio.to_thread(run.site.store.list_holds)) == count:
                return
            await asyncio.sleep(POLL_S)


async def _cut_at_a_random_byte(run: ProxiedRun, rng: random.Random, label: str) -> None:
    """Once the link is up and another chunk arrived, reset the link after a random number
    of further bytes to the central, and wait until it did."""
    await site_until(run.central, run.added.site_id, online=True)
    await run.recorder.more(1)
    await run.reset_at_a_random_byte(rng, label, within_bytes=40_000)


async def _watch_progress(run: ProxiedRun, job_id: str, seen: list[tuple[int, int]]) -> None:
    """The job's (chunks, bytes) as the API shows them, appended until cancelled."""
    while True:
        status, job = await run.central.call("GET", f"/retrievals/{job_id}")
        assert status == 200, job
        seen.append((chunks_so_far(job), sum(p["bytes"] for p in job["progress"])))
        await asyncio.sleep(POLL_S)


async def _new_job_id(run: ProxiedRun, known: set[str]) -> str:
    """The id of the job the CLI made, from the API's list (bounded)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            status, body = await run.central.call("GET", "/retrievals")
            assert status == 200, body
            new: list[str] = [job["id"] for job in body["retrievals"] if job["id"] not in known]
            if new:
                assert len(new) == 1, body
                return new[0]
            await asyncio.sleep(POLL_S)


def _deliveries(entries: Sequence[Delivery | Cut]) -> list[ChunkFact]:
    return [entry.chunk for entry in entries if isinstance(entry, Delivery)]


def _payload_bytes(run: ProxiedRun, chunks: Sequence[ChunkFact]) -> int:
    """The payload bytes of `chunks` as the central stored them (blocking)."""
    total = 0
    for fact in chunks:
        chunk = run.central.node.store.read_chunk(
            fact.device_id, fact.stream, fact.seq, site_id=run.remote_site_id
        )
        assert chunk is not None, f"{fact.label} is not in the central's store"
        total += len(chunk.payload)
    return total


def _by_device(chunks: Sequence[ChunkFact]) -> dict[str, list[ChunkFact]]:
    """Distinct chunks by device, in seq order."""
    found: dict[str, dict[int, ChunkFact]] = {device: {} for device in DEVICES}
    for chunk in chunks:
        found[chunk.device_id][chunk.seq] = chunk
    return {device: [held[seq] for seq in sorted(held)] for device, held in found.items()}


def _progress_by_device(run: ProxiedRun, job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    remote = {central: device for device, central in run.added.devices.items()}
    return {remote[p["device_id"]]: p for p in job["progress"]}


async def _first_job_through_the_window_and_cuts(
    run: ProxiedRun, span: Span, rng: random.Random, seed: int
) -> tuple[str, list[tuple[int, int]]]:
    """Job 1 over the API: pending while the window is closed, running once it opens, cut
    `CUTS_IN_FIRST_JOB` times, stopped at `STOP_AT_CHUNKS`; its id and the progress seen."""
    job_id = await create_job(run.central, [run.added.devices[d] for d in DEVICES], span)
    waiting = await job_until(
        run.central, job_id, lambda job: (job["reason"] or "").startswith(WINDOW_REASON)
    )
    assert waiting["state"] == "pending", waiting
    assert chunks_so_far(waiting) == 0, waiting
    await _site_holds(run, len(DEVICES))  # placed while the job waits for its window
    assert run.recorder.deliveries == 0
    status, job = await run.central.call("GET", f"/retrievals/{job_id}")
    assert status == 200, job
    assert job["state"] == "pending", job
    assert job["reason"] == waiting["reason"], job

    status, site = await run.central.call("GET", f"/sites/{run.added.site_id}")
    assert status == 200, site
    await _set_window(run, _window(ZoneInfo(site["time_zone"]), datetime.now(UTC), -1, 1))

    seen: list[tuple[int, int]] = []
    watching = asyncio.create_task(_watch_progress(run, job_id, seen))
    try:
        await job_until(run.central, job_id, lambda job: job["state"] == "running")
        for number in range(CUTS_IN_FIRST_JOB):
            await _cut_at_a_random_byte(run, rng, f"job 1, cut {number + 1} (seed {seed})")
        await job_until(
            run.central, job_id, lambda job: chunks_so_far(job) >= STOP_AT_CHUNKS, every_s=0.02
        )
        status, stopped = await run.central.call("POST", f"/retrievals/{job_id}/stop")
    finally:
        watching.cancel()
    assert status == 200, stopped
    assert stopped["state"] == "stopped", stopped
    return job_id, seen


async def _second_job_from_the_cli(
    run: ProxiedRun,
    span: Span,
    rng: random.Random,
    seed: int,
    *,
    config_dir: Path,
    first_id: str,
) -> tuple[str, CommandResult]:
    """Job 2 over the same span and cameras, made and followed with `siteline retrieve
    --wait`, cut `CUTS_IN_SECOND_JOB` times while it runs; its id and the command's result."""
    env = {
        **central_env(run.central.base_url, config_dir, password=ADMIN_PASSWORD),
        "SITELINE_CENTRAL_FINGERPRINT": run.central.fingerprint,
    }
    argv = ["retrieve", "--start", format_instant(span.start_ns)]
    argv += ["--end", format_instant(span.end_ns), "--wait"]
    for device in DEVICES:
        argv += ["--device", run.added.devices[device]]
    command = asyncio.create_task(siteline(*argv, env=env))
    try:
        job_id = await _new_job_id(run, {first_id})
        for number in range(CUTS_IN_SECOND_JOB):
            await _cut_at_a_random_byte(run, rng, f"job 2, cut {number + 1} (seed {seed})")
        result = await command
    finally:
        command.cancel()
    return job_id, result


async def _first_job_stopped_mid_way(
    run: ProxiedRun, job: RetrievalJob, first_id: str, at_stop: int
) -> dict[str, Any]:
    """The first job once stopped: its holds at the site released, nothing more arriving,
    part of the span (not all) at the central."""
    await _site_holds(run, 0)
    record = await asyncio.to_thread(run.central.node.catalog.retrieval_job, first_id)
    assert record.holds == ()
    status, body = await run.central.call("GET", f"/retrievals/{first_id}")
    assert status == 200, body
    first: dict[str, Any] = body
    assert first["state"] == "stopped", first
    assert first["reason"] == "stopped by a user", first
    assert 0 < chunks_so_far(first) <= run.recorder.deliveries == at_stop
    stored, requested = await asyncio.gather(
        asyncio.to_thread(chunks_in_store, run.central.node.store, job, site_id=run.remote_site_id),
        asyncio.to_thread(chunks_in_store, run.site.store, job),
    )
    assert 0 < len(stored) < len(requested), "the first job was not stopped mid-way"
    return first


def _check_cli_output(
    run: ProxiedRun, result: CommandResult, second_id: str, second: dict[str, Any]
) -> None:
    """`siteline retrieve --wait` named the job, showed its bytes done, reported its end
    with its chunks."""
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].startswith(f"retrieval {second_id}: "), result
    assert all(run.added.devices[d] in lines[0] for d in DEVICES), result
    second_bytes = sum(p["bytes"] for p in second["progress"])
    assert any("100.0%" in line and f"  {format_size(second_bytes)}  " in line for line in lines), (
        result
    )
    assert lines[-1] == f"retrieval {second_id} completed: {chunks_so_far(second)} chunks", result


async def _verdict_over_both_jobs(
    run: ProxiedRun,
    job: RetrievalJob,
    first: dict[str, Any],
    second: dict[str, Any],
    restart_at: int,
) -> None:
    """See the module docstring; `restart_at`: where the second job begins in the run's
    delivery history."""
    assert second["state"] == "completed", second
    assert (parse_instant("start", second["start"]), parse_instant("end", second["end"])) == (
        job.start_ns,
        job.end_ns,
    )
    at_site = await asyncio.to_thread(chunks_in_store, run.site.store, job)
    at_central = await asyncio.to_thread(
        chunks_in_store, run.central.node.store, job, site_id=run.remote_site_id
    )
    check = check_retrieval(job, site=at_site, central=at_central, history=run.history)
    before, after = run.history.entries[:restart_at], run.history.entries[restart_at:]
    first_chunks = {(c.device_id, c.seq) for c in _deliveries(before)}
    again = [c.label for c in _deliveries(after) if (c.device_id, c.seq) in first_chunks]
    cuts_after = sum(isinstance(entry, Cut) for entry in after)
    print(
        f"{check.expected} chunks, {check.deliveries} deliveries, {check.resends} re-sends, "
        f"{check.cuts} cuts ({cuts_after} in job 2); progress of job 1 {chunks_so_far(first)} "
        f"chunks, of job 2 {chunks_so_far(second)}; fetched again by job 2: {again}"
    )
    check.assert_clean()
    assert check.expected == len(at_central) > STOP_AT_CHUNKS, check
    assert {c.device_id for c in at_central} == set(DEVICES)
    receipts = await asyncio.to_thread(
        run.central.node.receipts.receipts, [c.chunk_hash for c in at_central]
    )
    assert {r.chunk_hash for r in receipts} == {c.chunk_hash for c in at_central}
    assert await asyncio.to_thread(run.site.store.list_holds) == []
    record = await asyncio.to_thread(run.central.node.catalog.retrieval_job, second["id"])
    assert record.holds == ()

    # The link was cut repeatedly, and each cut cost at most one re-send per stream.
    assert check.cuts >= CUTS_IN_FIRST_JOB + CUTS_IN_SECOND_JOB, check
    assert cuts_after >= CUTS_IN_SECOND_JOB, check
    assert run.recorder.already_held == check.resends <= check.cuts * len(DEVICES), (
        run.recorder.already_held,
        check,
    )
    assert check.deliveries == check.expected + check.resends, check

    # The second job went on after what the first one stored: what it delivered again of
    # the first job's chunks is at most what its own cuts allow.
    assert len(again) <= cuts_after * len(DEVICES), (
        f"the second job fetched again {len(again)} of the {len(first_chunks)} chunks the "
        f"first one stored: {again}"
    )

    # The first job's progress counts what it brought.
    first_by_device = _by_device(_deliveries(before))
    second_by_device = _by_device(_deliveries(after))
    all_by_device = _by_device(at_central)
    for device, progress in _progress_by_device(run, first).items():
        delivered = first_by_device[device]
        # A stop between storing a chunk and advancing the cursor leaves it uncounted.
        assert len(delivered) - 1 <= progress["chunks"] <= len(delivered), (device, first)
        counted = await asyncio.to_thread(_payload_bytes, run, delivered[: progress["chunks"]])
        assert progress["bytes"] == counted, (device, progress)
    for device, progress in _progress_by_device(run, second).items():
        assert progress["state"] == "completed", (device, second)
        assert progress["fraction"] == 1.0, (device, second)
        # It counts the whole span as done: what it found held and what it fetched.
        assert second_by_device[device], (device, "the second job fetched nothing")
        everything = all_by_device[device]
        size = await asyncio.to_thread(_payload_bytes, run, everything)
        assert (progress["chunks"], progress["bytes"]) == (len(everything), size), (
            device,
            progress,
        )


async def test_an_operator_retrieves_three_cameras_over_a_capped_windowed_cut_link(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    await asyncio.to_thread(_three_camera_site, tmp_path / "site")
    async with proxied_run(tmp_path) as run:
        await site_until(run.central, run.added.site_id, online=True)
        status, site = await run.central.call("GET", f"/sites/{run.added.site_id}")
        assert status == 200, site
        zone = ZoneInfo(site["time_zone"])
        await set_cap(run.central, run.added.site_id, CAP_BPS)
        await _set_window(run, _window(zone, datetime.now(UTC), 2, 3))  # closed now
        span = await recorded_span(run.site.store, DEVICES, SPAN_CHUNKS)
        job = RetrievalJob(
            run.remote_site_id,
            frozenset((device, HQ) for device in DEVICES),
            span.start_ns,
            span.end_ns,
        )

        first_id, seen = await _first_job_through_the_window_and_cuts(run, span, rng, seed)
        first = await _first_job_stopped_mid_way(run, job, first_id, run.recorder.deliveries)

        # Progress rose while the job ran: chunks and bytes never fell and grew step by step.
        assert seen == sorted(seen), seen
        rising = sorted({sample for sample in seen if sample[0] > 0})
        assert len(rising) >= 3, seen
        assert all(b0 < b1 for (_, b0), (_, b1) in itertools.pairwise(rising)), seen

        restart_at = len(run.history.entries)
        second_id, result = await _second_job_from_the_cli(
            run, span, rng, seed, config_dir=tmp_path / "config", first_id=first_id
        )
        print(result.out)
        second = await job_until(run.central, second_id, ended)
        _check_cli_output(run, result, second_id, second)
        await _verdict_over_both_jobs(run, job, first, second, restart_at)
