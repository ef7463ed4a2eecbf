"""The state rules of retrieval jobs and of their streams: one table, no I/O.

A job, and each device stream in it, is pending (waiting for the site, the window, a slot or
disk space), running, or in one of three final states: stopped (by a user), completed, or
failed. `ALLOWED` below is the whole set of changes; everything else is refused with
`JobTransitionError`. Staying in a state that is not final is allowed (to change the
reason a job waits); a final state is never left, nor entered twice.

`JobTransitionError` is a catalog `Conflict`: the change contradicts what is stored (stopping
a job that completed), and the catalog lets it propagate as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from central.catalog.errors import Conflict
from central.retrieval.job_records import JobState

_P, _R = JobState.PENDING, JobState.RUNNING
_S, _C, _F = JobState.STOPPED, JobState.COMPLETED, JobState.FAILED

ALLOWED: dict[JobState, frozenset[JobState]] = {
    # Pending to completed: nothing was left to retrieve (all there already, or an empty
    # span at the site), so it never had to run.
    _P: frozenset({_P, _R, _S, _C, _F}),
    # Running back to pending: the link died, the window closed, the disk filled up.
    _R: frozenset({_R, _P, _S, _C, _F}),
    _S: frozenset(),
    _C: frozenset(),
    _F: frozenset(),
}
"""For each state, the states it may change to (itself included when not final)."""

FINAL_STATES = frozenset(state for state, targets in ALLOWED.items() if not targets)
UNFINISHED_STATES = frozenset(JobState) - FINAL_STATES


class JobTransitionError(Conflict):
    """A state change the rules refuse; `before` and `after` name it."""

    def __init__(self, before: JobState, after: JobState, what: str = "a job") -> None:
        why = f"{before} is final" if before in FINAL_STATES else "not allowed"
        super().__init__(f"{what} cannot go from {before} to {after}: {why}")
        self.before = before
        self.after = after


def is_final(state: JobState) -> bool:
    return state in FINAL_STATES


def may_change(before: JobState, after: JobState) -> bool:
    """Whether a job or a stream in `before` may go to `after`."""
    return after in ALLOWED[before]


def check_change(before: JobState, after: JobState, what: str = "a job") -> None:
    """`JobTransitionError` unless `before` may go to `after`; `what` names the subject."""
    if not may_change(before, after):
        raise JobTransitionError(before, after, what)


def state_from_streams(states: Iterable[JobState]) -> JobState:
    """The state a job is in, given its streams' states.

    Running while any stream runs; else pending while any waits; once all are final:
    failed if any failed (the job did not bring all it was asked for), else stopped if any
    was stopped, else completed. A job has at least one stream (ValueError otherwise).
    """
    present = frozenset(states)
    if not present:
        raise ValueError("a job has at least one stream")
    for state in (_R, _P, _F, _S):
        if state in present:
            return state
    return _C
