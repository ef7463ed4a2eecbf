"""A running job's rate and estimate, as the API reports them, under the site's cap.

Two devices retrieved together under an 800 kbit/s cap: while the job runs, the rates of
its streams (`rate_bps`, payload bytes measured where the central commits them) add up to
about the cap (a little under: the cap counts framing too), and the time left (`eta_s`)
is there and falls as the job goes on. Unit tests of the arithmetic:
tests/central/retrieval/test_stream_rate.py.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.central.retrieval_faults.fault_run import (
    WAIT_S,
    create_job,
    job_until,
    recorded_span,
    set_cap,
)
from tests.central.retrieval_faults.proxied_run import proxied_run

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICES = ["cam-a", "cam-b"]
CAP_BPS = 800_000
SPAN_CHUNKS = 20  # 2 x 20 x ~36 kB: about 15 s at the cap
SETTLE_S = 3.0  # the first seconds of each stream are one or two chunks: not yet a rate
POLL_S = 0.5


async def test_a_capped_job_reports_a_rate_near_the_cap_and_a_falling_estimate(
    tmp_path: Path,
) -> None:
    async with proxied_run(tmp_path) as run:
        await set_cap(run.central, run.added.site_id, CAP_BPS)
        span = await recorded_span(run.site.store, DEVICES, SPAN_CHUNKS)
        job_id = await create_job(run.central, [run.added.devices[d] for d in DEVICES], span)
        running = await job_until(run.central, job_id, lambda j: j["state"] == "running")
        began = time.monotonic()
        readings: list[tuple[float, int, float]] = []  # (since began, total rate, most eta)
        async with asyncio.timeout(WAIT_S * 2):
            job: dict[str, Any] = running
            while job["state"] == "running":
                progress = job["progress"]
                rates = [p["rate_bps"] for p in progress if p["state"] == "running"]
                etas = [p["eta_s"] for p in progress if p["state"] == "running"]
                since = time.monotonic() - began
                if since >= SETTLE_S and len(rates) == len(DEVICES) and None not in rates:
                    assert None not in etas, progress  # a rate measured: an estimate too
                    readings.append((since, sum(rates), max(etas)))
                await asyncio.sleep(POLL_S)
                _, job = await run.central.call("GET", f"/retrievals/{job_id}")
        job = await job_until(run.central, job_id, lambda j: j["state"] == "completed")
        await run.verdict(job, DEVICES)

    assert len(readings) >= 5, readings
    fractions = [rate / CAP_BPS for _, rate, _ in readings]
    assert all(0.5 <= f <= 1.2 for f in fractions), fractions
    assert 0.8 <= statistics.median(fractions) <= 1.05, fractions
    etas = [eta for _, _, eta in readings]
    assert all(eta > 0 for eta in etas), etas
    assert etas[-1] < etas[0], etas
    # Falling about as fast as time passes (the job keeps its pace), not stuck or growing.
    elapsed = readings[-1][0] - readings[0][0]
    assert etas[0] - etas[-1] >= elapsed / 2, (elapsed, etas)
