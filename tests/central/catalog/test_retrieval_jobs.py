"""Retrieval jobs in the catalog: stored, listed, moved through their states, resumed after
a reopen, migrated into an older catalog file, and removed with their site or devices."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from central.catalog import (
    SCHEMA_VERSION,
    Conflict,
    DeviceRecord,
    InvalidRecord,
    JobOrigin,
    JobState,
    JobStream,
    JobTransitionError,
    NewRetrievalJob,
    NotFound,
    RetrievalJob,
    SecretBox,
    SqliteCatalog,
)
from central.catalog import sqlite_retrievals as retrievals
from central.catalog.schema import MIGRATIONS
from shared.clock import NS_PER_S, ManualClock, SystemClock
from tests.central.catalog.catalog_parts import (
    SPAN_START_NS,
    camera,
    chunk_hash,
    dial_in_site,
    dial_out_site,
    door_input,
    retrieval,
)
from tests.central.catalog.conftest import OpenCatalog

REPO = Path(__file__).resolve().parents[3]
Cameras = tuple[str, list[DeviceRecord]]


@pytest.fixture
def shop(catalog: SqliteCatalog) -> Cameras:
    """A site with three cameras and a door input."""
    site, devices = catalog.add_site(
        dial_out_site(), None, [camera("cam-a"), camera("cam-b"), camera("cam-c"), door_input()]
    )
    return site.site_id, devices


def _device_ids(devices: list[DeviceRecord], count: int = 3) -> list[str]:
    return [device.device_id for device in devices[:count]]


# --- adding and reading ------------------------------------------------------------------


def test_a_new_job_is_pending_with_an_empty_stream_per_device(
    catalog: SqliteCatalog, shop: Cameras, clock: ManualClock
) -> None:
    site_id, devices = shop
    ids = _device_ids(devices)[::-1]  # the caller's order is kept, not the site's
    job = catalog.add_retrieval_job(retrieval(site_id, ids))

    assert re.fullmatch(r"j-[a-z2-7]{10}", job.job_id)
    assert (job.site_id, job.device_ids, job.quality) == (site_id, tuple(ids), "hq")
    assert (job.start_ns, job.end_ns) == (SPAN_START_NS, SPAN_START_NS + 600 * NS_PER_S)
    assert (job.origin, job.created_by, job.rule_id) == (JobOrigin.USER, "alice", None)
    assert (job.state, job.reason, job.holds, job.at_risk) == (JobState.PENDING, None, (), False)
    assert (job.created_ns, job.updated_ns) == (clock.now_ns(), clock.now_ns())
    assert (job.started_ns, job.finished_ns) == (None, None)
    assert job.streams == tuple(JobStream(device_id, "hq") for device_id in ids)
    assert job.streams[0] == JobStream(
        ids[0], "hq", None, None, 0, 0, None, JobState.PENDING, None, False
    )
    assert catalog.retrieval_job(job.job_id) == job


def test_jobs_of_rules_and_reconnects_round_trip(catalog: SqliteCatalog, shop: Cameras) -> None:
    site_id, devices = shop
    by_rule = catalog.add_retrieval_job(
        retrieval(
            site_id,
            _device_ids(devices, 1),
            quality="lq",
            origin=JobOrigin.RULE,
            created_by="rule-7",
            rule_id="rule-7",
        )
    )
    on_reconnect = catalog.add_retrieval_job(
        retrieval(site_id, _device_ids(devices, 2), origin=JobOrigin.RECONNECT, created_by=None)
    )
    assert catalog.retrieval_job(by_rule.job_id) == by_rule
    assert by_rule.streams[0].stream == "lq"
    assert catalog.retrieval_job(on_reconnect.job_id) == on_reconnect
    assert on_reconnect.origin is JobOrigin.RECONNECT


def test_an_unknown_job_is_not_found(catalog: SqliteCatalog) -> None:
    with pytest.raises(NotFound, match=r"^retrieval job 'j-nothing' does not exist$"):
        catalog.retrieval_job("j-nothing")


def _new_job(**changes: object) -> Callable[[], object]:
    def build() -> object:
        fields = {
            "site_id": "s-x",
            "device_ids": ("d-a", "d-b"),
            "start_ns": 10,
            "end_ns": 20,
        }
        fields.update(changes)
        return NewRetrievalJob(**fields)  # type: ignore[arg-type]

    return build


def _stream(**changes: object) -> Callable[[], object]:
    return lambda: JobStream(**{"device_id": "d-a", "stream": "hq", **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_new_job(site_id=""), "^site_id: must not be empty$"),
        (_new_job(device_ids=()), "^device_ids: must name 1 to 64 devices, not 0$"),
        (
            _new_job(device_ids=tuple(f"d-{n}" for n in range(65))),
            "^device_ids: must name 1 to 64 devices, not 65$",
        ),
        (_new_job(device_ids="d-a"), "^device_ids: must be a sequence of device ids$"),
        (_new_job(device_ids=("d-a", "d-b", "d-a")), "^device_ids: names a device twice: d-a$"),
        (_new_job(device_ids=("d-a", 7)), "^device_ids: must be a string, not int$"),
        (_new_job(end_ns=10), "^end_ns: the span must end after it starts$"),
        (_new_job(start_ns=-1), "^start_ns: must be at least 0, not -1$"),
        (_new_job(quality="mq"), "^quality: must be one of hq, lq, not 'mq'$"),
        (_new_job(origin="robot"), "^origin: must be one of user, rule, reconnect, not 'robot'$"),
        (_new_job(origin="rule"), "^rule_id: a job has a rule_id exactly when a rule made it$"),
        (_new_job(rule_id="r-1"), "^rule_id: a job has a rule_id exactly when a rule made it$"),
        (_new_job(created_by="bob\n"), "^created_by: must not contain control characters$"),
        (_stream(cursor_seq=1), "^cursor_hash: cursor_seq and cursor_hash are set together$"),
        (_stream(cursor_seq=-1, cursor_hash=bytes(32)), "^cursor_seq: must be at least 0"),
        (
            _stream(cursor_seq=1, cursor_hash=bytes(31)),
            r"^cursor_hash: must be 32 bytes \(a SHA-256\)$",
        ),
        (_stream(chunks=1), "^cursor_seq: a stream with chunks committed has a cursor$"),
        (_stream(state="lost"), "^state: must be one of pending, running"),
        (_stream(failure="disk"), "^failure: a stream has a failure exactly when it failed$"),
        (_stream(state="failed"), "^failure: a stream has a failure exactly when it failed$"),
        (_stream(rejected_once=1), "^rejected_once: must be true or false, not 1$"),
    ],
)
def test_bad_records_are_refused_naming_the_field(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(InvalidRecord, match=message):
        build()


def test_a_stored_job_checks_its_streams_and_holds(catalog: SqliteCatalog, shop: Cameras) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices)))
    with pytest.raises(InvalidRecord, match=r"^streams: must be one stream of the job's quality"):
        dataclasses.replace(job, streams=job.streams[::-1])
    with pytest.raises(InvalidRecord, match=r"^holds: names a hold twice$"):
        dataclasses.replace(job, holds=(3, 3))
    with pytest.raises(InvalidRecord, match=r"^holds: must be at least 0, not -1$"):
        dataclasses.replace(job, holds=(-1,))


def test_a_list_of_devices_becomes_a_tuple() -> None:
    job = NewRetrievalJob("s-x", ["d-a", "d-b"], 1, 2)  # type: ignore[arg-type]
    assert job.device_ids == ("d-a", "d-b")
    assert job.origin is JobOrigin.USER
    assert NewRetrievalJob("s-x", ("d-a",), 1, 2, origin="reconnect").origin is JobOrigin.RECONNECT  # type: ignore[arg-type]


def test_a_job_names_only_devices_of_its_site_with_its_quality(
    catalog: SqliteCatalog, shop: Cameras
) -> None:
    site_id, devices = shop
    other, (other_camera,) = catalog.add_site(dial_in_site(), None, [camera("cam-x")])
    door = devices[3].device_id
    cam_a = devices[0].device_id
    with pytest.raises(NotFound, match=r"^site 's-none' does not exist$"):
        catalog.add_retrieval_job(retrieval("s-none", [cam_a]))
    with pytest.raises(InvalidRecord, match=r"^device_ids: device d-gone does not exist$"):
        catalog.add_retrieval_job(retrieval(site_id, [cam_a, "d-gone"]))
    with pytest.raises(
        InvalidRecord,
        match=f"^device_ids: device {other_camera.device_id} is a device of site "
        f"{other.site_id}, not of {site_id}$",
    ):
        catalog.add_retrieval_job(retrieval(site_id, [cam_a, other_camera.device_id]))
    with pytest.raises(
        InvalidRecord, match=rf"^device_ids: device {door} has no hq stream \(it has: state\)$"
    ):
        catalog.add_retrieval_job(retrieval(site_id, [cam_a, door]))
    assert catalog.retrieval_jobs() == []  # nothing of a refused job was stored


# --- states ------------------------------------------------------------------------------


def test_running_stamps_the_start_once_and_pending_keeps_it(
    catalog: SqliteCatalog, shop: Cameras, clock: ManualClock
) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices)))
    waiting = catalog.set_retrieval_job_state(job.job_id, JobState.PENDING, reason="site offline")
    assert (waiting.state, waiting.reason, waiting.started_ns) == ("pending", "site offline", None)

    clock.advance(5)
    started_ns = clock.now_ns()
    running = catalog.set_retrieval_job_state(job.job_id, JobState.RUNNING)
    assert (running.state, running.reason, running.started_ns) == ("running", None, started_ns)
    assert running.updated_ns == started_ns

    clock.advance(5)
    paused = catalog.set_retrieval_job_state(
        job.job_id, JobState.PENDING, reason="outside the window", at_risk=True
    )
    clock.advance(5)
    again = catalog.set_retrieval_job_state(job.job_id, JobState.RUNNING)
    assert (paused.state, paused.started_ns, paused.finished_ns) == ("pending", started_ns, None)
    assert (again.started_ns, again.at_risk) == (started_ns, True)  # at_risk None: unchanged
    assert catalog.retrieval_job(job.job_id) == again


def test_stopping_ends_the_job_and_its_unfinished_streams(
    catalog: SqliteCatalog, shop: Cameras, clock: ManualClock
) -> None:
    site_id, devices = shop
    a, b, c = _device_ids(devices)
    job = catalog.add_retrieval_job(retrieval(site_id, [a, b, c]))
    catalog.set_retrieval_job_state(job.job_id, JobState.RUNNING)
    catalog.set_retrieval_stream_state(job.job_id, a, "hq", JobState.RUNNING)
    catalog.advance_retrieval_stream(
        job.job_id,
        a,
        "hq",
        cursor_seq=0,
        cursor_hash=chunk_hash(0),
        chunks_added=1,
        bytes_added=1000,
        covered_until_ns=SPAN_START_NS + NS_PER_S,
    )
    catalog.set_retrieval_stream_state(job.job_id, a, "hq", JobState.COMPLETED)
    catalog.set_retrieval_stream_state(job.job_id, b, "hq", JobState.RUNNING)
    clock.advance(30)

    stopped = catalog.set_retrieval_job_state(job.job_id, JobState.STOPPED, reason="by alice")

    assert (stopped.state, stopped.reason, stopped.finished_ns) == (
        "stopped",
        "by alice",
        clock.now_ns(),
    )
    assert [s.state for s in stopped.streams] == ["completed", "stopped", "stopped"]
    assert stopped.streams[0].chunks == 1  # what was retrieved stays
    assert catalog.retrieval_job(job.job_id) == stopped
    with pytest.raises(
        JobTransitionError,
        match=f"^job {job.job_id} cannot go from stopped to running: stopped is final$",
    ):
        catalog.set_retrieval_job_state(job.job_id, JobState.RUNNING)
    with pytest.raises(JobTransitionError, match="cannot go from stopped to stopped"):
        catalog.set_retrieval_job_state(job.job_id, JobState.STOPPED)
    assert catalog.retrieval_job(job.job_id) == stopped


def test_a_failed_job_keeps_its_reason(catalog: SqliteCatalog, shop: Cameras) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices, 2)))
    catalog.set_retrieval_stream_state(
        job.job_id, devices[0].device_id, "hq", JobState.FAILED, failure="chunk 4 rejected twice"
    )
    failed = catalog.set_retrieval_job_state(
        job.job_id, JobState.FAILED, reason="a camera could not be retrieved"
    )
    assert failed.reason == "a camera could not be retrieved"
    assert [(s.state, s.failure) for s in failed.streams] == [
        ("failed", "chunk 4 rejected twice"),
        ("stopped", None),
    ]


def test_a_job_completes_only_when_every_stream_has(
    catalog: SqliteCatalog, shop: Cameras, clock: ManualClock
) -> None:
    site_id, devices = shop
    a, b = _device_ids(devices, 2)
    job = catalog.add_retrieval_job(retrieval(site_id, [a, b]))
    catalog.set_retrieval_job_state(job.job_id, JobState.RUNNING)
    catalog.set_retrieval_stream_state(job.job_id, a, "hq", JobState.COMPLETED)
    with pytest.raises(
        Conflict,
        match=f"^job {job.job_id} cannot complete: the hq stream of device {b} is pending$",
    ):
        catalog.set_retrieval_job_state(job.job_id, JobState.COMPLETED)
    catalog.set_retrieval_stream_state(job.job_id, b, "hq", JobState.COMPLETED)
    clock.advance(1)
    done = catalog.set_retrieval_job_state(job.job_id, JobState.COMPLETED)
    assert (done.state, done.finished_ns) == (JobState.COMPLETED, clock.now_ns())


def test_stream_states_follow_the_rules(catalog: SqliteCatalog, shop: Cameras) -> None:
    site_id, devices = shop
    a = devices[0].device_id
    job = catalog.add_retrieval_job(retrieval(site_id, [a]))
    running = catalog.set_retrieval_stream_state(job.job_id, a, "hq", JobState.RUNNING)
    assert (running.state, running.rejected_once) == (JobState.RUNNING, False)
    marked = catalog.set_retrieval_stream_state(
        job.job_id, a, "hq", JobState.RUNNING, rejected_once=True
    )
    assert marked.rejected_once
    with pytest.raises(InvalidRecord, match=r"^failure: a stream has a failure exactly when"):
        catalog.set_retrieval_stream_state(job.job_id, a, "hq", JobState.FAILED)
    failed = catalog.set_retrieval_stream_state(
        job.job_id, a, "hq", JobState.FAILED, failure="chunk 9 failed verification twice"
    )
    assert (failed.state, failed.rejected_once) == (JobState.FAILED, True)
    with pytest.raises(
        JobTransitionError,
        match=f"^the hq stream of device {a} in job {job.job_id} cannot go from failed to running",
    ):
        catalog.set_retrieval_stream_state(job.job_id, a, "hq", JobState.RUNNING)
    assert catalog.retrieval_job(job.job_id).streams == (failed,)
    with pytest.raises(NotFound, match=f"^retrieval stream '{job.job_id}/{a}/lq' does not exist"):
        catalog.set_retrieval_stream_state(job.job_id, a, "lq", JobState.RUNNING)
    with pytest.raises(NotFound, match=r"^retrieval job 'j-none' does not exist"):
        catalog.set_retrieval_stream_state("j-none", a, "hq", JobState.RUNNING)


# --- cursors -----------------------------------------------------------------------------


def _advance(
    catalog: SqliteCatalog, job: RetrievalJob, seq: int, *, chunks: int = 1, **changes: object
) -> JobStream:
    arguments: dict[str, object] = {
        "cursor_seq": seq,
        "cursor_hash": chunk_hash(seq),
        "chunks_added": chunks,
        "bytes_added": 1000 * chunks,
        "covered_until_ns": SPAN_START_NS + (seq + 1) * NS_PER_S,
    }
    arguments.update(changes)
    return catalog.advance_retrieval_stream(
        job.job_id,
        job.device_ids[0],
        job.quality,
        **arguments,  # type: ignore[arg-type]
    )


def test_the_cursor_moves_forward_and_counts(
    catalog: SqliteCatalog, shop: Cameras, clock: ManualClock
) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices, 2)))
    clock.advance(2)
    first = _advance(catalog, job, 0)
    second = _advance(catalog, job, 3, chunks=2)  # seq 1 or 2 was deleted at the site

    assert (first.cursor_seq, first.cursor_hash, first.chunks) == (0, chunk_hash(0), 1)
    assert (second.cursor_seq, second.cursor_hash) == (3, chunk_hash(3))
    assert (second.chunks, second.payload_bytes) == (3, 3000)
    assert second.covered_until_ns == SPAN_START_NS + 4 * NS_PER_S
    stored = catalog.retrieval_job(job.job_id)
    assert stored.streams == (second, job.streams[1])
    assert stored.updated_ns == clock.now_ns()


def test_the_cursor_never_moves_backwards(catalog: SqliteCatalog, shop: Cameras) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices, 1)))
    at_five = _advance(catalog, job, 5)
    where = f"the hq stream of device {job.device_ids[0]} in job {job.job_id}"
    with pytest.raises(
        InvalidRecord,
        match=f"^cursor_seq: {where}: the cursor never moves backwards \\(from seq 5 to 4\\)$",
    ):
        _advance(catalog, job, 4)
    with pytest.raises(
        InvalidRecord, match=f"^cursor_hash: {where}: seq 5 was committed with another hash$"
    ):
        _advance(catalog, job, 5, cursor_hash=chunk_hash(6))
    with pytest.raises(
        InvalidRecord,
        match=f"^chunks_added: {where}: moving the cursor to seq 7 commits 1 to 2 chunks, not 3$",
    ):
        _advance(catalog, job, 7, chunks=3)
    with pytest.raises(InvalidRecord, match=r"^chunks_added: .* commits 1 to 1 chunks, not 0$"):
        _advance(catalog, job, 6, chunks=0)
    with pytest.raises(InvalidRecord, match=r"^cursor_hash: must be 32 bytes \(a SHA-256\)$"):
        _advance(catalog, job, 6, cursor_hash=b"short")
    assert catalog.retrieval_job(job.job_id).streams[0] == at_five


def test_repeating_the_latest_advance_counts_nothing_twice(
    catalog: SqliteCatalog, shop: Cameras
) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices, 1)))
    once = _advance(catalog, job, 2, chunks=3)
    assert _advance(catalog, job, 2, chunks=3) == once
    assert catalog.retrieval_job(job.job_id).streams[0] == once


def test_time_covered_never_shrinks(catalog: SqliteCatalog, shop: Cameras) -> None:
    """A site clock stepped back between two chunks does not undo what was covered."""
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices, 1)))
    _advance(catalog, job, 0, covered_until_ns=SPAN_START_NS + 60 * NS_PER_S)
    later = _advance(catalog, job, 1, covered_until_ns=SPAN_START_NS + 50 * NS_PER_S)
    assert later.covered_until_ns == SPAN_START_NS + 60 * NS_PER_S


def test_a_stopped_stream_still_counts_a_chunk_under_way_a_finished_one_does_not(
    catalog: SqliteCatalog, shop: Cameras
) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices, 2)))
    a, b = job.device_ids
    catalog.set_retrieval_stream_state(job.job_id, b, "hq", JobState.COMPLETED)
    catalog.set_retrieval_job_state(job.job_id, JobState.STOPPED)
    assert _advance(catalog, job, 0).chunks == 1
    with pytest.raises(
        Conflict,
        match=f"^the hq stream of device {b} in job {job.job_id} is completed; "
        "its cursor no longer moves$",
    ):
        catalog.advance_retrieval_stream(
            job.job_id,
            b,
            "hq",
            cursor_seq=0,
            cursor_hash=chunk_hash(0),
            chunks_added=1,
            bytes_added=1,
            covered_until_ns=SPAN_START_NS,
        )
    assert [s.chunks for s in catalog.retrieval_job(job.job_id).streams] == [1, 0]
    assert a == job.device_ids[0]


# --- holds -------------------------------------------------------------------------------


def test_holds_are_recorded_and_released(
    catalog: SqliteCatalog, shop: Cameras, clock: ManualClock
) -> None:
    site_id, devices = shop
    job = catalog.add_retrieval_job(retrieval(site_id, _device_ids(devices, 2)))
    clock.advance(1)
    held = catalog.set_retrieval_job_holds(job.job_id, [17, 4])
    assert (held.holds, held.updated_ns) == ((17, 4), clock.now_ns())
    assert catalog.retrieval_job(job.job_id) == held
    risky = catalog.set_retrieval_job_state(
        job.job_id, JobState.PENDING, reason="the site keeps 2 days, the backlog is 3", at_risk=True
    )
    assert (risky.holds, risky.at_risk) == ((17, 4), True)
    assert catalog.set_retrieval_job_holds(job.job_id, []).holds == ()
    with pytest.raises(InvalidRecord, match=r"^holds: names a hold twice$"):
        catalog.set_retrieval_job_holds(job.job_id, [1, 1])
    with pytest.raises(InvalidRecord, match=r"^holds: must be a sequence of hold ids$"):
        catalog.set_retrieval_job_holds(job.job_id, "12")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match=r"^retrieval job 'j-none'"):
        catalog.set_retrieval_job_holds("j-none", [1])
    assert catalog.retrieval_job(job.job_id).holds == ()


# --- lists -------------------------------------------------------------------------------


def _jobs_in_states(catalog: SqliteCatalog, clock: ManualClock) -> tuple[str, str, list[str]]:
    """Two sites, 14 jobs created alternately, in mixed states; their ids, oldest first."""
    shop, shop_devices = catalog.add_site(dial_out_site(), None, [camera("a"), camera("b")])
    bus, bus_devices = catalog.add_site(dial_in_site(), None, [camera("c")])
    states = [JobState.PENDING, JobState.RUNNING, JobState.COMPLETED, JobState.STOPPED]
    ids: list[str] = []
    for n in range(14):
        site, devices = (shop, shop_devices) if n % 2 == 0 else (bus, bus_devices)
        job = catalog.add_retrieval_job(retrieval(site.site_id, [devices[0].device_id]))
        clock.advance(0)  # jobs made in the same instant still list in creation order
        state = states[n % len(states)]
        if state is JobState.COMPLETED:
            catalog.set_retrieval_stream_state(
                job.job_id, job.device_ids[0], "hq", JobState.COMPLETED
            )
        if state is not JobState.PENDING:
            catalog.set_retrieval_job_state(job.job_id, state)
        ids.append(job.job_id)
    return shop.site_id, bus.site_id, ids


def _walk(catalog: SqliteCatalog, limit: int, **filters: object) -> list[str]:
    """Every page of a list, joined."""
    seen: list[str] = []
    while True:
        page = catalog.retrieval_jobs(
            after=seen[-1] if seen else None,
            limit=limit,
            **filters,  # type: ignore[arg-type]
        )
        assert len(page) <= limit
        seen += [job.job_id for job in page]
        if len(page) < limit:
            return seen


@pytest.mark.parametrize("limit", [1, 3, 5, 14, 100])
def test_pages_join_into_the_whole_list_newest_first(
    catalog: SqliteCatalog, clock: ManualClock, limit: int
) -> None:
    shop, bus, ids = _jobs_in_states(catalog, clock)
    newest_first = ids[::-1]
    everything = catalog.retrieval_jobs(limit=1000)
    assert [job.job_id for job in everything] == newest_first
    assert _walk(catalog, limit) == newest_first

    def expected(site: str | None, states: set[JobState] | None) -> list[str]:
        return [
            job.job_id
            for job in everything
            if (site is None or job.site_id == site) and (states is None or job.state in states)
        ]

    unfinished = {JobState.PENDING, JobState.RUNNING}
    for site in (None, shop, bus):
        for states in (None, {JobState.RUNNING}, unfinished, set(JobState)):
            assert _walk(catalog, limit, site_id=site, states=states) == expected(site, states)
    assert catalog.retrieval_jobs(states=[]) == []


def test_a_page_continues_after_a_job_that_left_the_filter(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    _, _, ids = _jobs_in_states(catalog, clock)
    pending = [job.job_id for job in catalog.retrieval_jobs(states=[JobState.PENDING])]
    first = catalog.retrieval_jobs(states=[JobState.PENDING], limit=2)
    catalog.set_retrieval_job_state(first[-1].job_id, JobState.RUNNING)
    rest = catalog.retrieval_jobs(states=[JobState.PENDING], after=first[-1].job_id)
    assert [job.job_id for job in first + rest] == pending
    assert len(pending) == len(ids[::4])


def test_lists_refuse_unknown_anchors_sites_and_states(catalog: SqliteCatalog) -> None:
    with pytest.raises(NotFound, match=r"^retrieval job 'j-none' does not exist$"):
        catalog.retrieval_jobs(after="j-none")
    with pytest.raises(NotFound, match=r"^site 's-none' does not exist$"):
        catalog.retrieval_jobs(site_id="s-none")
    with pytest.raises(InvalidRecord, match=r"^states: must be one of pending"):
        catalog.retrieval_jobs(states=["paused"])  # type: ignore[list-item]
    with pytest.raises(InvalidRecord, match=r"^states: must be a collection of job states"):
        catalog.retrieval_jobs(states="pending")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match=r"^limit: must be between 1 and 1000, not 0$"):
        catalog.retrieval_jobs(limit=0)


def test_the_lists_and_the_start_up_query_read_an_index_without_sorting(
    catalog: SqliteCatalog, catalog_path: Path, clock: ManualClock
) -> None:
    _jobs_in_states(catalog, clock)
    queries = [
        (retrievals.LIST_ALL_SQL, (10, 5)),
        (retrievals.LIST_IN_STATE_SQL, ("running", 10, 5)),
        (retrievals.LIST_OF_SITE_IN_STATE_SQL, ("s-x", "running", 10, 5)),
        (retrievals.ALL_IN_STATE_SQL, ("pending",)),
        (retrievals.STREAMS_OF_JOBS_SQL.format(marks="?,?"), ("j-a", "j-b")),
    ]
    with sqlite3.connect(catalog_path) as db:
        plans = {
            query: " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query, params))
            for query, params in queries
        }
    db.close()
    for query, plan in plans.items():
        assert "TEMP B-TREE" not in plan, (query, plan)
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (query, plan)


# --- restarts, migration, cascades -------------------------------------------------------


def test_unfinished_jobs_survive_a_reopen_oldest_first(
    open_catalog: OpenCatalog, clock: ManualClock
) -> None:
    catalog = open_catalog()
    _, _, ids = _jobs_in_states(catalog, clock)
    job = catalog.retrieval_job(ids[1])  # running
    catalog.advance_retrieval_stream(
        job.job_id,
        job.device_ids[0],
        "hq",
        cursor_seq=41,
        cursor_hash=chunk_hash(41),
        chunks_added=42,
        bytes_added=42_000,
        covered_until_ns=SPAN_START_NS + 42 * NS_PER_S,
    )
    catalog.set_retrieval_job_holds(job.job_id, [5])
    before = catalog.unfinished_retrieval_jobs()
    everything = catalog.retrieval_jobs(limit=1000)
    catalog.close()

    reopened = open_catalog()

    after = reopened.unfinished_retrieval_jobs()
    assert after == before
    assert [j.job_id for j in after] == [i for n, i in enumerate(ids) if n % 4 in (0, 1)]
    assert {j.state for j in after} == {JobState.PENDING, JobState.RUNNING}
    resumed = reopened.retrieval_job(job.job_id).streams[0]
    assert (resumed.cursor_seq, resumed.cursor_hash, resumed.chunks) == (41, chunk_hash(41), 42)
    assert reopened.retrieval_jobs(limit=1000) == everything


def _version_1_catalog(path: Path) -> None:
    """A catalog file as the central wrote it before retrieval jobs: one site, one camera."""
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as raw:
        for statement in MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("PRAGMA user_version = 1")
        raw.execute(
            "INSERT INTO sites (site_id, name, dial, scheme, time_zone, parallel_devices, "
            "enabled, created_ns, updated_ns) "
            "VALUES ('s-old', 'Depot', 'site', 'http', 'UTC', 8, 1, 1, 1)"
        )
        raw.execute(
            "INSERT INTO devices (device_id, site_id, remote_device_id, kind, name, "
            "original_name, streams, present, recording, live_feed, central_rule, created_ns, "
            "updated_ns) VALUES ('d-old', 's-old', 'cam-1', 'camera', 'Gate', 'Gate', "
            """'[{"name":"hq","media_kind":"video","codec":"h264","width":1920,"height":1080}]',"""
            " 1, 'site_only', 'on_demand', '{}', 1, 1)"
        )
    raw.close()


def test_a_version_1_catalog_file_is_migrated(
    open_catalog: OpenCatalog, catalog_path: Path
) -> None:
    _version_1_catalog(catalog_path)
    catalog = open_catalog()
    with sqlite3.connect(catalog_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_schema")}
    raw.close()
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2
    assert {"retrieval_jobs", "retrieval_streams", "retrieval_jobs_by_state"} <= tables
    assert [device.device_id for device in catalog.devices("s-old")] == ["d-old"]
    job = catalog.add_retrieval_job(retrieval("s-old", ["d-old"]))
    catalog.close()
    assert open_catalog().retrieval_job(job.job_id) == job


def test_removing_a_site_removes_its_jobs(catalog: SqliteCatalog, catalog_path: Path) -> None:
    shop, shop_devices = catalog.add_site(dial_out_site(), None, [camera("a"), camera("b")])
    bus, bus_devices = catalog.add_site(dial_in_site(), None, [camera("c")])
    gone = catalog.add_retrieval_job(retrieval(shop.site_id, _device_ids(shop_devices, 2)))
    kept = catalog.add_retrieval_job(retrieval(bus.site_id, _device_ids(bus_devices, 1)))

    catalog.remove_site(shop.site_id)

    with pytest.raises(NotFound):
        catalog.retrieval_job(gone.job_id)
    assert catalog.retrieval_jobs() == [kept]
    with sqlite3.connect(catalog_path) as raw:
        left = raw.execute("SELECT job_id FROM retrieval_streams").fetchall()
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()
    assert left == [(kept.job_id,)]


def test_removing_devices_removes_their_streams_and_then_the_job(
    catalog: SqliteCatalog, shop: Cameras, catalog_path: Path
) -> None:
    """The catalog never removes one device (only with its site); a database that did keeps
    every job with at least one stream."""
    site_id, devices = shop
    a, b, c = _device_ids(devices)
    both = catalog.add_retrieval_job(retrieval(site_id, [a, b]))
    only_a = catalog.add_retrieval_job(retrieval(site_id, [a]))
    other = catalog.add_retrieval_job(retrieval(site_id, [c]))

    with sqlite3.connect(catalog_path) as raw:
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("DELETE FROM devices WHERE device_id = ?", (a,))
    raw.close()

    left = catalog.retrieval_job(both.job_id)
    assert (left.device_ids, left.streams) == ((b,), both.streams[1:])
    with pytest.raises(NotFound):
        catalog.retrieval_job(only_a.job_id)
    assert catalog.retrieval_jobs() == [other, left]


def test_job_records_can_be_imported_before_the_catalog() -> None:
    """The records use the catalog's checks and the catalog stores them: either import
    order works in a fresh interpreter."""
    for first in ("central.retrieval.job_state", "central.retrieval.job_records"):
        subprocess.run(
            [sys.executable, "-c", f"import {first}; import central.catalog"],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=60,
        )


# --- kill -9 while cursors advance --------------------------------------------------------

CHUNK_BYTES = 1000


def advance_until_killed(catalog_path: str, key_path: str) -> None:
    """The child of the kill -9 test: one job with one camera; advances its cursor one chunk
    at a time without end, printing each seq once the call returned (durably stored)."""
    with SqliteCatalog.open(
        Path(catalog_path), clock=SystemClock(), secret_box=SecretBox.load_or_create(Path(key_path))
    ) as catalog:
        jobs = catalog.unfinished_retrieval_jobs()
        if not jobs:
            site, devices = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
            jobs = [catalog.add_retrieval_job(retrieval(site.site_id, [devices[0].device_id]))]
            catalog.set_retrieval_job_state(jobs[0].job_id, JobState.RUNNING)
        job = jobs[0]
        cursor = job.streams[0].cursor_seq
        seq = 0 if cursor is None else cursor + 1
        while True:
            catalog.advance_retrieval_stream(
                job.job_id,
                job.device_ids[0],
                "hq",
                cursor_seq=seq,
                cursor_hash=chunk_hash(seq),
                chunks_added=1,
                bytes_added=CHUNK_BYTES,
                covered_until_ns=SPAN_START_NS + (seq + 1) * NS_PER_S,
            )
            print(seq, flush=True)
            seq += 1


def _advance_until_killed(catalog_path: Path, key_path: Path, lines_before_kill: int) -> int:
    """Run the child, SIGKILL it after `lines_before_kill` reported seqs; the last reported."""
    code = (
        "import sys; from tests.central.catalog.test_retrieval_jobs import advance_until_killed; "
        "advance_until_killed(sys.argv[1], sys.argv[2])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(catalog_path), str(key_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    reported: list[int] = []
    while len(reported) < lines_before_kill:
        line = process.stdout.readline()
        if not line:
            process.kill()
            process.wait()
            raise AssertionError(f"the child stopped by itself: {process.stderr.read()}")
        reported.append(int(line))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    reported += [int(line) for line in process.stdout.read().split()]
    process.stdout.close()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return reported[-1]


def test_kill_9_while_advancing_leaves_the_old_cursor_or_the_new(tmp_path: Path) -> None:
    """After each kill the cursor is the last reported chunk or the one after (committed but
    not yet reported), with counters and hash of exactly that cursor: never between."""
    catalog_path = tmp_path / "catalog.sqlite3"
    key_path = tmp_path / "secret.key"
    rng = random.Random(int(os.environ.get("SITELINE_CATALOG_CRASH_SEED", "20261124")))
    for _ in range(3):
        last_reported = _advance_until_killed(catalog_path, key_path, rng.randrange(20, 80))
        with sqlite3.connect(catalog_path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        raw.close()
        with SqliteCatalog.open(
            catalog_path, clock=ManualClock(), secret_box=SecretBox.load_or_create(key_path)
        ) as catalog:
            (job,) = catalog.unfinished_retrieval_jobs()
        stream = job.streams[0]
        seq = stream.cursor_seq
        assert seq in (last_reported, last_reported + 1)
        assert (stream.cursor_hash, stream.chunks, stream.payload_bytes) == (
            chunk_hash(seq),
            seq + 1,
            (seq + 1) * CHUNK_BYTES,
        )
        assert stream.covered_until_ns == SPAN_START_NS + (seq + 1) * NS_PER_S
