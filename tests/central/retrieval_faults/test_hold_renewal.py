"""A job's holds at the site are renewed during a link that outlives them.

The central here gives its holds a lifetime of seconds (`hold_lifetime_s`, 7 days in
service), so a job whose span reaches a few seconds ahead, still being recorded, outlives
several of them on one link: the site's own list of holds shows each device's span held all
along, by holds placed again before the last ones expired, and none left once the job
completed. A job stopped while its holds are being renewed (the site placed the new hold,
its answer still on the way back over a slow line) leaves no hold at the site. A renewal
the site refuses (its hold budget, outgrown by what it recorded since) flags the job at risk
and raises the device's notification, as a refused first hold does, and the hold the job
had is kept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from central.retrieval.at_risk_notice import NOTICE_AT_RISK
from shared.clock import NS_PER_S
from shared.store.holds import Hold
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
from tests.link_io.link_site import LinkSite, TcpProxy, running_link_site

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

HQ = "hq"
POLL_S = 0.05


async def _site_holds(site: LinkSite) -> list[Hold]:
    """The holds active at the site now, from its own store."""
    return await asyncio.to_thread(site.store.list_holds)


def _holds_of(holds: list[Hold], device: str, span: Span) -> list[Hold]:
    """The holds on the device's HQ over exactly the job's span."""
    return [
        h
        for h in holds
        if (h.device_id, h.stream, h.start_ns, h.end_ns) == (device, HQ, span.start_ns, span.end_ns)
    ]


async def _job(central: RunningCentral, job_id: str) -> dict[str, Any]:
    status, job = await central.call("GET", f"/retrievals/{job_id}")
    assert status == 200, job
    found: dict[str, Any] = job
    return found


async def _recorded_holds(central: RunningCentral, job_id: str) -> tuple[int, ...]:
    job = await asyncio.to_thread(central.node.catalog.retrieval_job, job_id)
    return job.holds


async def _first_holds_recorded(
    central: RunningCentral, site: LinkSite, job_id: str, count: int
) -> tuple[int, ...]:
    """The job's first holds, once the catalog records `count` and the site has exactly
    those (bounded polling)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            recorded = await _recorded_holds(central, job_id)
            at_site = {h.hold_id for h in await _site_holds(site)}
            if len(recorded) == count and set(recorded) == at_site:
                return recorded
            await asyncio.sleep(POLL_S)


async def _link_since(central: RunningCentral, site_id: str) -> str:
    status, body = await central.call("GET", f"/sites/{site_id}")
    assert status == 200, body
    assert body["status"]["state"] == "online", body
    since: str = body["status"]["since"]
    return since


async def test_holds_are_renewed_on_one_link_and_released_when_the_job_completes(
    tmp_path: Path,
) -> None:
    lifetime_s = 6.0  # renewed every 3 s
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(
            tmp_path / "central", links_toml=LINKS_TOML, hold_lifetime_s=lifetime_s
        ) as central,
    ):
        site_id, ids = await add_link_site(central, site)
        devices = {"cam-a": ids["cam-a"], "cam-b": ids["cam-b"]}
        recorded = await recorded_span(site.store, list(devices), 2)
        # The span reaches 5 s ahead: the job catches up, rests (15 s) while the site
        # records the rest, and completes; several lifetimes of its holds on one link.
        span = Span(recorded.start_ns, central.node.clock.now_ns() + 5 * NS_PER_S)
        job_id = await create_job(central, list(devices.values()), span)
        await _first_holds_recorded(central, site, job_id, len(devices))
        since = await _link_since(central, site_id)

        seen: dict[str, set[int]] = {device: set() for device in devices}
        async with asyncio.timeout(WAIT_S):
            while not ended(job := await _job(central, job_id)):
                holds = await _site_holds(site)
                unfinished = {
                    p["device_id"] for p in job["progress"] if p["state"] in ("pending", "running")
                }
                for device, central_id in devices.items():
                    mine = _holds_of(holds, device, span)
                    seen[device] |= {h.hold_id for h in mine}
                    assert len(mine) <= 2, mine  # the new one, and the old one until released
                    for hold in mine:
                        lifetime_ns = hold.expires_ns - hold.placed_at_ns
                        assert abs(lifetime_ns - lifetime_s * NS_PER_S) < NS_PER_S, hold
                    if not mine and central_id in unfinished:
                        # Unheld, unless the stream (or the job) ended meanwhile.
                        now = await _job(central, job_id)
                        streams = {p["device_id"]: p["state"] for p in now["progress"]}
                        assert ended(now) or streams[central_id] not in ("pending", "running"), (
                            f"{device}'s span is not held at the site",
                            holds,
                            now,
                        )
                await asyncio.sleep(POLL_S)

        assert job["state"] == "completed", job
        for device, hold_ids in seen.items():
            # The first hold and at least two renewals (the job ran for about 15 s).
            assert len(hold_ids) >= 3, (device, hold_ids)
        assert await _link_since(central, site_id) == since  # one link all along
        assert await _site_holds(site) == []
        assert await _recorded_holds(central, job_id) == ()


