"""A retrieval job on a camera's timeline, through the API with a real site on loopback:
asked for while the site's retrieval window is closed it is `pending` over its whole span;
once the window opens and it runs, what it has not brought yet is `running` (and nothing
`pending`); stopped, it is neither."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.api_input import format_instant
from shared.clock import NS_PER_S
from tests.central.central_fixture import RunningCentral, running_central
from tests.central.link_sites import add_link_site
from tests.link_io.link_site import running_link_site

WAIT_S = 60.0
LINKS = "read_timeout_s = 3\noffline_notice_after_s = 0\nretry_max_s = 1"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

Spans = dict[str, list[tuple[int, int]]]


async def _timeline_until(
    central: RunningCentral,
    device_id: str,
    start_ns: int,
    end_ns: int,
    holds: Callable[[Spans], bool],
) -> Spans:
    """The device's periods by kind, once `holds` is true of them (bounded wait)."""
    path = f"/devices/{device_id}/timeline"
    params = {"start": format_instant(start_ns), "end": format_instant(end_ns)}
    async with asyncio.timeout(WAIT_S):
        while True:
            status, body = await central.call("GET", path, params=params)
            assert status == 200, body
            spans: Spans = {}
            for period in body["periods"]:
                spans.setdefault(period["kind"], []).append((period["start_ns"], period["end_ns"]))
            if holds(spans):
                return spans
            await asyncio.sleep(0.2)


async def _job_until(
    central: RunningCentral, job_id: str, holds: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The job, once `holds` is true of it (bounded wait)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            status, job = await central.call("GET", f"/retrievals/{job_id}")
            assert status == 200, job
            if holds(job):
                found: dict[str, Any] = job
                return found
            await asyncio.sleep(0.2)


def _closed_window(time_zone: str) -> dict[str, str]:
    """A one-hour daily window that opens two hours from now on the site's clock."""
    opens = datetime.now(ZoneInfo(time_zone)) + timedelta(hours=2)
    closes = opens + timedelta(hours=1)
    return {"window_start": opens.strftime("%H:%M"), "window_end": closes.strftime("%H:%M")}


async def test_a_job_is_pending_until_it_runs_then_running_then_neither(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        site_id, ids = await add_link_site(central, site)
        camera = ids["cam-a"]
        await site.wait_for_chunks("cam-a", "hq", 3)
        metas = await asyncio.to_thread(site.store.chunk_metas, "cam-a", "hq", 0, 1 << 62)
        time_zone = (await asyncio.to_thread(central.node.catalog.site, site_id)).time_zone
        status, body = await central.call(
            "PATCH", f"/sites/{site_id}", json={"retrieval": _closed_window(time_zone)}
        )
        assert status == 200, body

        # Recorded chunks first, then the hour to come: the job runs on while the site records.
        start_ns = metas[0].header.start_ns
        end_ns = central.node.clock.now_ns() + 3600 * NS_PER_S
        status, job = await central.call(
            "POST",
            "/retrievals",
            json={
                "device_ids": [camera],
                "start": format_instant(start_ns),
                "end": format_instant(end_ns),
            },
        )
        assert status == 201, job
        range_ns = (start_ns - 10 * NS_PER_S, end_ns)

        waiting_job = await _job_until(
            central, job["id"], lambda j: "window" in (j["reason"] or "")
        )
        assert waiting_job["state"] == "pending"
        waiting = await _timeline_until(central, camera, *range_ns, lambda s: True)
        assert waiting["pending"] == [(start_ns, end_ns)]
        assert "running" not in waiting

        status, body = await central.call(
            "PATCH",
            f"/sites/{site_id}",
            json={"retrieval": {"window_start": None, "window_end": None}},
        )
        assert status == 200, body

        # Running, with chunks brought: the rest of the span is what it brings now.
        def running_after_chunks(spans: Spans) -> bool:
            return "running" in spans and "retrieved_hq" in spans

        moving = await _timeline_until(central, camera, *range_ns, running_after_chunks)
        assert (await _job_until(central, job["id"], lambda j: True))["state"] == "running"
        ((running_start, running_end),) = moving["running"]
        assert start_ns < running_start < end_ns
        assert running_end == end_ns
        assert "pending" not in moving, moving
        assert moving["retrieved_hq"][0][0] <= start_ns + NS_PER_S  # from the span's start
        assert all(e <= running_start for _, e in moving["retrieved_hq"]), moving

        status, stopped = await central.call("POST", f"/retrievals/{job['id']}/stop")
        assert status == 200, stopped
        after = await _timeline_until(central, camera, *range_ns, lambda s: True)
        assert "running" not in after, after
        assert "pending" not in after, after
