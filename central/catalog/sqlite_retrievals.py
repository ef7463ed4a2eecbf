"""Retrieval jobs in the SQLite catalog: the queries, run inside `SqliteCatalog`'s transactions.

Each function takes the open connection (and the catalog clock's `now_ns` when it writes);
`SqliteCatalog` takes its lock, opens the transaction and delegates here. Tables:
`retrieval_jobs` (one row per job, `ordinal` its number in creation order) and
`retrieval_streams` (one row per device stream of a job, with the cursor); see `schema.py`
and docs/design/catalog.md.

Lists read one index range per job state, newest first, and merge them, so a page costs its
`limit` whatever the number of jobs and whichever states are asked for. A page continues
after a job id by that job's `ordinal`, so a job that changed state between two pages
still anchors the next one. The unfinished jobs of one site (or of one device, found among
its site's) are read the same way from the site's ranges, so a site's run or a device's
timeline costs what that site has unfinished, not what every site has.

Rules kept here: a job's devices are devices of its site with a stream of its quality; the
state changes follow `central/retrieval/job_state.py`; a cursor never moves backwards, and
between two cursors lie at least as many seqs as chunks were counted.
"""

# SQL text here is assembled only from this module's fixed table and column names; every
# value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import heapq
import json
import sqlite3
from collections.abc import Collection, Iterator, Sequence

from central.catalog import validation as check
from central.catalog.errors import CatalogError, Conflict, InvalidRecord, NotFound
from central.catalog.ids import new_id
from central.catalog.sqlite_rows import insert_sql, select_list, streams_from_json
from central.retrieval.job_records import (
    JOB_ID_PREFIX,
    JobState,
    JobStream,
    NewRetrievalJob,
    RetrievalJob,
)
from central.retrieval.job_state import check_change, is_final

JOB_COLUMNS = (
    "job_id",
    "ordinal",
    "site_id",
    "start_ns",
    "end_ns",
    "quality",
    "origin",
    "created_by",
    "rule_id",
    "state",
    "reason",
    "at_risk",
    "holds",
    "created_ns",
    "updated_ns",
    "started_ns",
    "finished_ns",
)
STREAM_COLUMNS = (
    "job_id",
    "device_id",
    "stream",
    "position",
    "cursor_seq",
    "cursor_hash",
    "chunks",
    "payload_bytes",
    "covered_until_ns",
    "state",
    "failure",
    "rejected_once",
)
_JOBS = select_list(JOB_COLUMNS)
_STREAMS = select_list(STREAM_COLUMNS)
_JOB_INSERT = insert_sql("retrieval_jobs", JOB_COLUMNS)
_STREAM_INSERT = insert_sql("retrieval_streams", STREAM_COLUMNS)
_STREAM_KEY = "job_id = :job_id AND device_id = :device_id AND stream = :stream"
# The queries of the lists, each one index range read in order (tests check their plans).
LIST_ALL_SQL = f"SELECT {_JOBS} FROM retrieval_jobs WHERE ordinal < ? ORDER BY ordinal DESC LIMIT ?"
LIST_IN_STATE_SQL = (
    f"SELECT {_JOBS} FROM retrieval_jobs WHERE state = ? AND ordinal < ? "
    "ORDER BY ordinal DESC LIMIT ?"
)
LIST_OF_SITE_IN_STATE_SQL = (
    f"SELECT {_JOBS} FROM retrieval_jobs WHERE site_id = ? AND state = ? AND ordinal < ? "
    "ORDER BY ordinal DESC LIMIT ?"
)
ALL_IN_STATE_SQL = f"SELECT {_JOBS} FROM retrieval_jobs WHERE state = ? ORDER BY ordinal"
ALL_OF_SITE_IN_STATE_SQL = (
    f"SELECT {_JOBS} FROM retrieval_jobs WHERE site_id = ? AND state = ? ORDER BY ordinal"
)
# A device's jobs are found among its site's (every device of a job is of the job's site):
# the site's range in one state, each job probed for a stream of the device in
# `retrieval_streams_by_device` (device_id, then the key's job_id). Walking the device's
# streams instead would read its whole history of jobs.
ALL_OF_DEVICE_IN_STATE_SQL = (
    f"SELECT {_JOBS} FROM retrieval_jobs WHERE site_id = ? AND state = ? AND EXISTS "
    "(SELECT 1 FROM retrieval_streams AS s "
    "WHERE s.job_id = retrieval_jobs.job_id AND s.device_id = ?) ORDER BY ordinal"
)
STREAMS_OF_JOBS_SQL = (
    f"SELECT {_STREAMS} FROM retrieval_streams WHERE job_id IN ({{marks}}) "
    "ORDER BY job_id, position"
)
_ID_ATTEMPTS = 8
_IDS_PER_QUERY = 500  # well below SQLite's limit on parameters in one statement
_NO_ANCHOR = 2**63 - 1  # above every ordinal: "from the newest"

