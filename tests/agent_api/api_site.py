"""A real API on loopback for tests: real config file, LMDB store, TLS, aiohttp server.

The site has two cameras (cam-a with a microphone), an input, an output and a speaker, and
three accounts: `admin` (every device), `clerk` (cam-a and the door only) and `nobody` (no
device). Store, service and accounts share one `ManualClock`, so tests move time by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from agent.accounts import Accounts
from agent.config import AgentConfig, load_agent_config
from agent.event_hub import EventHub
from agent.link_endpoint import link_route
from agent.site_service import SiteService
from agent.site_tls import site_identity
from agent.stream_routes import HEARTBEAT_S, stream_routes
from agent.web_api import build_web_app
from shared.api_server import ApiServer
from shared.chunk import SignedChunk
from shared.clock import ManualClock, SystemClock
from shared.live_relay import LiveRelay
from shared.passwords import hash_password
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore
from shared.tls_identity import TlsIdentity
from shared.tls_pinning import pinned_fingerprint
from tests.agent.site_config import small_camera, write_site_config
from tests.store.store_chunks import T0_NS

CLERK_HASH = hash_password("clerk-pw")
NOBODY_HASH = hash_password("nobody-pw")
PASSWORDS = {"admin": "admin-pw", "clerk": "clerk-pw", "nobody": "nobody-pw"}
TOKEN_TTL_S = 3600.0
HOLD_BUDGET_BYTES = 64 * 1024

USERS_TOML = f"""
[[users]]
username = "clerk"
password_hash = "{CLERK_HASH}"
devices = ["cam-a", "door"]

[[users]]
username = "nobody"
password_hash = "{NOBODY_HASH}"
devices = []
"""

DEVICES_TOML = (
    small_camera("cam-a", audio=True)
    + small_camera("cam-b")
    + """
[[inputs]]
id = "door"
name = "Back door"

[[outputs]]
id = "siren"
name = "Siren"

[[speakers]]
id = "speaker"
name = "Shop floor"
"""
)


def api_config(directory: Path, *, api_toml: str = "") -> AgentConfig:
    """The test site's configuration, written as a real file and read by the real loader."""
    extra = USERS_TOML + ("\n[api]\n" + api_toml if api_toml else "")
    return load_agent_config(write_site_config(directory, DEVICES_TOML, extra_toml=extra))


@dataclass
class ApiSite:
    """A running API and an HTTPS client that pins its certificate."""

    config: AgentConfig
    clock: ManualClock
    store: ChunkStore
    signer: SiteSigner
    identity: TlsIdentity
    service: SiteService
    app: web.Application
    base_url: str
    client: aiohttp.ClientSession
    events: EventHub
    live: LiveRelay
    cameras_up: dict[str, bool] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: object,
    ) -> tuple[int, object, Mapping[str, str]]:
        """(status, JSON body or None, headers) of one request."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        async with self.client.request(
            method,
            self.url(path),
            headers=all_headers,
            **kwargs,  # type: ignore[arg-type]
        ) as response:
            body = await response.read()
            data = await response.json() if body else None
            return response.status, data, dict(response.headers)

    async def put(self, chunks: Iterable[SignedChunk]) -> None:
        """Store chunks (in a worker thread: each put is a synced commit)."""

        def put_all() -> None:
            for chunk in chunks:
                self.store.put(chunk)

        await asyncio.to_thread(put_all)

    async def login(self, username: str = "admin", password: str | None = None) -> str:
        status, data, _ = await self.call(
            "POST",
            "/api/v1/auth/login",
            json={"username": username, "password": password or PASSWORDS[username]},
        )
        assert status == 200, data
        assert isinstance(data, dict)
        token = data["token"]
        assert isinstance(token, str)
        return token


@asynccontextmanager
async def running_api(
    directory: Path, *, api_toml: str = "", heartbeat_s: float = HEARTBEAT_S
) -> AsyncIterator[ApiSite]:
    """Start the API over HTTPS on a free loopback port; stop it and close everything after.

    The event hub and live relay are the ones the link and the REST streams serve; tests
    publish into them as the recorders do. Stream heartbeats run on the real clock (the
    manual one would make them spin).
    """
    config = api_config(directory, api_toml=api_toml)
    clock = ManualClock(T0_NS)
    signer = await asyncio.to_thread(SiteSigner.load_or_create, config.storage.key_path)
    identity = await asyncio.to_thread(site_identity, config, clock)
    store = await asyncio.to_thread(
        ChunkStore.open,
        config.storage.path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=HOLD_BUDGET_BYTES,
        clock=clock,
        home_site_id=config.site.id,
    )
    cameras_up = {"cam-a": True, "cam-b": False}
    service = SiteService(
        config,
        store,
        public_key=signer.public_key,
        fingerprint=identity.fingerprint,
        clock=clock,
        cameras_up=lambda: cameras_up,
        version="9.9.9",
    )
    events, live = EventHub(), LiveRelay()
    link = link_route(events=events, live=live, clock=clock, software="test", read_timeout_s=30.0)
    streams = stream_routes(events=events, live=live, clock=SystemClock(), heartbeat_s=heartbeat_s)
    app = build_web_app(
        service,
        Accounts(config.users, clock=clock, token_ttl_s=TOKEN_TTL_S),
        extra_routes=[link, *streams],
    )
    server = ApiServer(app, host="127.0.0.1", port=0, ssl_context=identity.server_ssl_context())
    try:
        port = await server.start()
        connector = aiohttp.TCPConnector(ssl=pinned_fingerprint(identity.fingerprint))
        async with aiohttp.ClientSession(connector=connector) as client:
            yield ApiSite(
                config,
                clock,
                store,
                signer,
                identity,
                service,
                app,
                f"https://127.0.0.1:{port}",
                client,
                events,
                live,
                cameras_up,
            )
    finally:
        await server.stop()
        await service.wait_idle()
        store.close()
