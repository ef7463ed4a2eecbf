"""What the central's API tests share: adding a real site, waiting for a site's state with a
bounded poll, and reading a refusal (status, error code, the field it names)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tests.agent_api.api_site import PASSWORDS
from tests.central.central_fixture import RunningCentral
from tests.link_io.link_site import LinkSite

WAIT_S = 20.0
POLL_S = 0.1


def closed_port() -> int:
    """A loopback port where nothing listens (the probe socket is closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def site_settings(site: LinkSite, **changes: object) -> dict[str, object]:
    """The body of `POST /sites` that reaches `site` as its admin; `changes` replace members."""
    body: dict[str, object] = {
        "address": "127.0.0.1",
        "port": site.port,
        "scheme": "https",
        "username": "admin",
        "password": PASSWORDS["admin"],
        "fingerprint": site.identity.fingerprint,
    }
    body.update(changes)
    return body


async def add_site(central: RunningCentral, site: LinkSite, **changes: object) -> dict[str, Any]:
    """Add `site` (the central dials it); the new site's body."""
    status, body = await central.call("POST", "/sites", json=site_settings(site, **changes))
    assert status == 201, body
    result: dict[str, Any] = body
    return result


async def site_state(central: RunningCentral, site_id: str) -> dict[str, Any]:
    status, body = await central.call("GET", f"/sites/{site_id}")
    assert status == 200, body
    state: dict[str, Any] = body["status"]
    return state


async def wait_for_state(
    central: RunningCentral, site_id: str, state: str, *, within_s: float = WAIT_S
) -> dict[str, Any]:
    """Poll `GET /sites/{site_id}` until its status is `state`; that status."""
    seen: dict[str, Any] = {}
    try:
        async with asyncio.timeout(within_s):
            while True:
                seen = await site_state(central, site_id)
                if seen["state"] == state:
                    return seen
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"site {site_id} never became {state}; last: {seen}") from None


async def site_devices(central: RunningCentral, site_id: str) -> list[dict[str, Any]]:
    status, body = await central.call("GET", "/devices", params={"site": site_id})
    assert status == 200, body
    devices: list[dict[str, Any]] = body["devices"]
    return devices


def assert_refused(reply: tuple[int, Any], status: int, code: str, field: str | None) -> str:
    """`reply` is a JSON refusal with `status` and `code` naming `field` in its `field`
    member (and, for a bad request, first in its message); the message."""
    got_status, body = reply
    assert got_status == status, body
    assert isinstance(body, dict), body
    error = body["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    assert "Traceback" not in message, message
    if field is not None:
        assert error.get("field") == field, error
        if code == "bad_request":
            assert message.startswith(f"{field}: "), error
    return message
