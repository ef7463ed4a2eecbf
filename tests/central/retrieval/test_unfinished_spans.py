"""What a device's unfinished retrieval jobs have yet to bring, as the timeline's `running`
and `pending` spans (`spans_to_bring`, pure): one table of jobs in every state a stream
can be in, then the clipping to the asked range."""

from __future__ import annotations

import dataclasses

import pytest

from central.merged_timeline import Interval, RetrievalSpans
from central.retrieval.job_records import JobOrigin, JobState, JobStream, RetrievalJob
from central.retrieval.retrieval_service import spans_to_bring
from shared.clock import NS_PER_S

CAM = "d-cam"
OTHER = "d-other"
START = 1_000 * NS_PER_S
END = 1_600 * NS_PER_S
P, R = JobState.PENDING, JobState.RUNNING


def _stream(state: JobState, covered_s: int | None = None, device_id: str = CAM) -> JobStream:
    """The device's hq stream in `state`, covered up to START + `covered_s` (None: no chunk
    yet)."""
    if covered_s is None:
        return JobStream(device_id, "hq", state=state, failure=_failure(state))
    return JobStream(
        device_id,
        "hq",
        cursor_seq=covered_s // 2,
        cursor_hash=bytes(32),
        chunks=covered_s // 2 + 1,
        payload_bytes=1000,
        covered_until_ns=START + covered_s * NS_PER_S,
        state=state,
        failure=_failure(state),
    )


def _failure(state: JobState) -> str | None:
    return "the site refused" if state is JobState.FAILED else None


def _job(state: JobState, *streams: JobStream) -> RetrievalJob:
    return RetrievalJob(
        job_id="j-aaaaaaaaaa",
        site_id="s-shop",
        device_ids=tuple(s.device_id for s in streams),
        start_ns=START,
        end_ns=END,
        quality="hq",
        origin=JobOrigin.USER,
        created_by="alice",
        rule_id=None,
        state=state,
        reason=None,
        streams=streams,
        created_ns=START,
        updated_ns=START,
    )


def _s(seconds: int) -> int:
    return START + seconds * NS_PER_S


WHOLE = (START, END)
CASES: list[tuple[str, RetrievalJob, list[Interval], list[Interval]]] = [
    # (what, the job, pending, running)
    ("asked for, not started", _job(P, _stream(P)), [WHOLE], []),
    ("running, no chunk yet", _job(R, _stream(R)), [], [WHOLE]),
    ("running, 100 s brought", _job(R, _stream(R, 100)), [], [(_s(100), END)]),
    (
        "resting between two requests for more of the span",
        _job(R, _stream(P, 100)),
        [],
        [(_s(100), END)],
    ),
    (
        "waiting for its first slot while another device runs",
        _job(R, _stream(R, 50, OTHER), _stream(P)),
        [WHOLE],
        [],
    ),
    ("the job waits for the site's link again", _job(P, _stream(P, 100)), [(_s(100), END)], []),
    (
        "the device's stream completed",
        _job(R, _stream(JobState.COMPLETED, 600), _stream(R, 0, OTHER)),
        [],
        [],
    ),
    ("the device's stream failed", _job(R, _stream(JobState.FAILED), _stream(R, 0, OTHER)), [], []),
    (
        "the device's stream was stopped",
        _job(JobState.STOPPED, _stream(JobState.STOPPED, 9)),
        [],
        [],
    ),
    ("the device is not in the job", _job(R, _stream(R, 0, OTHER)), [], []),
    ("covered to its end, not yet marked completed", _job(R, _stream(R, 600)), [], []),
]


@pytest.mark.parametrize(("what", "job", "pending", "running"), CASES, ids=[c[0] for c in CASES])
def test_each_stream_state_gives_its_kind(
    what: str, job: RetrievalJob, pending: list[Interval], running: list[Interval]
) -> None:
    assert spans_to_bring([job], CAM, 0, 2**62) == RetrievalSpans(pending, running), what


def test_spans_are_clipped_to_the_range_and_kept_per_job() -> None:
    waiting = _job(P, _stream(P))
    moving = dataclasses.replace(_job(R, _stream(R, 100)), job_id="j-bbbbbbbbbb")
    assert spans_to_bring([waiting, moving], CAM, _s(50), _s(300)) == RetrievalSpans(
        pending=[(_s(50), _s(300))], running=[(_s(100), _s(300))]
    )
    # Before the covered instant, or outside the job, there is nothing to bring.
    assert spans_to_bring([moving], CAM, _s(0), _s(100)) == RetrievalSpans([], [])
    assert spans_to_bring([waiting, moving], CAM, END, END + NS_PER_S) == RetrievalSpans([], [])
    assert spans_to_bring([], CAM, START, END) == RetrievalSpans([], [])
