"""Adding a running link site (`tests/link_io/link_site.py`) to a running central, as the
central tests do: by address and port (the site's own, or a proxy's), with its pinned
certificate and the site's admin account; and waiting for the retrievals the central makes
by itself for such a site."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.agent_api.api_site import PASSWORDS
from tests.central.central_fixture import RunningCentral
from tests.link_io.link_site import LinkSite


async def add_link_site(
    central: RunningCentral, site: LinkSite, *, port: int | None = None
) -> tuple[str, dict[str, str]]:
    """The central's id of the site, and its device ids by the site's own device ids."""
    status, added = await central.call(
        "POST",
        "/sites",
        json={
            "address": "127.0.0.1",
            "port": site.port if port is None else port,
            "username": "admin",
            "password": PASSWORDS["admin"],
            "fingerprint": site.identity.fingerprint,
        },
    )
    assert status == 201, added
    status, body = await central.call("GET", f"/devices?site={added['id']}")
    assert status == 200, body
    return added["id"], {d["remote_device_id"]: d["id"] for d in body["devices"]}


async def reconnect_jobs_once_ended(
    central: RunningCentral, *, timeout_s: float
) -> list[dict[str, Any]]:
    """The central's jobs of origin `reconnect`, once there is one and all have ended
    (completed or failed; bounded polling)."""
    async with asyncio.timeout(timeout_s):
        while True:
            _, listed = await central.call("GET", "/retrievals")
            jobs = [j for j in listed["retrievals"] if j["origin"] == "reconnect"]
            if jobs and all(j["state"] in ("completed", "failed") for j in jobs):
                return jobs
            await asyncio.sleep(0.2)