async def test_a_job_stopped_while_its_holds_are_renewed_leaves_no_hold_at_the_site(
    tmp_path: Path,
) -> None:
    # Renewed after 10 s; a hold left behind would outlive the checks below by far.
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(
            tmp_path / "central", links_toml=LINKS_TOML, hold_lifetime_s=20.0
        ) as central,
    ):
        proxy = TcpProxy(site.port)
        await proxy.start()
        try:
            _, ids = await add_link_site(central, site, port=proxy.port)
            # A slow line from now on: every answer of the site takes 0.3 s to arrive.
            proxy.latency_s = 0.3
            devices = [ids["cam-a"], ids["cam-b"]]
            recorded = await recorded_span(site.store, ["cam-a", "cam-b"], 2)
            span = Span(recorded.start_ns, central.node.clock.now_ns() + 600 * NS_PER_S)
            job_id = await create_job(central, devices, span)
            first = await _first_holds_recorded(central, site, job_id, len(devices))

            # A renewal under way: the site holds a new hold that the catalog does not
            # record yet (the answer is on its way back).
            async with asyncio.timeout(WAIT_S):
                while True:
                    at_site = {h.hold_id for h in await _site_holds(site)}
                    unrecorded = at_site - set(await _recorded_holds(central, job_id))
                    if unrecorded:
                        break
                    await asyncio.sleep(0.01)
            assert not unrecorded & set(first)

            status, stopped = await central.call("POST", f"/retrievals/{job_id}/stop")
            assert status == 200, stopped
            assert stopped["state"] == "stopped", stopped
            # Whoever sees the job stopped sees every hold of it gone: the old ones and the
            # ones the renewal had just placed.
            assert await _site_holds(site) == []
            assert await _recorded_holds(central, job_id) == ()
            await asyncio.sleep(1.0)  # anything still on its way has arrived
            assert await _site_holds(site) == []
            assert await _recorded_holds(central, job_id) == ()
        finally:
            await proxy.close()


def _with_hold_budget(directory: Path, fraction: float) -> None:
    config = write_site_config(directory, DEVICES_TOML)
    text = config.read_text()
    config.write_text(
        text.replace('quota = "64 MiB"', f'quota = "64 MiB"\nhold_budget_fraction = {fraction}')
    )


async def test_a_renewal_the_site_refuses_flags_the_job_at_risk_and_keeps_its_hold(
    tmp_path: Path,
) -> None:
    # A budget of about two and a half HQ chunks (one second, about 37 kB each): enough
    # for the span when the job starts, not for what the site recorded of it by the
    # renewal, five seconds later.
    _with_hold_budget(tmp_path / "site", 0.0014)
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(
            tmp_path / "central", links_toml=LINKS_TOML, hold_lifetime_s=10.0
        ) as central,
    ):
        assert 80_000 < site.config.storage.hold_budget_bytes < 100_000
        site_id, ids = await add_link_site(central, site)
        cam_a = ids["cam-a"]
        now_ns = central.node.clock.now_ns()
        span = Span(now_ns, now_ns + 600 * NS_PER_S)  # recorded from now on
        job_id = await create_job(central, [cam_a], span)
        (first,) = await _first_holds_recorded(central, site, job_id, 1)
        assert (await _job(central, job_id))["at_risk"] is False  # the first was accepted

        flagged = await job_until(central, job_id, lambda job: bool(job["at_risk"]))
        assert flagged["state"] in ("pending", "running"), flagged
        # The hold the job had is kept: the only one covering its span.
        (kept,) = _holds_of(await _site_holds(site), "cam-a", span)
        assert kept.hold_id == first, kept
        assert await _recorded_holds(central, job_id) == (first,)

        status, body = await central.call("GET", "/notifications?open=true")
        assert status == 200, body
        (note,) = [n for n in body["notifications"] if n["kind"] == NOTICE_AT_RISK]
        assert note["site_id"] == site_id, note
        assert note["device_id"] == cam_a, note
        message = note["message"]
        assert message.startswith(f"retrieval {job_id}: the site refused to hold"), note
        assert "over the hold budget" in message, note

        status, stopped = await central.call("POST", f"/retrievals/{job_id}/stop")
        assert status == 200, stopped
        assert await _site_holds(site) == []
        assert await _recorded_holds(central, job_id) == ()
