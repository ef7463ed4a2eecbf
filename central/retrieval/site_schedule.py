"""Which retrieval streams of one site run next: the scheduling rule, without I/O.

A site has `parallel_devices` slots. Its unfinished jobs are served oldest first, and within
a job its streams in the order the job lists its devices, so an operator's early request is
not overtaken by a later one and a job finishes device after device when slots are few.
A device is retrieved by one stream at a time across all jobs (two jobs over overlapping
spans of one device would fetch the same chunks twice over a scarce link; the second waits
and then finds most of them already at the central).

A stream that caught up with a span still being recorded at the site rests for a while
before it asks again (`resting`), without a slot.

The daily window gates starting: outside it, a job that has not started waits; a job that
started inside it (it is running, or has retrieved something) runs on past the window's
end, as the reference design does, and may start its remaining streams.

Everything here is a function of what it is given; `RetrievalWork` calls it whenever
something changed (a stream ended, a job arrived, the window opened, a slot freed).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from central.retrieval.job_records import JobState, RetrievalJob
from central.retrieval.job_state import is_final


@dataclass(frozen=True, slots=True, order=True)
class StreamKey:
    """One device stream of one job."""

    job_id: str
    device_id: str
    stream: str


def has_started(job: RetrievalJob) -> bool:
    """Whether the job started inside a window (it ran, or brought something back)."""
    return (
        job.state is JobState.RUNNING
        or job.started_ns is not None
        or any(s.chunks > 0 for s in job.streams)
    )


def streams_to_start(
    jobs: Sequence[RetrievalJob],
    running: Collection[StreamKey],
    *,
    parallel: int,
    window_open: bool,
    resting: Collection[StreamKey] = (),
) -> list[StreamKey]:
    """The streams to start now, in order, so that at most `parallel` run at once.

    `jobs` are the site's unfinished jobs (any order: they are taken oldest first);
    `running` the streams running now (they keep their slots); `resting` streams that may
    not start yet (they caught up with a span still being recorded) and take no slot.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, not {parallel}")
    free = parallel - len(running)
    busy_devices = {key.device_id for key in running}
    chosen: list[StreamKey] = []
    for job in sorted(jobs, key=lambda j: (j.created_ns, j.job_id)):
        if free <= 0:
            break
        if is_final(job.state) or not (window_open or has_started(job)):
            continue
        for stream in job.streams:
            key = StreamKey(job.job_id, stream.device_id, stream.stream)
            if (
                is_final(stream.state)
                or key in running
                or key in resting
                or stream.device_id in busy_devices
            ):
                continue
            chosen.append(key)
            busy_devices.add(stream.device_id)
            free -= 1
            if free <= 0:
                break
    return chosen
