"""Devices: list, read, change the central's settings, and the merged timeline.

The device list is complete by default. With `limit` (and `after`, the `next` of the page
before) it comes in pages in the same order (by site id, then as the site listed them), read
in a worker thread, so a client of a central with thousands of devices can show the first
ones at once; `next` is null on the last page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping

from aiohttp import web

from central.api.account_routes import no_query
from central.api.bodies import device_json, timeline_json
from central.api.body_members import optional_object
from central.api.services import SERVICES, CentralServices
from central.api.web_app import PRINCIPAL, ApiError, ApiRoute
from central.auth import Action
from central.catalog.catalog import Catalog
from central.catalog.errors import NotFound
from central.catalog.records import LIVE_FEEDS, RECORDINGS, DeviceRecord
from central.central_rule import CentralRule
from central.connector_state import ConnectorStatus
from central.live_feeds import LiveRefused
from shared.api_input import (
    BadRequest,
    json_object,
    optional_string,
    parse_instant,
    query_values,
    required_string,
)
from shared.clock import NS_PER_S

MAX_TIMELINE_RANGE_NS = 366 * 86_400 * NS_PER_S
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000


def device_routes() -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/devices", _list_devices, Action.VIEW),
        ApiRoute("GET", "/devices/{device_id}", _get_device, Action.VIEW),
        ApiRoute("PATCH", "/devices/{device_id}", _change_device, Action.CONFIGURE_DEVICES),
        ApiRoute("GET", "/devices/{device_id}/timeline", _timeline, Action.VIEW),
        ApiRoute("POST", "/devices/{device_id}/recording", _manual, Action.CONFIGURE_DEVICES),
        ApiRoute("GET", "/devices/{device_id}/recording", _recording, Action.VIEW),
    ]


def _online(services: CentralServices, site_id: str) -> bool:
    view = services.registry.view(site_id)
    return view is not None and view.status is ConnectorStatus.ONLINE


def _body(services: CentralServices, device: DeviceRecord) -> dict[str, object]:
    site = services.catalog.site(device.site_id)
    return device_json(device, site, _online(services, device.site_id))


def page_bounds(query: Mapping[str, str]) -> tuple[int, str | None] | None:
    """(limit, after) of a paged list request, None for the complete list."""
    if "limit" not in query and "after" not in query:
        return None
    text = query.get("limit", str(DEFAULT_PAGE_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_LIMIT:
        raise BadRequest("limit", f"must be a whole number from 1 to {MAX_PAGE_LIMIT}")
    after = query.get("after")
    if after == "":
        raise BadRequest("after", "is empty (give the previous page's next, or leave it out)")
    return int(text), after


async def _list_devices(request: web.Request) -> web.Response:
    query = query_values(
        request.query.items(), required=(), optional=("site", "present", "limit", "after")
    )
    services = request.app[SERVICES]
    site_id = query.get("site")
    present_only = query.get("present", "false")
    if present_only not in ("true", "false"):
        raise BadRequest("present", "must be true or false")
    paging = page_bounds(query)

    def online(site_id: str) -> bool:  # one dictionary lookup, safe from a worker thread
        return _online(services, site_id)

    policy, principal = services.policy, request[PRINCIPAL]

    def visible(device_id: str) -> bool:  # called in a worker thread: no request state
        return policy.allows(principal, Action.VIEW, device_id)

    if paging is None:
        body = await asyncio.to_thread(
            _device_list_json, services.catalog, site_id, present_only == "true", visible, online
        )
        return json_body(body)
    limit, after = paging
    body = await asyncio.to_thread(
        _device_page_json,
        services.catalog,
        site_id=site_id,
        present_only=present_only == "true",
        after=after,
        limit=limit,
        visible=visible,
        online=online,
    )
    return json_body(body)


def json_body(body: bytes) -> web.Response:
    """A JSON answer encoded beforehand (in a worker thread, for long lists)."""
    return web.Response(body=body, content_type="application/json")


def _device_list_json(
    catalog: Catalog,
    site_id: str | None,
    present_only: bool,
    visible: Callable[[str], bool],
    online: Callable[[str], bool],
) -> bytes:
    """The complete device list, encoded (blocking)."""
    try:
        devices = catalog.devices(site_id, present_only=present_only)
    except NotFound:
        raise BadRequest("site", f"no site {site_id!r}") from None
    sites = catalog.sites_by_id([d.site_id for d in devices])
    listed = [
        device_json(d, sites.get(d.site_id), online(d.site_id))
        for d in devices
        if visible(d.device_id)
    ]
    return json.dumps({"devices": listed}).encode()


def _device_page_json(
    catalog: Catalog,
    *,
    site_id: str | None,
    present_only: bool,
    after: str | None,
    limit: int,
    visible: Callable[[str], bool],
    online: Callable[[str], bool],
) -> bytes:
    """One page of the device list in the complete list's order (site id, then as listed),
    with the `next` of the page after, encoded (blocking). Reads as many devices as the page
    needs, and the id of the one after (more only where some are not visible to the
    caller): `next` is given when a device the caller may see follows the page."""
    if after is not None:
        try:
            anchor = catalog.device(after)
        except NotFound:
            anchor = None
        if (
            anchor is None
            or not visible(anchor.device_id)
            or (site_id is not None and anchor.site_id != site_id)
        ):
            raise BadRequest("after", f"no device {after!r} in this list (start again without it)")
    page: list[DeviceRecord] = []
    beyond: str | None = None  # a visible device after a full page
    cursor = after
    while True:
        try:
            read = catalog.devices_page(
                site_id=site_id, present_only=present_only, after=cursor, limit=limit
            )
        except NotFound as exc:
            if exc.what == "site":
                raise BadRequest("site", f"no site {site_id!r}") from None
            raise BadRequest(
                "after", f"no device {cursor!r} in this list (removed while listing; start again)"
            ) from None
        for device in read.devices:
            if not visible(device.device_id):
                continue
            if len(page) == limit:
                beyond = device.device_id
                break
            page.append(device)
        following = read.next_device_id
        if beyond is not None or following is None:
            break
        if len(page) == limit and visible(following):
            beyond = following
            break
        cursor = read.devices[-1].device_id
    next_after = page[-1].device_id if beyond is not None else None
    sites = catalog.sites_by_id([d.site_id for d in page])
    listed = [device_json(d, sites.get(d.site_id), online(d.site_id)) for d in page]
    return json.dumps({"devices": listed, "next": next_after}).encode()


async def _get_device(request: web.Request) -> web.Response:
    no_query(request)
    services = request.app[SERVICES]
    device = services.catalog.device(request.match_info["device_id"])
    return web.json_response(_body(services, device))


async def _change_device(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(
        await request.read(), allowed=("name", "recording", "live_feed", "central_rule")
    )
    if not body:
        raise BadRequest(
            "body", "names nothing to change (name, recording, live_feed, central_rule)"
        )
    name = optional_string(body, "name")
    if "name" in body and name is None:
        raise BadRequest("name", "cannot be null (give the original name to go back to it)")
    recording = optional_string(body, "recording")
    if recording is not None and recording not in RECORDINGS:
        raise BadRequest("recording", f"must be one of {', '.join(RECORDINGS)}")
    live_feed = optional_string(body, "live_feed")
    if live_feed is not None and live_feed not in LIVE_FEEDS:
        raise BadRequest("live_feed", f"must be one of {', '.join(LIVE_FEEDS)}")
    rule_json = optional_object(body, "central_rule")
    central_rule = None if rule_json is None else CentralRule.from_json(rule_json)
    rule = None if central_rule is None else central_rule.to_json()
    services = request.app[SERVICES]
    if central_rule is not None and central_rule.trigger_inputs:
        await asyncio.to_thread(
            _check_trigger_inputs,
            services.catalog,
            request.match_info["device_id"],
            central_rule.trigger_inputs,
        )
    device = await asyncio.to_thread(
        services.catalog.update_device,
        request.match_info["device_id"],
        name=None if name is None else name.strip(),
        recording=recording,  # type: ignore[arg-type]
        live_feed=live_feed,  # type: ignore[arg-type]
        central_rule=rule,
    )
    services.live.device_changed(device.device_id)
    return web.json_response(_body(services, device))


def _check_trigger_inputs(catalog: Catalog, device_id: str, inputs: tuple[str, ...]) -> None:
    """Each of a rule's trigger inputs is an input of the camera's own site (blocking)."""
    camera = catalog.device(device_id)  # NotFound: the route's 404
    field = "central_rule.trigger_inputs"
    for input_id in inputs:
        try:
            device = catalog.device(input_id)
        except NotFound:
            raise BadRequest(field, f"no device {input_id!r}") from None
        if device.kind != "input":
            raise BadRequest(field, f"{input_id!r} is a {device.kind}, not an input")
        if device.site_id != camera.site_id:
            raise BadRequest(field, f"{input_id!r} is an input of another site")


async def _timeline(request: web.Request) -> web.Response:
    query = query_values(request.query.items(), required=("start", "end"))
    start_ns = parse_instant("start", query["start"])
    end_ns = parse_instant("end", query["end"])
    if end_ns <= start_ns:
        raise BadRequest("end", "must be after start")
    if end_ns - start_ns > MAX_TIMELINE_RANGE_NS:
        raise BadRequest("end", "the range is longer than 366 days")
    services = request.app[SERVICES]
    timeline = await services.timelines.timeline(request.match_info["device_id"], start_ns, end_ns)
    return web.json_response(timeline_json(timeline))


async def _manual(request: web.Request) -> web.Response:
    """An operator starts or stops recording at the central (rule `manual`)."""
    no_query(request)
    body = json_object(await request.read(), allowed=("action",))
    action = required_string(body, "action")
    if action not in ("start", "stop"):
        raise BadRequest("action", "must be start or stop")
    services = request.app[SERVICES]
    device = await asyncio.to_thread(services.catalog.device, request.match_info["device_id"])
    if device.recording == "site_only":
        raise ApiError(
            409, "not_recording", "the device is recorded only at its site (recording site_only)"
        )
    try:
        await services.live.manual_recording(device.device_id, start=action == "start")
    except LiveRefused as exc:
        raise ApiError(409, exc.code, exc.message) from exc
    return await _recording(request)


async def _recording(request: web.Request) -> web.Response:
    """How the central's recording of the device goes."""
    no_query(request)
    services = request.app[SERVICES]
    device = await asyncio.to_thread(services.catalog.device, request.match_info["device_id"])
    status = services.live.recording_status(device.device_id)
    state = services.live.feed_state(device.device_id)
    return web.json_response(
        {
            "device_id": device.device_id,
            "recording": device.recording,
            "central_rule": CentralRule.from_json(device.central_rule).to_json(),
            "feed": None
            if state is None
            else {"streaming": state.streaming, "reason": state.reason},
            "status": None
            if status is None
            else {
                "chunks_stored": status.chunks_stored,
                "chunks_already_stored": status.chunks_already_stored,
                "chunks_missed": status.chunks_missed,
                "chunks_refused": status.chunks_refused,
                "chunks_not_wanted": status.chunks_not_wanted,
                "chunks_pre_buffered": status.chunks_pre_buffered,
                "chunks_failed": status.chunks_failed,
                "unsealed_packets_dropped": status.unsealed_packets_dropped,
                "recent_problems": list(status.recent_problems),
                "notice": status.notice,
            },
        }
    )
