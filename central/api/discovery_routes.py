"""Finding sites to add: zeroconf browsing and address scans (see `central/site_discovery.py`).

Candidates only: adding one still goes through `POST /api/v1/sites` with its account,
password and fingerprint (compare the fingerprint found with what the site shows). A found
entry's `address`, `port`, `scheme` and `fingerprint` are named as that request names them;
`addresses` lists every address the site announced, `address` first.
"""

from __future__ import annotations

from aiohttp import web

from central.address_scan import DEFAULT_AGENT_PORT, ScanRangeError
from central.api.account_routes import no_query
from central.api.bodies import colon_fingerprint
from central.api.body_members import optional_number
from central.api.services import SERVICES
from central.api.web_app import ApiError, ApiRoute
from central.auth import Action
from central.site_browser import FoundSite
from central.site_discovery import ScanJob, SiteDiscovery, TooManyScans
from shared.api_input import BadRequest, format_instant, json_object, query_values, required_string

MAX_BROWSE_S = 10.0


def discovery_routes() -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/discovery/zeroconf", _browse, Action.MANAGE_SITES),
        ApiRoute("GET", "/discovery/scans", _list_scans, Action.MANAGE_SITES),
        ApiRoute("POST", "/discovery/scans", _start_scan, Action.MANAGE_SITES),
        ApiRoute("GET", "/discovery/scans/{scan_id}", _get_scan, Action.MANAGE_SITES),
        ApiRoute("DELETE", "/discovery/scans/{scan_id}", _cancel_scan, Action.MANAGE_SITES),
    ]


def _found_json(discovery: SiteDiscovery, found: FoundSite) -> dict[str, object]:
    return {
        "address": found.address,
        "addresses": list(found.addresses),
        "port": found.port,
        "scheme": found.scheme,
        "fingerprint": colon_fingerprint(found.fingerprint),
        "source": found.source,
        "remote_site_id": found.site_id,
        "name": found.name,
        "version": found.version,
        "known_site_id": discovery.known_site_id(found),
    }


def _scan_json(discovery: SiteDiscovery, job: ScanJob) -> dict[str, object]:
    state = "running"
    if job.finished_ns is not None:
        state = "cancelled" if job.cancelled else ("failed" if job.error else "finished")
    return {
        "id": job.scan_id,
        "range": job.range_text,
        "ports": list(job.ports),
        "state": state,
        "error": job.error,
        "done": job.progress.done,
        "total": job.progress.total,
        "started": format_instant(job.started_ns),
        "finished": None if job.finished_ns is None else format_instant(job.finished_ns),
        "found": [_found_json(discovery, f) for f in job.progress.found],
    }


async def _browse(request: web.Request) -> web.Response:
    query = query_values(request.query.items(), required=(), optional=("wait_s",))
    wait_s = optional_number(
        {"wait_s": _number(query.get("wait_s", "3"), "wait_s")},
        "wait_s",
        low=0.5,
        high=MAX_BROWSE_S,
    )
    discovery = request.app[SERVICES].discovery
    found = await discovery.browse(wait_s or 3.0)
    return web.json_response({"sites": [_found_json(discovery, f) for f in found]})


async def _list_scans(request: web.Request) -> web.Response:
    no_query(request)
    discovery = request.app[SERVICES].discovery
    return web.json_response({"scans": [_scan_json(discovery, j) for j in discovery.scans()]})


async def _start_scan(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(await request.read(), allowed=("range", "ports"))
    range_text = required_string(body, "range")
    ports = body.get("ports", [DEFAULT_AGENT_PORT])
    if not isinstance(ports, list):
        raise BadRequest("ports", "must be a list of port numbers")
    discovery = request.app[SERVICES].discovery
    try:
        job = discovery.start_scan(range_text, ports)
    except ScanRangeError as exc:
        field = exc.field if exc.field in ("range", "ports") else "range"
        raise BadRequest(field, str(exc).removeprefix(f"{exc.field}: ")) from exc
    except ValueError as exc:
        raise BadRequest("ports", str(exc).removeprefix("ports: ")) from exc
    except TooManyScans as exc:
        raise ApiError(429, "too_many_scans", str(exc)) from exc
    return web.json_response(_scan_json(discovery, job), status=202)


def _scan_id(request: web.Request) -> int:
    text = request.match_info["scan_id"]
    if not text.isdigit() or len(text) > 12:
        raise BadRequest("scan_id", f"not a scan id: {text[:32]!r}")
    return int(text)


async def _get_scan(request: web.Request) -> web.Response:
    no_query(request)
    discovery = request.app[SERVICES].discovery
    job = discovery.scan(_scan_id(request))
    if job is None:
        raise ApiError(404, "not_found", "no such scan (finished scans are kept 10 minutes)")
    return web.json_response(_scan_json(discovery, job))


async def _cancel_scan(request: web.Request) -> web.Response:
    no_query(request)
    if not await request.app[SERVICES].discovery.cancel_scan(_scan_id(request)):
        raise ApiError(404, "not_found", "no such scan")
    return web.Response(status=204)


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise BadRequest(name, f"not a number: {text[:32]!r}") from exc
