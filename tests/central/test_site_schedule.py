"""The scheduling rule of a site's retrieval streams, over any mix of jobs: never more than
`parallel` streams, never two streams of one device, oldest job first, and the window
holding back only jobs that have not started."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from central.retrieval.job_records import JobOrigin, JobState, JobStream, RetrievalJob
from central.retrieval.site_schedule import StreamKey, has_started, streams_to_start
from shared.clock import NS_PER_S

T0 = 1_700_000_000 * NS_PER_S
DEVICES = ("d-aaaaaaaaaa", "d-bbbbbbbbbb", "d-cccccccccc", "d-dddddddddd")
STATES = (JobState.PENDING, JobState.RUNNING, JobState.COMPLETED, JobState.FAILED)


def _stream(device_id: str, state: JobState, chunks: int) -> JobStream:
    if chunks:
        return JobStream(
            device_id,
            "hq",
            cursor_seq=chunks - 1,
            cursor_hash=bytes(32),
            chunks=chunks,
            payload_bytes=chunks * 1000,
            covered_until_ns=T0 + chunks * NS_PER_S,
            state=state,
            failure="the site refused" if state is JobState.FAILED else None,
        )
    failure = "the site refused" if state is JobState.FAILED else None
    return JobStream(device_id, "hq", state=state, failure=failure)


@st.composite
def jobs(draw: st.DrawFn) -> list[RetrievalJob]:
    made = []
    for number in range(draw(st.integers(0, 5))):
        devices = draw(st.lists(st.sampled_from(DEVICES), min_size=1, max_size=3, unique=True))
        streams = tuple(
            _stream(d, draw(st.sampled_from(STATES)), draw(st.integers(0, 2))) for d in devices
        )
        started = draw(st.booleans())
        made.append(
            RetrievalJob(
                job_id=f"j-{number:010d}",
                site_id="s-aaaaaaaaaa",
                device_ids=tuple(devices),
                start_ns=T0,
                end_ns=T0 + 600 * NS_PER_S,
                quality="hq",
                origin=JobOrigin.USER,
                created_by="alice",
                rule_id=None,
                state=JobState.RUNNING if started else JobState.PENDING,
                reason=None,
                streams=streams,
                created_ns=T0 + draw(st.integers(0, 100)) * NS_PER_S,
                updated_ns=T0 + 200 * NS_PER_S,
                started_ns=T0 + 150 * NS_PER_S if started else None,
            )
        )
    return made


@settings(max_examples=300, deadline=None)
@given(jobs(), st.integers(1, 4), st.booleans(), st.data())
def test_the_rule_keeps_its_promises(
    site_jobs: list[RetrievalJob], parallel: int, window_open: bool, data: st.DataObject
) -> None:
    candidates = [
        StreamKey(j.job_id, s.device_id, s.stream)
        for j in site_jobs
        for s in j.streams
        if s.state not in (JobState.COMPLETED, JobState.FAILED)
    ]
    running = (
        data.draw(st.lists(st.sampled_from(candidates), unique=True, max_size=parallel))
        if candidates
        else []
    )
    running = list({k.device_id: k for k in running}.values())  # one per device, as it runs
    resting = data.draw(st.lists(st.sampled_from(candidates), unique=True)) if candidates else []

    chosen = streams_to_start(
        site_jobs, running, parallel=parallel, window_open=window_open, resting=resting
    )

    by_id = {j.job_id: j for j in site_jobs}
    assert len(running) + len(chosen) <= parallel
    devices = [k.device_id for k in [*running, *chosen]]
    assert len(devices) == len(set(devices))  # one stream per device at a time
    for key in chosen:
        job = by_id[key.job_id]
        stream = job.stream_by_device[key.device_id]
        assert stream.state not in (JobState.COMPLETED, JobState.FAILED)
        assert key not in running
        assert key not in resting
        assert window_open or has_started(job)
    # Nothing was passed over that could have run in an older job's stead: every stream
    # left out that could start is of a job no older than the youngest chosen, or was
    # blocked (device busy, resting, window, no slot left).
    if len(running) + len(chosen) < parallel:
        busy = set(devices)
        for job in site_jobs:
            if not (window_open or has_started(job)):
                continue
            for stream in job.streams:
                key = StreamKey(job.job_id, stream.device_id, stream.stream)
                idle = stream.state not in (JobState.COMPLETED, JobState.FAILED)
                free = key not in running and key not in resting and stream.device_id not in busy
                assert not (idle and free and key not in chosen), (key, chosen)


def test_older_jobs_go_first_and_the_window_holds_back_only_unstarted_ones() -> None:
    def job(number: int, devices: tuple[str, ...], *, started: bool) -> RetrievalJob:
        return RetrievalJob(
            job_id=f"j-{number:010d}",
            site_id="s-aaaaaaaaaa",
            device_ids=devices,
            start_ns=T0,
            end_ns=T0 + 600 * NS_PER_S,
            quality="hq",
            origin=JobOrigin.USER,
            created_by="alice",
            rule_id=None,
            state=JobState.PENDING,
            reason=None,
            streams=tuple(_stream(d, JobState.PENDING, 0) for d in devices),
            created_ns=T0 + number * NS_PER_S,
            updated_ns=T0 + number * NS_PER_S,
            started_ns=T0 if started else None,
        )

    young = job(2, DEVICES[:2], started=False)
    old = job(1, DEVICES[1:3], started=False)
    chosen = streams_to_start([young, old], [], parallel=3, window_open=True)
    assert chosen == [
        StreamKey(old.job_id, DEVICES[1], "hq"),
        StreamKey(old.job_id, DEVICES[2], "hq"),
        StreamKey(young.job_id, DEVICES[0], "hq"),  # its DEVICES[1] waits for the old job
    ]
    assert streams_to_start([young, old], [], parallel=3, window_open=False) == []
    began = replace(young, started_ns=T0)
    assert streams_to_start([began, old], [], parallel=1, window_open=False) == [
        StreamKey(young.job_id, DEVICES[0], "hq")
    ]
