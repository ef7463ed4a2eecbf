"""Retrieval jobs as records: what a caller asks for, and what the catalog keeps of it.

A job is a time span x a set of one site's devices x a quality. The catalog keeps one
`JobStream` per device (its stream is the quality's stream, "hq" or "lq") with the cursor of
the last chunk the central durably committed, so a job resumes after a restart exactly
where it stopped. Every record checks its fields in `__post_init__` the way
`central/catalog/records.py` does, raising `InvalidRecord` naming the field, so a record
that exists is valid whether it came from a request, from `dataclasses.replace` or from a
database row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, get_args

from central.catalog import validation as check
from central.catalog.errors import InvalidRecord

Quality = Literal["hq", "lq"]
"""Which of a device's recordings: high quality (kept at the site) or the low one."""
QUALITIES: tuple[str, ...] = get_args(Quality)
DEFAULT_QUALITY: Quality = "hq"

JOB_ID_PREFIX = "j-"
MAX_JOB_DEVICES = 64
CURSOR_HASH_BYTES = 32
"""A cursor names its chunk by seq and by the chunk's SHA-256 (`TransferCursor`)."""
MAX_JOB_HOLDS = 1024
MAX_REASON_CHARS = check.MAX_MESSAGE_CHARS


class JobState(StrEnum):
    """Where a job, or one stream of it, is; `job_state.py` holds the allowed changes."""

    PENDING = "pending"  # waiting for the site, the window, a slot, or disk space
    RUNNING = "running"
    STOPPED = "stopped"  # by a user; what was retrieved stays
    COMPLETED = "completed"
    FAILED = "failed"  # with a reason


class JobOrigin(StrEnum):
    """Who asked for the job."""

    USER = "user"  # over the API or the CLI
    RULE = "rule"  # a rule on an event or a schedule
    RECONNECT = "reconnect"  # "retrieve when the connection is restored"


def _normalise(record: object, name: str, value: object) -> None:
    """Store a normal form into a frozen record (only ever from its `__post_init__`)."""
    object.__setattr__(record, name, value)


def _enum(field: str, value: object, kind: type[JobState] | type[JobOrigin]) -> None:
    check.one_of(field, value, [member.value for member in kind])


def _check_request(job: NewRetrievalJob | RetrievalJob) -> None:
    """Shared by `NewRetrievalJob` and `RetrievalJob`: the same fields obey the same rules."""
    check.text("site_id", job.site_id, max_chars=check.MAX_ID_CHARS)
    if not isinstance(job.device_ids, tuple | list):
        raise InvalidRecord("device_ids", "must be a sequence of device ids")
    device_ids = tuple(job.device_ids)
    if not 1 <= len(device_ids) <= MAX_JOB_DEVICES:
        raise InvalidRecord(
            "device_ids", f"must name 1 to {MAX_JOB_DEVICES} devices, not {len(device_ids)}"
        )
    for device_id in device_ids:
        check.text("device_ids", device_id, max_chars=check.MAX_ID_CHARS)
    if len(set(device_ids)) != len(device_ids):
        twice = sorted({d for d in device_ids if device_ids.count(d) > 1})
        raise InvalidRecord("device_ids", f"names a device twice: {', '.join(twice)}")
    _normalise(job, "device_ids", device_ids)
    check.instant("start_ns", job.start_ns)
    check.instant("end_ns", job.end_ns)
    if job.end_ns <= job.start_ns:
        raise InvalidRecord("end_ns", "the span must end after it starts")
    check.one_of("quality", job.quality, QUALITIES)
    _enum("origin", job.origin, JobOrigin)
    _normalise(job, "origin", JobOrigin(job.origin))
    check.optional_text("created_by", job.created_by, max_chars=check.MAX_ID_CHARS)
    check.optional_text("rule_id", job.rule_id, max_chars=check.MAX_ID_CHARS)
    if (job.origin is JobOrigin.RULE) != (job.rule_id is not None):
        raise InvalidRecord("rule_id", "a job has a rule_id exactly when a rule made it")


@dataclass(frozen=True, slots=True)
class NewRetrievalJob:
    """A retrieval as a caller asks for it: `[start_ns, end_ns)` of `device_ids` (all of
    `site_id`, in the order given, 1 to 64, each once) in `quality`. `created_by` is the
    user or the rule that asked (None: the central itself); `rule_id` is set exactly when
    `origin` is a rule."""

    site_id: str
    device_ids: tuple[str, ...]
    start_ns: int
    end_ns: int
    quality: Quality = DEFAULT_QUALITY
    origin: JobOrigin = JobOrigin.USER
    created_by: str | None = None
    rule_id: str | None = None

    def __post_init__(self) -> None:
        _check_request(self)


