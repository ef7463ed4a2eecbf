"""How tests that build a `SiteConnector` by hand dial their site: the central's own
`connect_to_site`, with the site's account from the catalog (its password as the catalog
keeps it) and a short read timeout."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp

from central.catalog.catalog import Catalog
from central.catalog.records import SiteRecord
from shared.clock import Clock
from shared.link_io.client import LinkClient
from shared.link_io.dialing import connect_to_site

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
