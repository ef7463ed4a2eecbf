"""Retrieval jobs: make one, list them, read one with its progress per device, stop one.

A job is answered with its state (pending, running, stopped, completed, failed), why it
waits or failed (`reason`), whether the site's retention may delete what it has yet to
fetch (`at_risk`), and per device: chunks and bytes retrieved, the recording time covered,
and while it runs its rate and the time it still needs.
"""

from __future__ import annotations

from aiohttp import web

from central.api.account_routes import no_query
from central.api.device_routes import page_bounds
from central.api.services import SERVICES
from central.api.web_app import PRINCIPAL, ApiError, ApiRoute, principal_may
from central.auth import Action
from central.catalog.errors import NotFound
from central.retrieval.job_records import JobState, RetrievalJob
from central.retrieval.retrieval_service import RetrievalRefused
from central.retrieval.stream_rate import RateReading
from shared.api_input import (
    MAX_STRING_CHARS,
    BadRequest,
    format_instant,
    json_object,
    optional_string,
    parse_instant,
    query_values,
    required_string,
)
from shared.clock import NS_PER_S

MAX_RETRIEVAL_RANGE_S = 31 * 86_400
MAX_RETRIEVAL_DEVICES = 64
QUALITIES = ("hq", "lq")


def retrieval_routes() -> list[ApiRoute]:
    return [
        ApiRoute("POST", "/retrievals", _create, Action.RETRIEVE),
        ApiRoute("GET", "/retrievals", _list, Action.VIEW),
        ApiRoute("GET", "/retrievals/{job_id}", _get, Action.VIEW),
        ApiRoute("POST", "/retrievals/{job_id}/stop", _stop, Action.RETRIEVE),
    ]


