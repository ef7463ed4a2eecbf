"""A hold the site refuses: the job is at risk, and the device's notification says so.

The site's hold budget (`hold_budget_fraction` of its quota) is tiny here, 6.7 kB, so every
hold the central asks for on a job's span (several HQ chunks of about 36 kB each) is
refused by the site's store, which names the budget it would exceed. The job then says it
is at risk, and each of its devices gets one open "retrieval_at_risk" notification naming
the job and the site's refusal; the job still retrieves the whole span (the refusal only
means the site's retention may delete it first). A further job at risk on a device with a
notification open replaces it with one that names both jobs. The notification is cleared
once no unfinished job at risk has that device's stream left to finish, and a central
started with one left open clears it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from central.retrieval.at_risk_notice import NOTICE_AT_RISK
from shared.clock import NS_PER_S
from tests.agent.site_config import write_site_config
from tests.agent_api.api_site import DEVICES_TOML
from tests.central.central_fixture import RunningCentral, running_central
from tests.central.link_sites import add_link_site
from tests.central.retrieval_faults.fault_run import (
    LINKS_TOML,
    WAIT_S,
    Span,
    create_job,
    ended,
    job_until,
    recorded_span,
)
from tests.link_io.link_site import running_link_site

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

SPAN_CHUNKS = 4
Notes = list[dict[str, Any]]


def _with_tiny_hold_budget(directory: Path) -> None:
    config = write_site_config(directory, DEVICES_TOML)
    text = config.read_text()
    config.write_text(
        text.replace('quota = "64 MiB"', 'quota = "64 MiB"\nhold_budget_fraction = 0.0001')
    )


async def _at_risk_notes(central: RunningCentral, *, open_only: bool = True) -> Notes:
    """The at-risk notifications, newest first: the open ones, or all."""
    query = "true" if open_only else "false"
    status, body = await central.call("GET", f"/notifications?open={query}")
    assert status == 200, body
    return [n for n in body["notifications"] if n["kind"] == NOTICE_AT_RISK]


async def _open_notes_until(central: RunningCentral, done: Callable[[Notes], bool]) -> Notes:
    """The open at-risk notifications once `done` holds for them (bounded polling)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            notes = await _at_risk_notes(central)
            if done(notes):
                return notes
            await asyncio.sleep(0.1)


def _at_risk(job: dict[str, Any]) -> bool:
    return bool(job["at_risk"])


async def test_a_refused_hold_marks_the_job_at_risk_and_it_still_retrieves(
    tmp_path: Path,
) -> None:
    _with_tiny_hold_budget(tmp_path / "site")
    async with running_link_site(tmp_path / "site") as site:
        async with running_central(tmp_path / "central", links_toml=LINKS_TOML) as central:
            assert site.config.storage.hold_budget_bytes < 10_000
            site_id, ids = await add_link_site(central, site)
            span = await recorded_span(site.store, ["cam-a"], SPAN_CHUNKS)
            job_id = await create_job(central, [ids["cam-a"]], span)

            # Not held, but still retrieved: every chunk of the span, once.
            done = await job_until(central, job_id, ended, timeout_s=WAIT_S)
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

            # The device was told, and once the job completed (the recordings were
            # retrieved) the notification was cleared: whoever sees the job completed sees
            # no notification open.
            assert await _at_risk_notes(central) == []
            (note,) = await _at_risk_notes(central, open_only=False)
            message = note["message"]
            assert message.startswith(
                f"retrieval {job_id}: the site refused to hold the recordings"
            ), note
            assert f"({ids['cam-a']}: " in message, note  # the central's device id
            assert "over the hold budget" in message, note  # the site's own reason
            assert "retention may delete them" in message, note
            assert note["site_id"] == site_id, note
            assert note["device_id"] == ids["cam-a"], note  # shown on the camera
            assert note["cleared"] is not None, note

            # As if the central died between the job's end and the clear, and one raised
            # for the whole site before notifications were per device: both left open.
            catalog, now_ns = central.node.catalog, central.node.clock.now_ns()
            for device_id in (ids["cam-a"], None):
                await asyncio.to_thread(
                    catalog.raise_notification,
                    NOTICE_AT_RISK,
                    site_id,
                    device_id,
                    f"retrieval {job_id}: left open",
                    now_ns,
                )
            assert len(await _at_risk_notes(central)) == 2

        async with running_central(tmp_path / "central", links_toml=LINKS_TOML) as central:
            assert await _at_risk_notes(central) == []


