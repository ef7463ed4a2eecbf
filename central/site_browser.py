"""Finding sites on the LAN by their zeroconf advertisement, so an administrator can pick one.

Every agent announces `_siteline._tcp.local.` (see agent/discovery.py) with a TXT record
holding its `site_id`, `name`, `version`, `port`, `scheme`, `path` and, over HTTPS, its
certificate `fingerprint`. `SiteBrowser` watches that service type on a zeroconf instance the
caller owns and keeps the current list of sites: each service is resolved to a `FoundSite`
when it appears or changes and dropped when it says goodbye, and an optional callback hears
every addition, update and removal. `browse_sites` is the bounded form: browse for a while,
return what answered. Records that cannot describe a reachable Siteline site (no site id, an
unknown scheme, HTTPS without a valid fingerprint, another API path, ports that disagree)
are skipped with a logged reason; they never stop the browser. Fingerprints come out as the
catalog keeps them: 64 lowercase hex digits without colons.

`FoundSite` is also what the address scan (central/address_scan.py) reports; there only the
address, port, scheme and fingerprint are known until the site is added with an account.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from agent.discovery import API_PATH, SERVICE_TYPE
from shared.clock import Clock
from shared.tls_pinning import normalize_fingerprint

__all__ = [
    "FoundSite",
    "SiteBrowser",
    "SiteChange",
    "SiteChangeKind",
    "browse_sites",
    "parse_advertisement",
]

_log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_S = 3.0
SCHEMES = ("https", "http")
_SITE_ID = re.compile(r"[A-Za-z0-9-]{8,64}")  # as agent/config.py accepts it
MAX_TEXT_CHARS = 200  # the advertiser clips name and version to 200 bytes


@dataclass(frozen=True, slots=True)
class FoundSite:
    """A site the central could add: where it answers and, where known, who it is.

    `fingerprint` is the certificate's SHA-256 as 64 lowercase hex digits (None over HTTP).
    `site_id`, `name` and `version` are what the site said about itself; an address scan
    does not learn them (None) until the site is added with an account.
    """

    addresses: tuple[str, ...]
    port: int
    scheme: str
    fingerprint: str | None
    source: Literal["zeroconf", "scan"]
    site_id: str | None = None
    name: str | None = None
    version: str | None = None

    @property
    def address(self) -> str:
        """The address to try first."""
        return self.addresses[0]


class SiteChangeKind(enum.Enum):
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class SiteChange:
    """One change to the browser's list; for a removal, `site` is the last known record."""

    kind: SiteChangeKind
    service_name: str
    site: FoundSite


class MalformedAdvertisement(ValueError):
    """A service record that does not describe a usable Siteline site."""


def parse_advertisement(
    properties: Mapping[bytes, bytes | None], port: int, addresses: tuple[str, ...]
) -> FoundSite:
    """The site a resolved service describes; `MalformedAdvertisement` saying why not.

    `properties` is the raw TXT record, `port` the service's (SRV) port and `addresses`
    the addresses it resolved to.
    """
    txt = _decoded_txt(properties)
    site_id = txt.get("site_id")
    if not site_id or not _SITE_ID.fullmatch(site_id):
        raise MalformedAdvertisement(f"site_id {site_id!r}: expected 8 to 64 letters, digits or -")
    scheme = txt.get("scheme")
    if scheme not in SCHEMES:
        raise MalformedAdvertisement(f"scheme {scheme!r}: expected https or http")
    path = txt.get("path")
    if path is not None and path != API_PATH:
        raise MalformedAdvertisement(f"path {path!r}: the central speaks {API_PATH}")
    if not 1 <= port <= 65535:
        raise MalformedAdvertisement(f"port {port}: not a TCP port")
    txt_port = txt.get("port")
    if txt_port is not None and txt_port != str(port):
        raise MalformedAdvertisement(
            f"port {txt_port!r} in the TXT record disagrees with the service's port {port}"
        )
    fingerprint = _fingerprint(scheme, txt.get("fingerprint"))
    if not addresses:
        raise MalformedAdvertisement("the service resolved to no address")
    return FoundSite(
        addresses=addresses,
        port=port,
        scheme=scheme,
        fingerprint=fingerprint,
        source="zeroconf",
        site_id=site_id,
        name=_optional_text(txt, "name"),
        version=_optional_text(txt, "version"),
    )


