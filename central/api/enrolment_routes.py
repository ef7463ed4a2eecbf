"""Enrolment: tokens made at the central, and the link sites behind NAT dial in on.

An administrator makes a token (shown once) and writes it into the agent's configuration
with the central's link URL. The agent opens `GET /api/v1/sites/link` as a WebSocket with
the token as its bearer. On the first such link the central reads the site's identity and
devices over it and adds the site, using the token up in the same transaction; later links
with the same token belong to that site, once they show its identity (site id and signing
key): a copied token can neither stand in for another site nor, by dialling in, push the
enrolled site's own link off. An unknown, expired or spent token, or one whose site was
removed, is refused with 401 before the WebSocket opens.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from central.api.account_routes import no_query
from central.api.body_members import optional_number
from central.api.services import SERVICES, CentralServices
from central.api.web_app import API_PREFIX, PUBLIC, ApiError, ApiRoute
from central.auth import Action
from central.catalog.errors import CatalogError, NotFound
from central.catalog.records import EnrolmentToken, NewSite
from central.site_device_list import discovered_devices
from central.site_management import MAX_ENROLMENT_TTL_S, enrolment_digest
from shared.api_input import format_instant, json_object, optional_string
from shared.link_io.client import LinkClient, LinkLost, RequestFailed
from shared.link_io.dialing import serve_dialled_in_site

_log = logging.getLogger(__name__)

LINK_ROUTE_PATH = "/sites/link"
_AUTH_CHALLENGE = 'Bearer realm="siteline-enrolment"'


def enrolment_routes() -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/enrolments", _list_tokens, Action.MANAGE_SITES),
        ApiRoute("POST", "/enrolments", _issue_token, Action.MANAGE_SITES),
        ApiRoute("GET", LINK_ROUTE_PATH, _site_link, PUBLIC),
    ]


async def _list_tokens(request: web.Request) -> web.Response:
    no_query(request)
    tokens = await asyncio.to_thread(request.app[SERVICES].catalog.enrolment_tokens)
    return web.json_response(
        {
            "enrolments": [
                {
                    "label": t.label,
                    "created": format_instant(t.created_ns),
                    "expires": format_instant(t.expires_ns),
                    "used_by_site_id": t.used_by_site_id,
                    "used": None if t.used_ns is None else format_instant(t.used_ns),
                }
                for t in tokens
            ]
        }
    )


async def _issue_token(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(await request.read(), allowed=("label", "expires_in_s"))
    label = optional_string(body, "label") or "site"
    ttl_s = optional_number(body, "expires_in_s", low=60, high=MAX_ENROLMENT_TTL_S)
    issued = await request.app[SERVICES].sites.issue_enrolment(label, ttl_s)
    return web.json_response(
        {
            "token": issued.token,
            "label": issued.label,
            "expires": format_instant(issued.expires_ns),
            "link_path": API_PREFIX + LINK_ROUTE_PATH,
        },
        status=201,
    )


def _refuse(message: str) -> ApiError:
    return ApiError(401, "enrolment_refused", message, {"WWW-Authenticate": _AUTH_CHALLENGE})


async def _site_link(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        raise _refuse("an enrolment token is required as the bearer")
    digest = enrolment_digest(token)
    record = await asyncio.to_thread(services.catalog.enrolment_token, digest)
    if record is None:
        raise _refuse("unknown enrolment token")
    if record.used_by_site_id is not None:
        try:
            await asyncio.to_thread(services.catalog.site, record.used_by_site_id)
        except NotFound as exc:
            raise _refuse("the site this token enrolled was removed; make a new token") from exc
    elif not record.usable_at(services.clock.now_ns()):
        raise _refuse("the enrolment token has expired; make a new one")

    async def on_link(link: LinkClient) -> None:
        try:
            site_id = await _site_for(services, record, digest, link)
        except (LinkLost, RequestFailed, CatalogError, KeyError, TypeError, ValueError) as exc:
            _log.warning("a site dialling in was refused: %s", exc)
            link.close(f"enrolment failed: {exc}")
            return
        services.registry.attach(site_id, link)

    return await serve_dialled_in_site(
        request,
        clock=services.clock,
        software=f"siteline-central {services.info.version}",
        on_link=on_link,
        read_timeout_s=services.link_read_timeout_s,
    )


async def _site_for(
    services: CentralServices, record: EnrolmentToken, digest: bytes, link: LinkClient
) -> str:
    """The site of this link: the token's, or a new one added now."""
    if record.used_by_site_id is not None:
        return await _enrolled_site(services, record.used_by_site_id, link)
    info = await link.site_info()
    devices = await link.devices()
    remote_id = str(info["id"])
    existing = await asyncio.to_thread(services.catalog.site_by_remote_id, remote_id)
    if existing is not None:
        raise ValueError(f"site {remote_id} was added already, as {existing.site_id}")
    new_site = NewSite(
        name=str(info.get("name") or remote_id),
        dial="site",
        remote_site_id=remote_id,
        product=info.get("product") or None,
        version=info.get("version") or None,
        public_key=bytes.fromhex(str(info["public_key"])),
        time_zone=str(info.get("time_zone") or "UTC"),
    )
    site, _ = await asyncio.to_thread(
        services.catalog.add_site,
        new_site,
        None,
        discovered_devices(devices),
        enrolment_digest=digest,
    )
    services.registry.site_added(site.site_id)
    _log.info("site %s (%s) enrolled by dialling in", site.site_id, remote_id)
    return site.site_id


async def _enrolled_site(services: CentralServices, site_id: str, link: LinkClient) -> str:
    """`site_id`, the site the token enrolled, if the link comes from that site. Checked
    before the link is handed on, since a new link replaces the site's open one: another site
    holding a copy of the token must not push the enrolled site's own link off."""
    site = await asyncio.to_thread(services.catalog.site, site_id)
    info = await link.site_info()
    if info.get("id") != site.remote_site_id:
        raise ValueError(f"this token enrolled site {site.remote_site_id}, not {info.get('id')!r}")
    if site.public_key is not None and bytes.fromhex(str(info["public_key"])) != site.public_key:
        raise ValueError(f"site {site.remote_site_id} signs with another key than it enrolled with")
    return site_id
