"""Opening a link to a site the central dials, with the settings the catalog holds for it.

The password is read from the catalog (where it is kept encrypted) at each attempt, so a
changed password takes effect on the next dial; the certificate is pinned by the stored
fingerprint.

Attempts start at a bounded pace (`DialPacing`, shared by every site of the dialer): a central
that starts with a thousand sites, or whose sites all dropped at once, would otherwise begin a
thousand connections in one turn of its event loop, and every request to the API would wait
behind them (0.3-0.6 s at the start of a central with a thousand unreachable sites; see
docs/benchmarks.md). A thousand a second keeps each pass of the loop short and still dials a
thousand sites within a second. An attempt that waits for its turn is "connecting"; the wait
does not count against its read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp

from central.catalog.catalog import Catalog
from central.catalog.records import SiteRecord
from central.site_probe import SiteAddress
from shared.clock import NS_PER_S, Clock
from shared.link_io.client import LinkClient
from shared.link_io.dialing import DialError, DialFailure, connect_to_site

DIALS_PER_S = 1000.0
DIAL_BURST = 50  # start together (about 35 ms of the event loop for sites that refuse)


class DialPacing:
    """At most `per_s` attempts start per second, after a first `burst` at once; the others
    wait their turn, in the order they asked (a leaky bucket)."""

    def __init__(self, clock: Clock, *, per_s: float, burst: int) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError(f"need per_s > 0 and burst >= 1, not {per_s}, {burst}")
        self._clock = clock
        self._interval_ns = round(NS_PER_S / per_s)
        self._tolerance_ns = (burst - 1) * self._interval_ns
        self._next_ns: int | None = None  # when the bucket is empty again
        self._last_started: asyncio.Event | None = None  # set once the latest turn began

    async def turn(self) -> None:
        """Return when this attempt may start."""
        now_ns = self._clock.monotonic_ns()
        empty_ns = now_ns if self._next_ns is None else max(self._next_ns, now_ns)
        wait_ns = empty_ns - now_ns - self._tolerance_ns
        # The turn is taken now, before any wait, so that later callers queue behind it.
        self._next_ns = empty_ns + self._interval_ns
        if wait_ns <= 0 and (self._last_started is None or self._last_started.is_set()):
            return
        # Each waiting turn also waits for the one before it: sleeps that end within the
        # same moment (a busy loop) would otherwise wake in any order.
        before, started = self._last_started, asyncio.Event()
        self._last_started = started
        try:
            if wait_ns > 0:
                await self._clock.sleep(wait_ns / NS_PER_S)
            if before is not None:
                await before.wait()
        finally:
            started.set()  # also when cancelled: the turns after it go on


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
        dials_per_s: float = DIALS_PER_S,
        dial_burst: int = DIAL_BURST,
    ) -> None:
        self._http = http
        self._catalog = catalog
        self._clock = clock
        self._software = software
        self._read_timeout_s = read_timeout_s
        self._pacing = DialPacing(clock, per_s=dials_per_s, burst=dial_burst)

    @contextlib.asynccontextmanager
    async def __call__(self, site: SiteRecord) -> AsyncIterator[LinkClient]:
        if site.address is None or site.port is None:
            raise DialError(f"site {site.site_id} dials in; it has no address", DialFailure.BROKEN)
        if site.username is None:
            raise DialError(
                f"site {site.site_id} has no account to log in with", DialFailure.REFUSED
            )
        await self._pacing.turn()
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
