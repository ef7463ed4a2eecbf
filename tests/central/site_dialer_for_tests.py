"""How tests that build a `SiteConnector` by hand add and dial their site: a site record
the central dials at a loopback port with an account of the test site, and the central's
own `connect_to_site`, with that account from the catalog (its password as the catalog
keeps it) and a short read timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp

from central.catalog.catalog import Catalog
from central.catalog.records import NewSite, SiteRecord
from shared.clock import Clock
from shared.link_io.client import LinkClient
from shared.link_io.dialing import connect_to_site
from tests.agent_api.api_site import PASSWORDS

READ_TIMEOUT_S = 5


def catalog_dialer(
    http: aiohttp.ClientSession, catalog: Catalog, clock: Clock
) -> Callable[[SiteRecord], AbstractAsyncContextManager[LinkClient]]:
    """A connector's dialer: each site at its address, with its account from `catalog`."""

    def dial(record: SiteRecord) -> AbstractAsyncContextManager[LinkClient]:
        return connect_to_site(
            http,
            f"{record.scheme}://{record.address}:{record.port}",
            username=record.username or "",
            password=catalog.site_password(record.site_id) or "",
            fingerprint=record.fingerprint,
            clock=clock,
            software="test-central",
            read_timeout_s=READ_TIMEOUT_S,
        )

    return dial


async def add_dialled_site(
    catalog: Catalog,
    port: int,
    fingerprint: str,
    *,
    username: str = "admin",
    remote_site_id: str | None = None,
) -> SiteRecord:
    """A site "Shop" the central dials at 127.0.0.1:`port` over HTTPS, pinned to
    `fingerprint` (as the site prints it), with the test site's account `username`."""
    record, _ = await asyncio.to_thread(
        catalog.add_site,
        NewSite(
            name="Shop",
            dial="central",
            address="127.0.0.1",
            port=port,
            scheme="https",
            username=username,
            fingerprint=fingerprint.replace(":", "").lower(),
            remote_site_id=remote_site_id,
        ),
        PASSWORDS[username],
    )
    return record
