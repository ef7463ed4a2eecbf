"""Sites: list, read, add (the central dials), change, remove, update hardware.

The site list is complete by default; with `limit` (and `after`, the `next` of the page
before) it comes in pages, in the same order (as the sites were added), read in a worker
thread; `next` is null on the last page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web

from central.api.account_routes import no_query
from central.api.bodies import hardware_json, site_json
from central.api.body_members import optional_boolean, optional_integer, optional_object
from central.api.device_routes import json_body, page_bounds
from central.api.services import SERVICES, CentralServices
from central.api.web_app import ApiRoute
from central.auth import Action
from central.catalog.catalog import Catalog
from central.catalog.errors import NotFound
from central.catalog.records import SiteRecord
from central.connector_state import ConnectorView
from central.site_management import DEFAULT_SITE_PORT, SiteSettings
from shared.api_input import (
    BadRequest,
    json_object,
    optional_string,
    query_values,
    required_string,
)

ViewOf = Callable[[str], ConnectorView | None]

_ADD_MEMBERS = ("name", "address", "port", "scheme", "username", "password", "fingerprint")
_CHANGE_MEMBERS = (*_ADD_MEMBERS, "enabled", "time_zone", "retrieval")


def site_routes() -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/sites", _list_sites, Action.VIEW),
        ApiRoute("POST", "/sites", _add_site, Action.MANAGE_SITES),
        ApiRoute("GET", "/sites/{site_id}", _get_site, Action.VIEW),
        ApiRoute("PATCH", "/sites/{site_id}", _change_site, Action.MANAGE_SITES),
        ApiRoute("DELETE", "/sites/{site_id}", _remove_site, Action.MANAGE_SITES),
        ApiRoute("POST", "/sites/{site_id}/hardware", _update_hardware, Action.MANAGE_SITES),
    ]


def _site_body(services: CentralServices, site: SiteRecord, device_count: int) -> dict[str, object]:
    return site_json(site, services.registry.view(site.site_id), device_count)


async def _list_sites(request: web.Request) -> web.Response:
    query = query_values(request.query.items(), required=(), optional=("limit", "after"))
    services = request.app[SERVICES]
    paging = page_bounds(query)
    # Read in the worker thread, one dictionary lookup per site listed (safe from a thread).
    view_of = services.registry.view
    if paging is None:
        return json_body(await asyncio.to_thread(_site_list_json, services.catalog, view_of))
    limit, after = paging
    return json_body(
        await asyncio.to_thread(_site_page_json, services.catalog, view_of, after, limit)
    )


def _site_list_json(catalog: Catalog, view_of: ViewOf) -> bytes:
    """The complete site list, each site with its count of present devices (blocking)."""
    sites = catalog.sites()
    counts = catalog.present_device_counts()
    listed = [site_json(s, view_of(s.site_id), counts.get(s.site_id, 0)) for s in sites]
    return json.dumps({"sites": listed}).encode()


def _site_page_json(catalog: Catalog, view_of: ViewOf, after: str | None, limit: int) -> bytes:
    """One page of the site list in the complete list's order (as added), each site with
    its count of present devices, and the `next` of the page after (blocking)."""
    try:
        read = catalog.sites_page(after=after, limit=limit)
    except NotFound:
        raise BadRequest("after", f"no site {after!r} (start again without it)") from None
    page = read.sites
    next_after = page[-1].site_id if read.next_site_id is not None else None
    counts = catalog.present_device_counts([s.site_id for s in page])
    listed = [site_json(s, view_of(s.site_id), counts.get(s.site_id, 0)) for s in page]
    return json.dumps({"sites": listed, "next": next_after}).encode()


async def _get_site(request: web.Request) -> web.Response:
    no_query(request)
    services = request.app[SERVICES]
    site = services.catalog.site(request.match_info["site_id"])
    count = services.catalog.present_device_counts([site.site_id]).get(site.site_id, 0)
    return web.json_response(_site_body(services, site, count))


async def _add_site(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(await request.read(), allowed=_ADD_MEMBERS)
    scheme = optional_string(body, "scheme") or "https"
    if scheme not in ("https", "http"):
        raise BadRequest("scheme", f"must be https or http, not {scheme!r}")
    address = required_string(body, "address").strip()
    if not address:
        raise BadRequest("address", "is empty")
    settings = SiteSettings(
        name=optional_string(body, "name"),
        address=address,
        port=optional_integer(body, "port", low=1, high=65535) or DEFAULT_SITE_PORT,
        scheme=scheme,
        username=required_string(body, "username"),
        password=required_string(body, "password"),
        fingerprint=optional_string(body, "fingerprint"),
    )
    services = request.app[SERVICES]
    site = await services.sites.add_site(settings)
    count = len(await asyncio.to_thread(services.catalog.devices, site.site_id))
    return web.json_response(_site_body(services, site, count), status=201)


async def _change_site(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(await request.read(), allowed=_CHANGE_MEMBERS)
    changes: dict[str, object] = {}
    for name in ("name", "address", "scheme", "username", "password", "fingerprint", "time_zone"):
        if name in body:
            value = optional_string(body, name)
            if value is None and name in ("name", "address", "scheme", "password", "time_zone"):
                raise BadRequest(name, "cannot be null")
            changes[name] = value
    port = optional_integer(body, "port", low=1, high=65535)
    if port is not None:
        changes["port"] = port
    enabled = optional_boolean(body, "enabled")
    if enabled is not None:
        changes["enabled"] = enabled
    retrieval = optional_object(body, "retrieval")
    if retrieval is not None:
        changes["retrieval"] = retrieval
    if not changes:
        raise BadRequest("body", f"names nothing to change (it takes {', '.join(_CHANGE_MEMBERS)})")
    services = request.app[SERVICES]
    site_id = request.match_info["site_id"]
    site = await services.sites.update_site(site_id, changes)
    services.retrievals.settings_changed(site_id)  # a new cap, window or slot count
    count = len(await asyncio.to_thread(services.catalog.devices, site_id, present_only=True))
    return web.json_response(_site_body(services, site, count))


async def _remove_site(request: web.Request) -> web.Response:
    no_query(request)
    await request.app[SERVICES].sites.remove_site(request.match_info["site_id"])
    return web.Response(status=204)


async def _update_hardware(request: web.Request) -> web.Response:
    no_query(request)
    diff = await request.app[SERVICES].sites.update_hardware(request.match_info["site_id"])
    return web.json_response(hardware_json(diff))