Params = dict[str, object]


# --- writing -------------------------------------------------------------------------------


def insert_job(db: sqlite3.Connection, new: NewRetrievalJob, *, now_ns: int) -> RetrievalJob:
    """Store `new` as a pending job with a fresh stream per device; the job as stored.
    `NotFound` for an unknown site; `InvalidRecord` naming a device that is unknown, of
    another site, or without a stream of the job's quality."""
    if not isinstance(new, NewRetrievalJob):
        raise InvalidRecord("job", f"must be a NewRetrievalJob, not {type(new).__name__}")
    if db.execute("SELECT 1 FROM sites WHERE site_id = ?", (new.site_id,)).fetchone() is None:
        raise NotFound("site", new.site_id)
    _check_devices(db, new)
    job = RetrievalJob(
        job_id=_unused_job_id(db),
        **{f.name: getattr(new, f.name) for f in dataclasses.fields(NewRetrievalJob)},
        state=JobState.PENDING,
        reason=None,
        streams=tuple(JobStream(device_id, new.quality) for device_id in new.device_ids),
        created_ns=now_ns,
        updated_ns=now_ns,
    )
    ordinal = db.execute("SELECT coalesce(max(ordinal), 0) + 1 FROM retrieval_jobs").fetchone()
    db.execute(_JOB_INSERT, _job_params(job, ordinal[0]))
    for position, stream in enumerate(job.streams):
        db.execute(_STREAM_INSERT, _stream_params(job.job_id, position, stream))
    return job


def change_job_state(
    db: sqlite3.Connection,
    job_id: str,
    state: JobState,
    *,
    reason: str | None,
    at_risk: bool | None,
    now_ns: int,
) -> RetrievalJob:
    """Move the job to `state` (`JobTransitionError` when the rules refuse) with `reason`
    (None: none) and `at_risk` (None: unchanged). Entering running stamps `started_ns` the
    first time; a final state stamps `finished_ns`. A job stopped or failed stops its
    streams that were not final; a job completes only when all its streams have."""
    before = job_in(db, job_id)
    target = JobState(check.one_of("state", state, [s.value for s in JobState]))
    check_change(before.state, target, f"job {job_id}")
    streams = before.streams
    if is_final(target):
        unfinished = [s for s in streams if not is_final(s.state)]
        if target is JobState.COMPLETED and unfinished:
            raise Conflict(
                f"job {job_id} cannot complete: the {unfinished[0].stream} stream of device "
                f"{unfinished[0].device_id} is {unfinished[0].state}"
            )
        streams = tuple(
            s if is_final(s.state) else dataclasses.replace(s, state=JobState.STOPPED)
            for s in streams
        )
    after = dataclasses.replace(
        before,
        state=target,
        reason=reason,
        at_risk=before.at_risk if at_risk is None else at_risk,
        streams=streams,
        updated_ns=now_ns,
        started_ns=now_ns
        if before.started_ns is None and target is JobState.RUNNING
        else before.started_ns,
        finished_ns=now_ns if is_final(target) else None,
    )
    db.execute(
        "UPDATE retrieval_jobs SET state = ?, reason = ?, at_risk = ?, updated_ns = ?, "
        "started_ns = ?, finished_ns = ? WHERE job_id = ?",
        (
            after.state.value,
            after.reason,
            int(after.at_risk),
            after.updated_ns,
            after.started_ns,
            after.finished_ns,
            job_id,
        ),
    )
    for old, new in zip(before.streams, after.streams, strict=True):
        if new != old:
            _update_stream(db, job_id, new)
    return after


def set_job_holds(
    db: sqlite3.Connection, job_id: str, hold_ids: Sequence[int], *, now_ns: int
) -> RetrievalJob:
    """Replace the ids of the holds placed at the site for the job (empty: released)."""
    if isinstance(hold_ids, str | bytes) or not isinstance(hold_ids, Sequence):
        raise InvalidRecord("holds", "must be a sequence of hold ids")
    before = job_in(db, job_id)
    after = dataclasses.replace(before, holds=tuple(hold_ids), updated_ns=now_ns)
    db.execute(
        "UPDATE retrieval_jobs SET holds = ?, updated_ns = ? WHERE job_id = ?",
        (json.dumps(list(after.holds)), now_ns, job_id),
    )
    return after


