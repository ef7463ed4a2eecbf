"""The agent's API and link server over a store, as the benchmark sites serve them: every
camera reported up, no events, a 30 s link read timeout; with a `SentLog`, what the link
sends is recorded in it (bench/sent_log.py)."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from sent_log import SentLog, counting_link_route

from agent.accounts import Accounts
from agent.config import AgentConfig
from agent.event_hub import EventHub
from agent.link_endpoint import link_route
from agent.site_service import SiteService
from agent.web_api import build_web_app
from shared.clock import Clock
from shared.live_relay import LiveRelay
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore

READ_TIMEOUT_S = 30.0


def bench_site_app(
    config: AgentConfig,
    store: ChunkStore,
    *,
    signer: SiteSigner,
    fingerprint: str,
    clock: Clock,
    devices: Sequence[str],
    relay: LiveRelay,
    extra_routes: Sequence[web.RouteDef] = (),
    sent: SentLog | None = None,
) -> tuple[web.Application, SiteService]:
    service = SiteService(
        config,
        store,
        public_key=signer.public_key,
        fingerprint=fingerprint,
        clock=clock,
        cameras_up=lambda: dict.fromkeys(devices, True),
        version="bench",
    )
    events = EventHub()
    if sent is None:
        route = link_route(
            events=events, live=relay, clock=clock, software="bench", read_timeout_s=READ_TIMEOUT_S
        )
    else:
        route = counting_link_route(
            sent,
            events=events,
            live=relay,
            clock=clock,
            software="bench",
            read_timeout_s=READ_TIMEOUT_S,
        )
    app = build_web_app(
        service, Accounts(config.users, clock=clock), extra_routes=[route, *extra_routes]
    )
    return app, service
