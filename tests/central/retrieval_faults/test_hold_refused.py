"""A hold the site refuses: the job is at risk, and says so.

The site's hold budget (`hold_budget_fraction` of its quota) is tiny here, 6.7 kB, so the
hold the central asks for on a job's span (several HQ chunks of about 36 kB each) is
refused by the site's store, which names the budget it would exceed. The job then says it
is at risk, a notification names the device and the site's refusal, and the job still
retrieves the whole span (the refusal only means the site's retention may delete it first).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.agent.site_config import write_site_config
from tests.agent_api.api_site import DEVICES_TOML
from tests.central.central_fixture import running_central
from tests.central.link_sites import add_link_site
from tests.central.retrieval_faults.fault_run import (
    LINKS_TOML,
    WAIT_S,
    create_job,
    job_until,
    recorded_span,
)
from tests.link_io.link_site import running_link_site

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

SPAN_CHUNKS = 4


async def test_a_refused_hold_marks_the_job_at_risk_and_it_still_retrieves(
    tmp_path: Path,
) -> None:
    config = write_site_config(tmp_path / "site", DEVICES_TOML)
    text = config.read_text()
    config.write_text(
        text.replace('quota = "64 MiB"', 'quota = "64 MiB"\nhold_budget_fraction = 0.0001')
    )
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS_TOML) as central,
    ):
        assert site.config.storage.hold_budget_bytes < 10_000
        site_id, ids = await add_link_site(central, site)
        span = await recorded_span(site.store, ["cam-a"], SPAN_CHUNKS)
        job_id = await create_job(central, [ids["cam-a"]], span)

        at_risk = await job_until(central, job_id, lambda j: bool(j["at_risk"]))
        assert at_risk["state"] in ("pending", "running", "completed"), at_risk
        _, notes = await central.call("GET", "/notifications")
        (note,) = [n for n in notes["notifications"] if n["kind"] == "retrieval_at_risk"]
        message = note["message"]
        assert f"retrieval {job_id}: the site refused to hold the recordings" in message, note
        assert f"{ids['cam-a']}: " in message, note  # the central's device id
        assert "over the hold budget" in message, note  # the site's own reason
        assert "retention may delete them" in message, note
        assert note["site_id"] == site_id, note

        # Not held, but still retrieved: every chunk of the span, once.
        done: dict[str, Any] = await job_until(
            central,
            job_id,
            lambda j: j["state"] in ("completed", "failed", "stopped"),
            timeout_s=WAIT_S,
        )
        assert done["state"] == "completed", done
        assert done["at_risk"] is True
        metas = await asyncio.to_thread(site.store.chunk_metas, "cam-a", "hq", 0, 1 << 62)
        wanted = {
            m.seq
            for m in metas
            if m.header.end_ns > span.start_ns and m.header.start_ns < span.end_ns
        }
        stored = await asyncio.to_thread(
            central.node.store.chunk_metas,
            "cam-a",
            "hq",
            0,
            1 << 62,
            site_id=site.config.site.id,
        )
        assert {m.seq for m in stored} == wanted
        (progress,) = done["progress"]
        assert progress["chunks"] == len(wanted)
        assert await asyncio.to_thread(site.store.list_holds) == []  # none was placed
        assert central.node.catalog.retrieval_job(job_id).holds == ()