def advance_stream(
    db: sqlite3.Connection,
    job_id: str,
    device_id: str,
    stream: str,
    *,
    cursor_seq: int,
    cursor_hash: bytes,
    chunks_added: int,
    bytes_added: int,
    covered_until_ns: int,
    now_ns: int,
) -> JobStream:
    """Move the stream's cursor to the chunk `cursor_seq` (hash `cursor_hash`) after
    `chunks_added` chunks of `bytes_added` bytes were committed, the last ending at
    `covered_until_ns`. Repeating the latest advance exactly changes nothing (a retry after
    an unknown outcome counts nothing twice). `InvalidRecord` for a cursor that would move
    backwards, for another hash at the same seq, and for more chunks than seqs passed;
    `Conflict` when the stream completed or failed."""
    check.integer("cursor_seq", cursor_seq, low=0)
    check.integer("chunks_added", chunks_added, low=0)
    check.integer("bytes_added", bytes_added, low=0)
    check.instant("covered_until_ns", covered_until_ns)
    before = stream_in(db, job_id, device_id, stream)
    where = f"the {stream} stream of device {device_id} in job {job_id}"
    if before.state in (JobState.COMPLETED, JobState.FAILED):
        # A stopped stream still counts the chunks that were under way when it stopped.
        raise Conflict(f"{where} is {before.state}; its cursor no longer moves")
    if before.cursor_seq is not None:
        if cursor_seq < before.cursor_seq:
            raise InvalidRecord(
                "cursor_seq",
                f"{where}: the cursor never moves backwards "
                f"(from seq {before.cursor_seq} to {cursor_seq})",
            )
        if cursor_seq == before.cursor_seq:
            if cursor_hash != before.cursor_hash:
                raise InvalidRecord(
                    "cursor_hash", f"{where}: seq {cursor_seq} was committed with another hash"
                )
            return before
    passed = cursor_seq + 1 if before.cursor_seq is None else cursor_seq - before.cursor_seq
    if not 1 <= chunks_added <= passed:
        raise InvalidRecord(
            "chunks_added",
            f"{where}: moving the cursor to seq {cursor_seq} commits 1 to {passed} chunks, "
            f"not {chunks_added}",
        )
    after = dataclasses.replace(
        before,
        cursor_seq=cursor_seq,
        cursor_hash=cursor_hash,
        chunks=before.chunks + chunks_added,
        payload_bytes=before.payload_bytes + bytes_added,
        # Time covered only grows, even if the site's clock stepped back between chunks.
        covered_until_ns=max(covered_until_ns, before.covered_until_ns or 0),
    )
    _update_stream(db, job_id, after)
    _touch_job(db, job_id, now_ns)
    return after


def change_stream_state(
    db: sqlite3.Connection,
    job_id: str,
    device_id: str,
    stream: str,
    state: JobState,
    *,
    failure: str | None,
    rejected_once: bool | None,
    now_ns: int,
) -> JobStream:
    """Move one stream of the job to `state` (`JobTransitionError` when the rules refuse;
    `failure` is given exactly for failed), and set `rejected_once` (None: unchanged)."""
    before = stream_in(db, job_id, device_id, stream)
    target = JobState(check.one_of("state", state, [s.value for s in JobState]))
    check_change(before.state, target, f"the {stream} stream of device {device_id} in job {job_id}")
    after = dataclasses.replace(
        before,
        state=target,
        failure=failure,
        rejected_once=before.rejected_once if rejected_once is None else rejected_once,
    )
    if after != before:
        _update_stream(db, job_id, after)
        _touch_job(db, job_id, now_ns)
    return after


# --- reading -------------------------------------------------------------------------------


