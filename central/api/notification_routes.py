"""Notifications: what an operator should look at (a site offline, a camera lost, a disk
filling up), newest first."""

from __future__ import annotations

from aiohttp import web

from central.api.bodies import notification_json
from central.api.services import SERVICES
from central.api.web_app import ApiRoute
from central.auth import Action
from central.catalog.catalog import MAX_NOTIFICATION_LIMIT
from shared.api_input import BadRequest, query_values


def notification_routes() -> list[ApiRoute]:
    return [ApiRoute("GET", "/notifications", _notifications, Action.VIEW)]


async def _notifications(request: web.Request) -> web.Response:
    query = query_values(request.query.items(), required=(), optional=("open", "limit"))
    open_only = query.get("open", "true")
    if open_only not in ("true", "false"):
        raise BadRequest("open", "must be true or false")
    limit_text = query.get("limit", "100")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_NOTIFICATION_LIMIT:
        raise BadRequest("limit", f"must be a whole number from 1 to {MAX_NOTIFICATION_LIMIT}")
    catalog = request.app[SERVICES].catalog
    found = catalog.notifications(open_only=open_only == "true", limit=int(limit_text))
    return web.json_response({"notifications": [notification_json(n) for n in found]})
