"""A real central on loopback, in this process: the same `CentralNode` that `siteline central
run` starts, from a folder made by the same `init_central`, with an HTTPS client pinned to
its certificate and logged in as `admin`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from central.central_init import init_central
from central.central_node import CentralNode
from central.config import load_central_config
from shared.clock import SystemClock

ADMIN_PASSWORD = "central-admin-pw"


@dataclass
class RunningCentral:
    node: CentralNode
    client: aiohttp.ClientSession
    token: str
    directory: Path

    @property
    def base_url(self) -> str:
        return self.node.base_url

    @property
    def fingerprint(self) -> str:
        assert self.node.identity is not None
        return self.node.identity.fingerprint

    def url(self, path: str) -> str:
        return f"{self.base_url}/api/v1{path}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "admin",  # noqa: S107 - names whose token, not a secret
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """(status, JSON body or None) of one request; `token` "admin" is the admin's."""
        all_headers = dict(headers or {})
        bearer = self.token if token == "admin" else token
        if bearer is not None:
            all_headers["Authorization"] = f"Bearer {bearer}"
        async with self.client.request(
            method, self.url(path), headers=all_headers, **kwargs
        ) as reply:
            body = None
            if reply.content_type == "application/json":
                body = await reply.json()
            return reply.status, body

    async def login(self, username: str, password: str) -> str:
        status, body = await self.call(
            "POST",
            "/auth/login",
            token=None,
            json={"username": username, "password": password},
        )
        assert status == 200, body
        token: str = body["token"]
        return token


def pinned(fingerprint: str) -> aiohttp.Fingerprint:
    return aiohttp.Fingerprint(bytes.fromhex(fingerprint.replace(":", "")))


@contextlib.asynccontextmanager
async def running_central(
    directory: Path,
    *,
    links_toml: str = "",
    store_full_retry_s: float | None = None,
    hold_lifetime_s: float | None = None,
) -> AsyncIterator[RunningCentral]:
    """A central in `directory` (made if needed), serving HTTPS on a free loopback port.

    `links_toml` replaces the `[links]` settings (say, a short offline notice for tests);
    `store_full_retry_s` the retry delay of retrievals paused for room, `hold_lifetime_s`
    the lifetime of retrievals' holds at the site (default: the node's).
    """
    clock = SystemClock()
    config_path = directory / "central.toml"
    if not config_path.exists():
        await asyncio.to_thread(
            init_central, directory, clock=clock, admin_password=ADMIN_PASSWORD, port=1
        )
        if links_toml:
            text = config_path.read_text()
            head, _, _ = text.partition("[links]")
            config_path.write_text(head + "[links]\n" + links_toml + "\n")
    config = load_central_config(config_path)
    tuning: dict[str, float] = {}
    if store_full_retry_s is not None:
        tuning["store_full_retry_s"] = store_full_retry_s
    if hold_lifetime_s is not None:
        tuning["hold_lifetime_s"] = hold_lifetime_s
    opening = functools.partial(CentralNode.open, config, clock=clock, **tuning)
    node = await asyncio.to_thread(opening)
    try:
        await node.start(port=0)
        assert node.identity is not None
        connector = aiohttp.TCPConnector(ssl=pinned(node.identity.fingerprint))
        async with aiohttp.ClientSession(connector=connector) as client:
            central = RunningCentral(node, client, "", directory)
            central.token = await central.login("admin", ADMIN_PASSWORD)
            yield central
    finally:
        await node.stop()