async def _create(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(await request.read(), allowed=("device_ids", "start", "end", "quality"))
    device_ids = _device_ids(body.get("device_ids"))
    start_ns = parse_instant("start", required_string(body, "start"))
    end_ns = parse_instant("end", required_string(body, "end"))
    if end_ns <= start_ns:
        raise BadRequest("end", "must be after start")
    if end_ns - start_ns > MAX_RETRIEVAL_RANGE_S * NS_PER_S:
        raise BadRequest(
            "end", f"the span is longer than {MAX_RETRIEVAL_RANGE_S // 86_400} days; split it"
        )
    quality = optional_string(body, "quality") or "hq"
    if quality not in QUALITIES:
        raise BadRequest("quality", f"must be hq or lq, not {quality!r}")
    for device_id in device_ids:
        if not principal_may(request, Action.RETRIEVE, device_id):
            raise ApiError(404, "not_found", f"device {device_id!r} does not exist")
    services = request.app[SERVICES]
    try:
        job = await services.retrievals.create(
            device_ids,
            start_ns,
            end_ns,
            quality=quality,
            created_by=request[PRINCIPAL].username,
        )
    except RetrievalRefused as exc:
        raise BadRequest(exc.field, str(exc)) from exc
    return web.json_response(_job_json(job, {}), status=201)


def _device_ids(value: object) -> tuple[str, ...]:
    if value is None:
        raise BadRequest("device_ids", "missing (required): a list of device ids")
    if not isinstance(value, list) or not 0 < len(value) <= MAX_RETRIEVAL_DEVICES:
        raise BadRequest("device_ids", f"must be a list of 1 to {MAX_RETRIEVAL_DEVICES} ids")
    if not all(isinstance(item, str) and 0 < len(item) <= MAX_STRING_CHARS for item in value):
        raise BadRequest("device_ids", "every item must be a device id (a non-empty string)")
    ids = tuple(str(item) for item in value)
    for device_id in ids:
        try:
            device_id.encode("utf-8")  # SQLite cannot look up a lone surrogate
        except UnicodeEncodeError as exc:
            raise BadRequest("device_ids", "must be Unicode text (a lone surrogate)") from exc
    if len(set(ids)) != len(ids):
        twice = next(d for d in ids if ids.count(d) > 1)
        raise BadRequest("device_ids", f"names device {twice!r} more than once")
    return ids


async def _list(request: web.Request) -> web.Response:
    query = query_values(
        request.query.items(), required=(), optional=("state", "site", "limit", "after")
    )
    states = None
    if "state" in query:
        names = query["state"].split(",")
        unknown = [n for n in names if n not in tuple(JobState)]
        if unknown:
            raise BadRequest(
                "state", f"{unknown[0]!r} is not one of {', '.join(s.value for s in JobState)}"
            )
        states = {JobState(n) for n in names}
    limit, after = page_bounds(query) or (100, None)
    services = request.app[SERVICES]
    try:
        jobs = await services.retrievals.jobs(
            states=states, site_id=query.get("site"), after=after, limit=limit + 1
        )
    except NotFound as exc:
        field = "site" if exc.what == "site" else "after"
        raise BadRequest(field, str(exc)) from exc
    page = jobs[:limit]
    visible = [job for job in page if _may_see(request, job)]
    return web.json_response(
        {
            "retrievals": [_job_json(job, services.retrievals.pace(job)) for job in visible],
            "next": page[-1].job_id if len(jobs) > limit else None,
        }
    )


def _may_see(request: web.Request, job: RetrievalJob) -> bool:
    return all(principal_may(request, Action.VIEW, d) for d in job.device_ids)


async def _callers_job(request: web.Request) -> RetrievalJob:
    no_query(request)
    job_id = request.match_info["job_id"]
    try:
        job = await request.app[SERVICES].retrievals.job(job_id)
    except NotFound:
        job = None
    if job is None or not _may_see(request, job):
        raise ApiError(404, "not_found", f"retrieval {job_id!r} does not exist")
    return job


async def _get(request: web.Request) -> web.Response:
    job = await _callers_job(request)
    return web.json_response(_job_json(job, request.app[SERVICES].retrievals.pace(job)))


async def _stop(request: web.Request) -> web.Response:
    job = await _callers_job(request)
    if not all(principal_may(request, Action.RETRIEVE, d) for d in job.device_ids):
        raise ApiError(404, "not_found", f"retrieval {job.job_id!r} does not exist")
    services = request.app[SERVICES]
    stopped = await services.retrievals.stop(job.job_id)
    return web.json_response(_job_json(stopped, {}))


def _job_json(job: RetrievalJob, pace: dict[str, RateReading]) -> dict[str, object]:
    span_s = (job.end_ns - job.start_ns) / NS_PER_S
    progress = []
    for stream in job.streams:
        covered_s = (
            0.0
            if stream.covered_until_ns is None
            else max(0, min(stream.covered_until_ns, job.end_ns) - job.start_ns) / NS_PER_S
        )
        reading = pace.get(stream.device_id)
        progress.append(
            {
                "device_id": stream.device_id,
                "stream": stream.stream,
                "state": stream.state.value,
                "chunks": stream.chunks,
                "bytes": stream.payload_bytes,
                "covered_until": None
                if stream.covered_until_ns is None
                else format_instant(stream.covered_until_ns),
                "covered_s": covered_s,
                "fraction": min(1.0, covered_s / span_s) if span_s > 0 else 1.0,
                "rate_bps": None if reading is None else round(reading.bytes_per_s * 8),
                "eta_s": None
                if reading is None
                else reading.seconds_left(stream.covered_until_ns, job.start_ns, job.end_ns),
                "failure": stream.failure,
            }
        )
    return {
        "id": job.job_id,
        "site_id": job.site_id,
        "device_ids": list(job.device_ids),
        "start": format_instant(job.start_ns),
        "end": format_instant(job.end_ns),
        "quality": job.quality,
        "origin": job.origin.value,
        "rule_id": job.rule_id,
        "created_by": job.created_by,
        "state": job.state.value,
        "reason": job.reason,
        "at_risk": job.at_risk,
        "created": format_instant(job.created_ns),
        "started": None if job.started_ns is None else format_instant(job.started_ns),
        "finished": None if job.finished_ns is None else format_instant(job.finished_ns),
        "progress": progress,
    }
