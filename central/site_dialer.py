"""Opening a link to a site the central dials, with the settings the catalog holds for it.

The password is read from the catalog (where it is kept encrypted) at each attempt, so a
changed password takes effect on the next dial; the certificate is pinned by the stored
fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp

from central.catalog.catalog import Catalog
from central.catalog.records import SiteRecord
from central.site_probe import SiteAddress
from shared.clock import Clock
from shared.link_io.client import LinkClient
from shared.link_io.dialing import DialError, DialFailure, connect_to_site


class SiteDialer:
    """A `Dialer` for `SiteConnector`; see the module docstring."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        catalog: Catalog,
        *,
        clock: Clock,
        software: str,
        read_timeout_s: float,
    ) -> None:
        self._http = http
        self._catalog = catalog
        self._clock = clock
        self._software = software
        self._read_timeout_s = read_timeout_s

    @contextlib.asynccontextmanager
    async def __call__(self, site: SiteRecord) -> AsyncIterator[LinkClient]:
        if site.address is None or site.port is None:
            raise DialError(f"site {site.site_id} dials in; it has no address", DialFailure.BROKEN)
        if site.username is None:
            raise DialError(
                f"site {site.site_id} has no account to log in with", DialFailure.REFUSED
            )
        password = self._catalog.site_password(site.site_id) or ""
        address = SiteAddress(site.scheme, site.address, site.port)
        async with contextlib.AsyncExitStack() as stack:
            # Opening (login, handshake, hello) is bounded too: a site that accepts and
            # never answers is unreachable, and is tried again later.
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    link = await stack.enter_async_context(
                        connect_to_site(
                            self._http,
                            address.base_url,
                            username=site.username,
                            password=password,
                            fingerprint=site.fingerprint,
                            clock=self._clock,
                            software=self._software,
                            read_timeout_s=self._read_timeout_s,
                        )
                    )
            except TimeoutError as exc:
                raise DialError(
                    f"{address.base_url}: no answer within {self._read_timeout_s:g} s",
                    DialFailure.UNREACHABLE,
                ) from exc
            yield link
