"""The unfinished retrieval jobs of one site or one device: exactly the jobs of the whole list
that are that site's or have a stream of that device, in the same order (random catalogs
checked against the unfiltered list), refusals of unknown ids, and at 2,000 unfinished jobs
over 100 sites a site's and a device's query reading their site's index ranges only."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.catalog import JobState, NotFound, SecretBox, SqliteCatalog
from central.catalog import sqlite_retrievals as retrievals
from shared.clock import ManualClock
from tests.central.catalog.catalog_parts import camera, dial_in_site, retrieval

SITES = 3
DEVICES_PER_SITE = 3

# One job of a random catalog: its site, which of the site's devices (a bit mask, not 0),
# and what happens to it: stays pending, runs, runs with its first stream completed,
# completes, is stopped, fails.
FATES = ("pending", "running", "running_one_done", "completed", "stopped", "failed")
JobPlan = tuple[int, int, str]
job_plans = st.lists(
    st.tuples(
        st.integers(0, SITES - 1),
        st.integers(1, 2**DEVICES_PER_SITE - 1),
        st.sampled_from(FATES),
    ),
    max_size=14,
)


def _open(directory: Path) -> SqliteCatalog:
    return SqliteCatalog.open(
        directory / "catalog.sqlite3",
        clock=ManualClock(),
        secret_box=SecretBox.load_or_create(directory / "secret.key"),
    )


def _add_sites(catalog: SqliteCatalog, count: int, devices: int) -> list[tuple[str, list[str]]]:
    """`count` sites of `devices` cameras each: (site id, device ids)."""
    sites = []
    for n in range(count):
        site, records = catalog.add_site(
            dial_in_site(f"Site {n}", remote_site_id=f"site-{n}"),
            None,
            [camera(f"cam-{d}") for d in range(devices)],
        )
        sites.append((site.site_id, [record.device_id for record in records]))
    return sites


def _make_job(catalog: SqliteCatalog, site_id: str, device_ids: list[str], fate: str) -> None:
    job = catalog.add_retrieval_job(retrieval(site_id, device_ids))
    first = job.device_ids[0]
    if fate == "pending":
        return
    if fate in ("running", "running_one_done"):
        catalog.set_retrieval_job_state(job.job_id, JobState.RUNNING)
        if fate == "running_one_done":
            catalog.set_retrieval_stream_state(job.job_id, first, "hq", JobState.COMPLETED)
        return
    if fate == "completed":
        for device_id in job.device_ids:
            catalog.set_retrieval_stream_state(job.job_id, device_id, "hq", JobState.COMPLETED)
        catalog.set_retrieval_job_state(job.job_id, JobState.COMPLETED)
    elif fate == "stopped":
        catalog.set_retrieval_job_state(job.job_id, JobState.STOPPED, reason="stopped by a user")
    else:
        catalog.set_retrieval_job_state(job.job_id, JobState.FAILED, reason="the site refused")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=job_plans)
def test_the_filters_pick_exactly_their_jobs_from_the_whole_list(plans: list[JobPlan]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        catalog = _open(Path(directory))
        try:
            sites = _add_sites(catalog, SITES, DEVICES_PER_SITE)
            for site_index, mask, fate in plans:
                site_id, devices = sites[site_index]
                chosen = [d for bit, d in enumerate(devices) if mask >> bit & 1]
                _make_job(catalog, site_id, chosen, fate)

            everything = catalog.unfinished_retrieval_jobs()
            assert all(job.state in (JobState.PENDING, JobState.RUNNING) for job in everything)
            expected_count = sum(fate in FATES[:3] for _, _, fate in plans)
            assert len(everything) == expected_count
            for site_id, devices in sites:
                assert catalog.unfinished_retrieval_jobs(site_id=site_id) == [
                    job for job in everything if job.site_id == site_id
                ]
                for device_id in devices:
                    of_device = [job for job in everything if device_id in job.device_ids]
                    assert catalog.unfinished_retrieval_jobs(device_id=device_id) == of_device
                    assert (
                        catalog.unfinished_retrieval_jobs(site_id=site_id, device_id=device_id)
                        == of_device
                    )
                    for other_site, _ in sites:
                        if other_site != site_id:
                            assert (
                                catalog.unfinished_retrieval_jobs(
                                    site_id=other_site, device_id=device_id
                                )
                                == []
                            )
        finally:
            catalog.close()


def test_unknown_sites_and_devices_are_not_found(catalog: SqliteCatalog) -> None:
    [(site_id, _)] = _add_sites(catalog, 1, 1)
    with pytest.raises(NotFound, match=r"^site 's-none' does not exist$"):
        catalog.unfinished_retrieval_jobs(site_id="s-none")
    with pytest.raises(NotFound, match=r"^device 'd-none' does not exist$"):
        catalog.unfinished_retrieval_jobs(device_id="d-none")
    with pytest.raises(NotFound, match=r"^device 'd-none' does not exist$"):
        catalog.unfinished_retrieval_jobs(site_id=site_id, device_id="d-none")
    assert catalog.unfinished_retrieval_jobs(site_id=site_id) == []


# -- at scale ---------------------------------------------------------------------------------

SCALE_SITES = 100
SCALE_JOBS_PER_SITE = 20


def _plans(db: sqlite3.Connection, query: str, params: tuple[str, ...]) -> str:
    return " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query, params))


def test_at_2000_unfinished_jobs_a_site_reads_only_its_own_index_ranges(
    catalog: SqliteCatalog, catalog_path: Path
) -> None:
    sites = _add_sites(catalog, SCALE_SITES, 4)
    rng = random.Random(2000)
    for _ in range(SCALE_JOBS_PER_SITE):
        for site_id, devices in sites:
            # Pending or running; one or two of the site's four devices.
            first = rng.randrange(4)
            chosen = devices[first : first + rng.randrange(1, 3)]
            _make_job(catalog, site_id, chosen, rng.choice(["pending", "running"]))
    everything = catalog.unfinished_retrieval_jobs()
    assert len(everything) == SCALE_SITES * SCALE_JOBS_PER_SITE

    site_id, devices = sites[37]
    of_site = catalog.unfinished_retrieval_jobs(site_id=site_id)
    assert of_site == [job for job in everything if job.site_id == site_id]
    assert len(of_site) == SCALE_JOBS_PER_SITE
    of_device = catalog.unfinished_retrieval_jobs(device_id=devices[1])
    assert of_device == [job for job in everything if devices[1] in job.device_ids]
    assert {JobState.PENDING, JobState.RUNNING} == {job.state for job in of_device}

    plans = []
    with sqlite3.connect(catalog_path) as db:
        # As the catalog leaves the file (no statistics), and with what ANALYZE would tell
        # the planner of these 2,000 jobs.
        for analyze in (False, True):
            if analyze:
                db.execute("ANALYZE")
            site_plan = _plans(db, retrievals.ALL_OF_SITE_IN_STATE_SQL, (site_id, "running"))
            device_plan = _plans(
                db, retrievals.ALL_OF_DEVICE_IN_STATE_SQL, (site_id, "running", devices[1])
            )
            plans += [site_plan, device_plan]
    db.close()
    for plan in plans:
        assert "SEARCH retrieval_jobs USING INDEX retrieval_jobs_by_site_state" in plan, plan
        assert "SCAN" not in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # read in order, no sort
    # The device is probed per job of its site, never walked through its history.
    for device_plan in plans[1::2]:
        assert "retrieval_streams_by_device (device_id=? AND job_id=?)" in device_plan