async def test_each_job_at_risk_on_a_device_is_told_and_the_notification_ends_with_the_last(
    tmp_path: Path,
) -> None:
    _with_tiny_hold_budget(tmp_path / "site")
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS_TOML) as central,
    ):
        site_id, ids = await add_link_site(central, site)
        cam_a = ids["cam-a"]
        span = await recorded_span(site.store, ["cam-a"], SPAN_CHUNKS)
        # The first job's span reaches ten minutes ahead: the site is still recording it,
        # so the job stays unfinished until it is stopped.
        later_ns = central.node.clock.now_ns() + 600 * NS_PER_S
        ongoing = await create_job(central, [cam_a], Span(span.start_ns, later_ns))
        await job_until(central, ongoing, _at_risk)
        (first,) = await _open_notes_until(central, bool)
        assert first["device_id"] == cam_a, first
        assert first["site_id"] == site_id, first
        assert first["message"].startswith(f"retrieval {ongoing}: the site refused"), first

        # A second job at risk on the same device: a new notification, naming it first,
        # then the first job, still at risk; the first notification is cleared.
        short = await create_job(central, [cam_a], span)
        (second,) = await _open_notes_until(
            central, lambda notes: any(short in n["message"] for n in notes)
        )
        assert second["id"] != first["id"], second
        assert second["device_id"] == cam_a, second
        assert second["site_id"] == site_id, second
        assert second["message"].startswith(f"retrieval {short}: the site refused"), second
        assert f"; also at risk on this device: retrieval {ongoing}" in second["message"]
        history = {n["id"]: n for n in await _at_risk_notes(central, open_only=False)}
        assert history[first["id"]]["cleared"] is not None, history
        assert history[first["id"]]["message"] == first["message"]

        # The second job is done; the first, at risk on the device, runs on: still open.
        done = await job_until(central, short, ended)
        assert done["state"] == "completed", done
        assert done["at_risk"] is True
        _, running = await central.call("GET", f"/retrievals/{ongoing}")
        assert running["state"] in ("pending", "running"), running
        (still,) = await _at_risk_notes(central)
        assert still["id"] == second["id"], still

        # Stopped: no unfinished job is at risk on the device any more.
        status, stopped = await central.call("POST", f"/retrievals/{ongoing}/stop")
        assert status == 200, stopped
        assert stopped["state"] == "stopped", stopped
        assert stopped["at_risk"] is True
        assert await _at_risk_notes(central) == []
        history = {n["id"]: n for n in await _at_risk_notes(central, open_only=False)}
        assert sorted(history) == sorted([first["id"], second["id"]])
        assert history[second["id"]]["cleared"] is not None, history


async def test_a_job_at_risk_on_two_devices_gives_each_device_its_notification(
    tmp_path: Path,
) -> None:
    _with_tiny_hold_budget(tmp_path / "site")
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS_TOML) as central,
    ):
        site_id, ids = await add_link_site(central, site)
        devices = [ids["cam-a"], ids["cam-b"]]
        span = await recorded_span(site.store, ["cam-a", "cam-b"], SPAN_CHUNKS)
        job_id = await create_job(central, devices, span)

        done = await job_until(central, job_id, ended)
        assert done["state"] == "completed", done
        assert done["at_risk"] is True
        assert await _at_risk_notes(central) == []
        notes = await _at_risk_notes(central, open_only=False)
        assert sorted(n["device_id"] for n in notes) == sorted(devices), notes
        for note in notes:
            assert note["site_id"] == site_id, note
            assert note["message"].startswith(f"retrieval {job_id}: the site refused"), note
            assert f"({note['device_id']}: " in note["message"], note  # its own device only
            other = next(d for d in devices if d != note["device_id"])
            assert other not in note["message"], note
            assert note["cleared"] is not None, note