def job_in(db: sqlite3.Connection, job_id: str) -> RetrievalJob:
    row = db.execute(f"SELECT {_JOBS} FROM retrieval_jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound("retrieval job", job_id)
    return _with_streams(db, [row])[0]


def stream_in(db: sqlite3.Connection, job_id: str, device_id: str, stream: str) -> JobStream:
    row = db.execute(
        f"SELECT {_STREAMS} FROM retrieval_streams WHERE {_STREAM_KEY}",
        {"job_id": job_id, "device_id": device_id, "stream": stream},
    ).fetchone()
    if row is None:
        job_in(db, job_id)  # NotFound for the job, when it is the job that is missing
        raise NotFound("retrieval stream", f"{job_id}/{device_id}/{stream}")
    return _stream_from_row(row)


def jobs_page(
    db: sqlite3.Connection,
    *,
    states: Collection[JobState] | None,
    site_id: str | None,
    after: str | None,
    limit: int,
    max_limit: int,
) -> list[RetrievalJob]:
    """At most `limit` jobs, newest first, in `states` (None: all) of `site_id` (None: all
    sites), from the job after `after` (a job id; None: from the newest). `NotFound` for an
    unknown site or `after`."""
    check.integer("limit", limit, low=1, high=max_limit)
    wanted = _states(states)
    if site_id is not None and (
        db.execute("SELECT 1 FROM sites WHERE site_id = ?", (site_id,)).fetchone() is None
    ):
        raise NotFound("site", site_id)
    anchor = _NO_ANCHOR if after is None else _ordinal_of(db, after)
    if site_id is None and wanted == tuple(JobState):
        ranges = [db.execute(LIST_ALL_SQL, (anchor, limit)).fetchall()]
    elif site_id is None:
        ranges = [
            db.execute(LIST_IN_STATE_SQL, (state.value, anchor, limit)).fetchall()
            for state in wanted
        ]
    else:
        ranges = [
            db.execute(LIST_OF_SITE_IN_STATE_SQL, (site_id, state.value, anchor, limit)).fetchall()
            for state in wanted
        ]
    merged = heapq.merge(*ranges, key=lambda row: int(row["ordinal"]), reverse=True)
    return _with_streams(db, [row for _, row in zip(range(limit), merged, strict=False)])


def unfinished_jobs(
    db: sqlite3.Connection, *, site_id: str | None = None, device_id: str | None = None
) -> list[RetrievalJob]:
    """The pending and running jobs, oldest first: every one (what an engine resumes at
    start-up), or those of `site_id`, or those with a stream of `device_id` (both given:
    the device's, when it is of that site). `NotFound` for an unknown site or device."""
    if site_id is not None and (
        db.execute("SELECT 1 FROM sites WHERE site_id = ?", (site_id,)).fetchone() is None
    ):
        raise NotFound("site", site_id)
    unfinished = (JobState.PENDING.value, JobState.RUNNING.value)
    reads: list[tuple[str, tuple[str, ...]]]
    if device_id is not None:
        row = db.execute("SELECT site_id FROM devices WHERE device_id = ?", (device_id,))
        found = row.fetchone()
        if found is None:
            raise NotFound("device", device_id)
        if site_id is not None and found["site_id"] != site_id:
            return []
        reads = [(ALL_OF_DEVICE_IN_STATE_SQL, (found["site_id"], s, device_id)) for s in unfinished]
    elif site_id is not None:
        reads = [(ALL_OF_SITE_IN_STATE_SQL, (site_id, s)) for s in unfinished]
    else:
        reads = [(ALL_IN_STATE_SQL, (s,)) for s in unfinished]
    ranges = [db.execute(query, params).fetchall() for query, params in reads]
    return _with_streams(db, list(heapq.merge(*ranges, key=lambda row: int(row["ordinal"]))))


# --- rows ----------------------------------------------------------------------------------


def _check_devices(db: sqlite3.Connection, new: NewRetrievalJob) -> None:
    found: dict[str, sqlite3.Row] = {}
    for part, marks in _id_parts(new.device_ids):
        rows = db.execute(
            f"SELECT device_id, site_id, streams FROM devices WHERE device_id IN ({marks})", part
        ).fetchall()
        found.update({row["device_id"]: row for row in rows})
    for device_id in new.device_ids:
        row = found.get(device_id)
        if row is None:
            raise InvalidRecord("device_ids", f"device {device_id} does not exist")
        if row["site_id"] != new.site_id:
            raise InvalidRecord(
                "device_ids",
                f"device {device_id} is a device of site {row['site_id']}, not of {new.site_id}",
            )
        names = [info.name for info in streams_from_json(row["streams"])]
        if new.quality not in names:
            raise InvalidRecord(
                "device_ids",
                f"device {device_id} has no {new.quality} stream "
                f"(it has: {', '.join(names) or 'none'})",
            )


def _states(states: Collection[JobState] | None) -> tuple[JobState, ...]:
    if states is None:
        return tuple(JobState)
    if isinstance(states, str):
        raise InvalidRecord("states", "must be a collection of job states, not one string")
    allowed = [s.value for s in JobState]
    return tuple(dict.fromkeys(JobState(check.one_of("states", s, allowed)) for s in states))


def _ordinal_of(db: sqlite3.Connection, job_id: str) -> int:
    row = db.execute("SELECT ordinal FROM retrieval_jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound("retrieval job", job_id)
    return int(row[0])


def _unused_job_id(db: sqlite3.Connection) -> str:
    for _ in range(_ID_ATTEMPTS):
        candidate = new_id(JOB_ID_PREFIX)
        taken = db.execute("SELECT 1 FROM retrieval_jobs WHERE job_id = ?", (candidate,))
        if taken.fetchone() is None:
            return candidate
    raise CatalogError(f"no unused retrieval job id after {_ID_ATTEMPTS} random draws")


def _id_parts(ids: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), _IDS_PER_QUERY):
        part = wanted[start : start + _IDS_PER_QUERY]
        yield part, ",".join("?" * len(part))


def _with_streams(db: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[RetrievalJob]:
    """The jobs of `rows`, in their order, each with its streams in device order."""
    streams: dict[str, list[JobStream]] = {row["job_id"]: [] for row in rows}
    for part, marks in _id_parts(list(streams)):
        for stream_row in db.execute(STREAMS_OF_JOBS_SQL.format(marks=marks), part):
            streams[stream_row["job_id"]].append(_stream_from_row(stream_row))
    return [_job_from_row(row, tuple(streams[row["job_id"]])) for row in rows]


def _touch_job(db: sqlite3.Connection, job_id: str, now_ns: int) -> None:
    db.execute(
        "UPDATE retrieval_jobs SET updated_ns = max(updated_ns, ?) WHERE job_id = ?",
        (now_ns, job_id),
    )


def _update_stream(db: sqlite3.Connection, job_id: str, stream: JobStream) -> None:
    params = _stream_params(job_id, 0, stream)
    del params["position"]
    assignments = ", ".join(
        f"{column} = :{column}"
        for column in STREAM_COLUMNS
        if column not in ("job_id", "device_id", "stream", "position")
    )
    db.execute(f"UPDATE retrieval_streams SET {assignments} WHERE {_STREAM_KEY}", params)


def _job_params(job: RetrievalJob, ordinal: int) -> Params:
    return {
        "job_id": job.job_id,
        "ordinal": ordinal,
        "site_id": job.site_id,
        "start_ns": job.start_ns,
        "end_ns": job.end_ns,
        "quality": job.quality,
        "origin": job.origin.value,
        "created_by": job.created_by,
        "rule_id": job.rule_id,
        "state": job.state.value,
        "reason": job.reason,
        "at_risk": int(job.at_risk),
        "holds": json.dumps(list(job.holds)),
        "created_ns": job.created_ns,
        "updated_ns": job.updated_ns,
        "started_ns": job.started_ns,
        "finished_ns": job.finished_ns,
    }


def _job_from_row(row: sqlite3.Row, streams: tuple[JobStream, ...]) -> RetrievalJob:
    return RetrievalJob(
        job_id=row["job_id"],
        site_id=row["site_id"],
        device_ids=tuple(stream.device_id for stream in streams),
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        quality=row["quality"],
        origin=row["origin"],
        created_by=row["created_by"],
        rule_id=row["rule_id"],
        state=row["state"],
        reason=row["reason"],
        streams=streams,
        created_ns=row["created_ns"],
        updated_ns=row["updated_ns"],
        started_ns=row["started_ns"],
        finished_ns=row["finished_ns"],
        holds=tuple(json.loads(row["holds"])),
        at_risk=bool(row["at_risk"]),
    )


def _stream_params(job_id: str, position: int, stream: JobStream) -> Params:
    return {
        "job_id": job_id,
        "device_id": stream.device_id,
        "stream": stream.stream,
        "position": position,
        "cursor_seq": stream.cursor_seq,
        "cursor_hash": stream.cursor_hash,
        "chunks": stream.chunks,
        "payload_bytes": stream.payload_bytes,
        "covered_until_ns": stream.covered_until_ns,
        "state": stream.state.value,
        "failure": stream.failure,
        "rejected_once": int(stream.rejected_once),
    }


def _stream_from_row(row: sqlite3.Row) -> JobStream:
    return JobStream(
        device_id=row["device_id"],
        stream=row["stream"],
        cursor_seq=row["cursor_seq"],
        cursor_hash=row["cursor_hash"],
        chunks=row["chunks"],
        payload_bytes=row["payload_bytes"],
        covered_until_ns=row["covered_until_ns"],
        state=row["state"],
        failure=row["failure"],
        rejected_once=bool(row["rejected_once"]),
    )
