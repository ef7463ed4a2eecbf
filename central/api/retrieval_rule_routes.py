"""Retrieval rules: list, read, make, change and remove the rules that retrieve by themselves.

A rule retrieves a set of one site's devices, on the site's events (`kind` "event":
`events`, `sources`, `before_s`, `after_s`) or every day (`kind` "schedule": `daily` as
"HH:MM-HH:MM" by the site's clock). The site is the devices' site. Reading a rule wants
the right to view its devices; making, changing or removing one the right to retrieve them
(and its sources): a device the caller may not retrieve is answered as one that does not
exist. A change is applied at once: the site's event work follows the kinds its rules name
now, and the schedule looks again for intervals that ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiohttp import web

from central.api.account_routes import no_query
from central.api.services import SERVICES, CentralServices
from central.api.web_app import ApiError, ApiRoute, principal_may
from central.auth import Action
from central.catalog.errors import NotFound
from central.catalog.records import DeviceRecord
from central.retrieval.rule_records import (
    MAX_RULE_DEVICES,
    RULE_FIELDS_CHANGEABLE,
    NewRetrievalRule,
    RetrievalRule,
)
from shared.api_input import (
    MAX_STRING_CHARS,
    BadRequest,
    format_instant,
    json_object,
    optional_string,
    query_values,
    required_string,
)

_CHANGE_MEMBERS = tuple(sorted(RULE_FIELDS_CHANGEABLE))
_ADD_MEMBERS = ("kind", *_CHANGE_MEMBERS)
_ID_LISTS = ("device_ids", "sources")


def retrieval_rule_routes() -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/retrieval-rules", _list, Action.VIEW),
        ApiRoute("POST", "/retrieval-rules", _add, Action.RETRIEVE),
        ApiRoute("GET", "/retrieval-rules/{rule_id}", _get, Action.VIEW),
        ApiRoute("PATCH", "/retrieval-rules/{rule_id}", _change, Action.RETRIEVE),
        ApiRoute("DELETE", "/retrieval-rules/{rule_id}", _remove, Action.RETRIEVE),
    ]


async def _list(request: web.Request) -> web.Response:
    query = query_values(request.query.items(), required=(), optional=("site",))
    services = request.app[SERVICES]
    try:
        rules = await asyncio.to_thread(services.catalog.retrieval_rules, query.get("site"))
    except NotFound as exc:
        raise BadRequest("site", str(exc)) from exc
    visible = [rule for rule in rules if _may(request, Action.VIEW, rule.device_ids)]
    return web.json_response({"rules": [rule_json(rule) for rule in visible]})


async def _get(request: web.Request) -> web.Response:
    no_query(request)
    return web.json_response(rule_json(await _callers_rule(request, Action.VIEW)))


async def _add(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(await request.read(), allowed=_ADD_MEMBERS)
    name = required_string(body, "name")
    kind = required_string(body, "kind")
    if "device_ids" not in body:
        raise BadRequest("device_ids", "missing (required): a list of device ids")
    members = _members(body, exclude=("name", "kind"))
    services = request.app[SERVICES]
    devices = await _callers_devices(request, members)
    retrieved = members["device_ids"]
    assert isinstance(retrieved, tuple)  # `_members` made it one
    sites = sorted({device.site_id for device in devices if device.device_id in retrieved})
    if not members["device_ids"]:
        raise BadRequest("device_ids", f"must name 1 to {MAX_RULE_DEVICES} devices, not 0")
    if len(sites) > 1:
        raise BadRequest(
            "device_ids",
            f"the devices are of {len(sites)} sites ({', '.join(sites)}); a rule retrieves "
            "from one site: make one per site",
        )
    new = NewRetrievalRule(name=name, site_id=sites[0], kind=kind, **members)  # type: ignore[arg-type]
    rule = await asyncio.to_thread(services.catalog.add_retrieval_rule, new)
    _rules_changed(services, rule.site_id)
    return web.json_response(rule_json(rule), status=201)


async def _change(request: web.Request) -> web.Response:
    no_query(request)
    rule = await _callers_rule(request, Action.RETRIEVE)
    body = json_object(await request.read(), allowed=_CHANGE_MEMBERS)
    if "name" in body:
        body = {**body, "name": required_string(body, "name")}
    changes = _members(body, exclude=())
    await _callers_devices(request, changes)
    services = request.app[SERVICES]
    changed = await asyncio.to_thread(
        lambda: services.catalog.update_retrieval_rule(rule.rule_id, **changes)
    )
    _rules_changed(services, changed.site_id)
    return web.json_response(rule_json(changed))


async def _remove(request: web.Request) -> web.Response:
    no_query(request)
    rule = await _callers_rule(request, Action.RETRIEVE)
    services = request.app[SERVICES]
    await asyncio.to_thread(services.catalog.remove_retrieval_rule, rule.rule_id)
    _rules_changed(services, rule.site_id)
    return web.Response(status=204)


def rule_json(rule: RetrievalRule) -> dict[str, object]:
    return {
        "id": rule.rule_id,
        "name": rule.name,
        "site_id": rule.site_id,
        "kind": rule.kind,
        "device_ids": list(rule.device_ids),
        "quality": rule.quality,
        "enabled": rule.enabled,
        "events": list(rule.events),
        "sources": list(rule.sources),
        "before_s": rule.before_s,
        "after_s": rule.after_s,
        "daily": rule.daily,
        "last_queued_end": None
        if rule.last_queued_end_ns is None
        else format_instant(rule.last_queued_end_ns),
        "created": format_instant(rule.created_ns),
        "updated": format_instant(rule.updated_ns),
    }


def _members(body: Mapping[str, object], *, exclude: Iterable[str]) -> dict[str, object]:
    """The body's members as record fields: id lists checked as text, lists as tuples
    (the record checks every value and names the field it refuses)."""
    skipped = set(exclude)
    members: dict[str, object] = {}
    for name, value in body.items():
        if name in skipped:
            continue
        if name in _ID_LISTS:
            members[name] = _id_list(name, value)
        elif name == "events":
            members[name] = _id_list(name, value) if isinstance(value, list) else value
        elif name == "daily":
            members[name] = optional_string(body, name)
        else:
            members[name] = value
    return members


def _id_list(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_RULE_DEVICES:
        raise BadRequest(name, f"must be a list of at most {MAX_RULE_DEVICES} ids")
    for item in value:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_STRING_CHARS:
            raise BadRequest(name, "every item must be a non-empty string")
        try:
            item.encode("utf-8")  # SQLite cannot look up a lone surrogate
        except UnicodeEncodeError as exc:
            raise BadRequest(name, "must be Unicode text (a lone surrogate)") from exc
    return tuple(value)


async def _callers_devices(
    request: web.Request, members: Mapping[str, object]
) -> list[DeviceRecord]:
    """The devices named in `device_ids` and `sources`; 404 naming one that does not exist
    or that the caller may not retrieve."""
    named: list[str] = []
    for name in _ID_LISTS:
        ids = members.get(name)
        if isinstance(ids, tuple):
            named.extend(ids)
    for device_id in named:
        if not principal_may(request, Action.RETRIEVE, device_id):
            raise ApiError(404, "not_found", f"device {device_id!r} does not exist")
    catalog = request.app[SERVICES].catalog
    try:
        return await asyncio.to_thread(lambda: [catalog.device(d) for d in dict.fromkeys(named)])
    except NotFound as exc:
        raise ApiError(404, "not_found", f"device {exc.key!r} does not exist") from exc


async def _callers_rule(request: web.Request, action: Action) -> RetrievalRule:
    rule_id = request.match_info["rule_id"]
    try:
        rule = await asyncio.to_thread(request.app[SERVICES].catalog.retrieval_rule, rule_id)
    except NotFound:
        rule = None
    if rule is None or not _may(request, action, (*rule.device_ids, *rule.sources)):
        raise ApiError(404, "not_found", f"retrieval rule {rule_id!r} does not exist")
    return rule


def _may(request: web.Request, action: Action, device_ids: Iterable[str]) -> bool:
    return all(principal_may(request, action, device_id) for device_id in device_ids)


def _rules_changed(services: CentralServices, site_id: str) -> None:
    services.event_retrieval.rules_changed(site_id)
    services.schedule_retrieval.rules_changed(site_id)
