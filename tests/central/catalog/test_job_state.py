"""The retrieval job state rules: every pair of states, and the job's state from its streams."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.catalog import Conflict
from central.retrieval.job_records import JobState
from central.retrieval.job_state import (
    FINAL_STATES,
    UNFINISHED_STATES,
    JobTransitionError,
    check_change,
    is_final,
    may_change,
    state_from_streams,
)

P, R, S, C, F = (
    JobState.PENDING,
    JobState.RUNNING,
    JobState.STOPPED,
    JobState.COMPLETED,
    JobState.FAILED,
)

# The rules, written out once more by hand: (before, after) pairs that are allowed.
EXPECTED_ALLOWED = {
    (P, P), (P, R), (P, S), (P, C), (P, F),
    (R, R), (R, P), (R, S), (R, C), (R, F),
}  # fmt: skip


def test_final_and_unfinished_states() -> None:
    assert {S, C, F} == FINAL_STATES
    assert {P, R} == UNFINISHED_STATES
    assert [state for state in JobState if is_final(state)] == [S, C, F]


@pytest.mark.parametrize(("before", "after"), list(itertools.product(JobState, JobState)))
def test_every_pair_of_states(before: JobState, after: JobState) -> None:
    allowed = (before, after) in EXPECTED_ALLOWED
    assert may_change(before, after) is allowed
    if allowed:
        check_change(before, after)
        return
    with pytest.raises(JobTransitionError) as refused:
        check_change(before, after, "job j-x")
    assert refused.value.before is before
    assert refused.value.after is after
    assert str(refused.value).startswith(f"job j-x cannot go from {before} to {after}: ")


def test_a_refusal_says_why() -> None:
    with pytest.raises(
        JobTransitionError, match=r"^a job cannot go from completed to running: completed is final$"
    ):
        check_change(C, R)
    with pytest.raises(
        JobTransitionError, match=r"^job j-x cannot go from stopped to pending: stopped is final$"
    ):
        check_change(S, P, "job j-x")
    with pytest.raises(
        JobTransitionError,
        match=r"^a job cannot go from stopped to stopped: stopped is final$",
    ):
        check_change(S, S)


def test_a_refused_transition_is_a_catalog_conflict() -> None:
    """The API answers 409 for it, like any other change that contradicts what is stored."""
    assert issubclass(JobTransitionError, Conflict)


@pytest.mark.parametrize(
    ("streams", "job"),
    [
        ([P], P),
        ([R], R),
        ([S], S),
        ([C], C),
        ([F], F),
        ([C, R, P], R),  # one still running: the job runs
        ([C, P], P),  # the window closed with one device left
        ([F, R], R),  # a failure is reported once the others are done
        ([C, C, C], C),
        ([C, S], S),  # stopped by a user: what was retrieved stays
        ([C, S, F], F),  # a device that could not be retrieved fails the job
    ],
)
def test_the_job_state_follows_its_streams(streams: list[JobState], job: JobState) -> None:
    assert state_from_streams(streams) is job


def test_a_job_without_streams_has_no_state() -> None:
    with pytest.raises(ValueError, match="at least one stream"):
        state_from_streams([])


@given(st.lists(st.sampled_from(list(JobState)), min_size=1, max_size=64))
def test_the_job_state_from_any_streams(streams: list[JobState]) -> None:
    job = state_from_streams(streams)
    assert job in streams
    assert is_final(job) == all(is_final(state) for state in streams)
    assert (job is C) == all(state is C for state in streams)
    assert (job is R) == (R in streams)


@given(st.lists(st.sampled_from(list(JobState)), min_size=1, max_size=20))
def test_any_path_never_leaves_a_final_state(path: list[JobState]) -> None:
    """Walk `path`, skipping the steps the rules refuse: only a final state refuses one, and
    once a walk reached a final state it stays there."""
    state = P
    first_final: JobState | None = None
    for step in path:
        if may_change(state, step):
            state = step
        else:
            assert is_final(state)
        if first_final is None and is_final(state):
            first_final = state
    assert first_final is None or state is first_final