def _decoded_txt(properties: Mapping[bytes, bytes | None]) -> dict[str, str | None]:
    txt: dict[str, str | None] = {}
    for raw_key, raw_value in properties.items():
        try:
            key = raw_key.decode("ascii").lower()
        except UnicodeDecodeError as exc:
            raise MalformedAdvertisement(f"TXT key {raw_key!r}: not ASCII") from exc
        if raw_value is None:
            txt.setdefault(key, None)
            continue
        try:
            txt.setdefault(key, raw_value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise MalformedAdvertisement(f"TXT {key}: not UTF-8 ({raw_value[:40]!r})") from exc
    return txt


def _fingerprint(scheme: str, value: str | None) -> str | None:
    if scheme == "http":
        if value is not None:
            raise MalformedAdvertisement("fingerprint: an http site has no certificate to pin")
        return None
    if value is None:
        raise MalformedAdvertisement("fingerprint: an https site must advertise its fingerprint")
    try:
        return normalize_fingerprint(value).hex()
    except ValueError as exc:
        raise MalformedAdvertisement(str(exc)) from exc


def _optional_text(txt: Mapping[str, str | None], key: str) -> str | None:
    value = txt.get(key)
    if value is None:
        return None
    return value[:MAX_TEXT_CHARS]


class SiteBrowser:
    """Keeps the list of sites advertised on the LAN while it runs (between start and stop).

    `zeroconf` belongs to the caller, who closes it after `stop`; it must have been made on
    the running event loop (as `AsyncZeroconf` is inside a coroutine), so its reports arrive
    on that loop. `on_change` is called there for every site added, updated (its record
    changed) or removed; a record that turns malformed counts as a removal.
    """

    def __init__(
        self,
        zeroconf: AsyncZeroconf,
        *,
        on_change: Callable[[SiteChange], None] | None = None,
        resolve_timeout_s: float = RESOLVE_TIMEOUT_S,
    ) -> None:
        self._zeroconf = zeroconf
        self._on_change = on_change
        self._resolve_timeout_ms = round(resolve_timeout_s * 1000)
        self._sites: dict[str, FoundSite] = {}
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._skipped: dict[str, str] = {}  # service name -> reason last logged
        self._browser: AsyncServiceBrowser | None = None
        self._running = False

    def sites(self) -> list[FoundSite]:
        """The sites advertised now, by name then site id."""
        return sorted(self._sites.values(), key=lambda s: (s.name or "", s.site_id or ""))

    async def start(self) -> None:
        if self._running:
            raise RuntimeError("the site browser is already running")
        # The browser reports services already in zeroconf's cache while it is being made.
        self._running = True
        self._browser = AsyncServiceBrowser(
            self._zeroconf.zeroconf, SERVICE_TYPE, handlers=[self._service_changed]
        )

    async def stop(self) -> None:
        """Stop browsing and resolving (idempotent); the list keeps its last state."""
        self._running = False
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        tasks = list(self._resolving.values())
        self._resolving.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _service_changed(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if not self._running:
            return
        previous = self._resolving.pop(name, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            self._skipped.pop(name, None)
            self._forget(name)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(name), name=f"resolve {name}")
        self._resolving[name] = task
        task.add_done_callback(lambda done: self._resolved(name, done))

    def _resolved(self, name: str, task: asyncio.Task[None]) -> None:
        if self._resolving.get(name) is task:
            del self._resolving[name]
        if not task.cancelled() and task.exception() is not None:
            _log.warning("zeroconf: resolving %s failed", name, exc_info=task.exception())

    async def _resolve(self, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zeroconf.zeroconf, self._resolve_timeout_ms):
            _log.info("zeroconf: %s did not answer in time; not listed", name)
            return
        addresses = tuple(info.parsed_scoped_addresses())
        try:
            site = parse_advertisement(info.properties, info.port or 0, addresses)
        except MalformedAdvertisement as exc:
            self._skip(name, str(exc))
            return
        self._skipped.pop(name, None)
        known = self._sites.get(name)
        if known == site:
            return
        self._sites[name] = site
        kind = SiteChangeKind.ADDED if known is None else SiteChangeKind.UPDATED
        self._tell(SiteChange(kind, name, site))

    def _skip(self, name: str, reason: str) -> None:
        if self._skipped.get(name) != reason:
            self._skipped[name] = reason
            _log.warning("zeroconf: skipping %s: %s", name, reason)
        self._forget(name)

    def _forget(self, name: str) -> None:
        site = self._sites.pop(name, None)
        if site is not None:
            self._tell(SiteChange(SiteChangeKind.REMOVED, name, site))

    def _tell(self, change: SiteChange) -> None:
        if self._on_change is not None:
            self._on_change(change)


async def browse_sites(zeroconf: AsyncZeroconf, duration_s: float, clock: Clock) -> list[FoundSite]:
    """The sites that answered while browsing for `duration_s` seconds of `clock`."""
    if duration_s <= 0:
        raise ValueError(f"duration_s: {duration_s} is not a positive number of seconds")
    browser = SiteBrowser(zeroconf)
    await browser.start()
    try:
        await clock.sleep(duration_s)
    finally:
        await browser.stop()
    return browser.sites()