@dataclass(frozen=True, slots=True)
class JobStream:
    """One device stream of a job and how far its retrieval got.

    `cursor_seq`/`cursor_hash`: the last chunk the central durably committed (both None
    before the first); the cursor never moves backwards. `chunks`/`payload_bytes`: what was
    committed so far; `covered_until_ns`: the end instant of the latest chunk committed.
    `failure` says why a failed stream failed. `rejected_once`: a chunk of this stream
    failed verification and was re-requested; a second failure is reported, not retried.
    """

    device_id: str
    stream: str
    cursor_seq: int | None = None
    cursor_hash: bytes | None = None
    chunks: int = 0
    payload_bytes: int = 0
    covered_until_ns: int | None = None
    state: JobState = JobState.PENDING
    failure: str | None = None
    rejected_once: bool = False

    def __post_init__(self) -> None:
        check.text("device_id", self.device_id, max_chars=check.MAX_ID_CHARS)
        check.text("stream", self.stream, max_chars=check.MAX_STREAM_NAME_CHARS)
        check.optional_integer("cursor_seq", self.cursor_seq, low=0)
        if self.cursor_hash is not None and (
            not isinstance(self.cursor_hash, bytes) or len(self.cursor_hash) != CURSOR_HASH_BYTES
        ):
            raise InvalidRecord("cursor_hash", f"must be {CURSOR_HASH_BYTES} bytes (a SHA-256)")
        if (self.cursor_seq is None) != (self.cursor_hash is None):
            raise InvalidRecord("cursor_hash", "cursor_seq and cursor_hash are set together")
        check.integer("chunks", self.chunks, low=0)
        check.integer("payload_bytes", self.payload_bytes, low=0)
        if self.covered_until_ns is not None:
            check.instant("covered_until_ns", self.covered_until_ns)
        if self.cursor_seq is None and (
            self.chunks or self.payload_bytes or self.covered_until_ns is not None
        ):
            raise InvalidRecord("cursor_seq", "a stream with chunks committed has a cursor")
        _enum("state", self.state, JobState)
        _normalise(self, "state", JobState(self.state))
        check.optional_text("failure", self.failure, max_chars=MAX_REASON_CHARS)
        if (self.failure is not None) != (self.state is JobState.FAILED):
            raise InvalidRecord("failure", "a stream has a failure exactly when it failed")
        check.flag("rejected_once", self.rejected_once)


@dataclass(frozen=True, slots=True)
class RetrievalJob:
    """A job as stored. `job_id` is the catalog's (`j-` and ten base32 characters).

    `reason`: why it waits, why it failed, or what is at risk (None: nothing to say).
    `streams`: one per device, in the order of `device_ids`. `started_ns` is set when it
    first runs, `finished_ns` when it reaches a final state. `holds`: the ids of the holds
    placed at the site for its span; `at_risk`: a hold was refused or the site's retention
    is shorter than the backlog, so some of the span may be deleted before it arrives.
    """

    job_id: str
    site_id: str
    device_ids: tuple[str, ...]
    start_ns: int
    end_ns: int
    quality: Quality
    origin: JobOrigin
    created_by: str | None
    rule_id: str | None
    state: JobState
    reason: str | None
    streams: tuple[JobStream, ...]
    created_ns: int
    updated_ns: int
    started_ns: int | None = None
    finished_ns: int | None = None
    holds: tuple[int, ...] = ()
    at_risk: bool = False

    def __post_init__(self) -> None:
        check.text("job_id", self.job_id, max_chars=check.MAX_ID_CHARS)
        _check_request(self)
        _enum("state", self.state, JobState)
        _normalise(self, "state", JobState(self.state))
        check.optional_text("reason", self.reason, max_chars=MAX_REASON_CHARS)
        if not isinstance(self.streams, tuple) or not all(
            isinstance(s, JobStream) for s in self.streams
        ):
            raise InvalidRecord("streams", "must be a tuple of JobStream")
        expected = [(device_id, self.quality) for device_id in self.device_ids]
        if [(s.device_id, s.stream) for s in self.streams] != expected:
            raise InvalidRecord(
                "streams", "must be one stream of the job's quality per device, in device order"
            )
        check.instant("created_ns", self.created_ns)
        check.instant("updated_ns", self.updated_ns)
        for name in ("started_ns", "finished_ns"):
            if getattr(self, name) is not None:
                check.instant(name, getattr(self, name))
        _check_holds(self.holds)
        check.flag("at_risk", self.at_risk)

    @property
    def stream_by_device(self) -> dict[str, JobStream]:
        return {stream.device_id: stream for stream in self.streams}


def _check_holds(holds: object) -> None:
    if not isinstance(holds, tuple):
        raise InvalidRecord("holds", "must be a tuple of hold ids")
    if len(holds) > MAX_JOB_HOLDS:
        raise InvalidRecord("holds", f"at most {MAX_JOB_HOLDS} holds per job, not {len(holds)}")
    for hold_id in holds:
        check.integer("holds", hold_id, low=0)
    if len(set(holds)) != len(holds):
        raise InvalidRecord("holds", "names a hold twice")
