"""Adding, changing and removing sites: what the API's and the CLI's site commands do.

Every change either happens completely or not at all, and a refusal names the setting at
fault:

- adding a site the central dials first probes it with exactly the settings given
  (`site_probe.probe_site`, bounded by the link read timeout), then writes the site and its
  devices in one transaction, then starts its connector;
- changing how a site is reached (address, port, scheme, account, password, pin) probes
  the new settings first, and refuses them when they lead to another site (another
  identity or signing key): recordings must never be mixed between sites;
- enrolment tokens let a site behind NAT dial in; the token is shown once, only its digest
  is kept (see `enrolment.py` for the dial-in side);
- removing a site stops its connector and deletes its catalog rows; recordings the central
  made of it stay in the media store until retention removes them (they are evidence).

"Update hardware" reads the device list over the site's open link and reports what was
added, removed, returned or changed since the last report: what this reading changed
together with what the central changed by itself when the site's link opened or a camera
came back (`unreported_hardware.py`); the site's `hardware_changed` notification, which told
of those, is cleared.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from central.catalog.catalog import Catalog
from central.catalog.errors import InvalidRecord
from central.catalog.records import (
    SCHEMES,
    HardwareDiff,
    NewSite,
    RetrievalSettings,
    SiteRecord,
)
from central.retrieval.retention_trends import RetentionTrends
from central.site_device_list import DeviceListError, discovered_devices
from central.site_probe import ProbedSite, SiteAddress, SiteProbeError, probe_site
from central.site_registry import SiteRegistry
from central.unreported_hardware import UnreportedHardware
from shared.clock import NS_PER_S, Clock
from shared.link_io.client import LinkLost, RequestFailed

DEFAULT_SITE_PORT = 8443
ENROLMENT_TTL_S = 7 * 86_400
MAX_ENROLMENT_TTL_S = 90 * 86_400
HARDWARE_TIMEOUT_S = 15.0
_CONNECTION_FIELDS = ("address", "port", "scheme", "username", "password", "fingerprint")


class SiteOffline(Exception):
    """The operation needs the site's link, and the site has none now."""


@dataclass(frozen=True, slots=True)
class SiteSettings:
    """How to reach a site the central dials, as an administrator gives it."""

    name: str | None
    address: str
    port: int
    scheme: str
    username: str
    password: str
    fingerprint: str | None


@dataclass(frozen=True, slots=True)
class IssuedEnrolment:
    token: str  # shown once
    label: str
    expires_ns: int


def enrolment_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class SiteManagement:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        registry: SiteRegistry,
        http: aiohttp.ClientSession,
        *,
        clock: Clock,
        software: str,
        read_timeout_s: float,
        unreported: UnreportedHardware,
        retention_trends: RetentionTrends | None = None,
    ) -> None:
        """`unreported`: the device list changes the site's links found, which the next
        `update_hardware` of each site reports (the `SiteLinkWork`'s book);
        `retention_trends`: what the links saw of each site's retention, forgotten with the
        site."""
        self._catalog = catalog
        self._trends = retention_trends
        self._unreported = unreported
        self._registry = registry
        self._http = http
        self._clock = clock
        self._software = software
        self._read_timeout_s = read_timeout_s
        self._changing = asyncio.Lock()  # one site change at a time: no races on the same row

    async def add_site(self, settings: SiteSettings) -> SiteRecord:
        """Probe, then add the site with its devices; `SiteProbeError` names a wrong setting,
        `Conflict` a site that is there already."""
        if settings.scheme not in SCHEMES:
            raise SiteProbeError("scheme", f"must be one of {', '.join(SCHEMES)}")
        probed = await self._probe(settings)
        async with self._changing:
            existing = await asyncio.to_thread(
                self._catalog.site_by_remote_id, probed.remote_site_id
            )
            if existing is not None:
                raise SiteProbeError(
                    "site",
                    f"this site ({probed.remote_site_id}) was added already, as "
                    f"{existing.site_id} ({existing.name!r})",
                )
            new_site = NewSite(
                name=settings.name or probed.name,
                dial="central",
                address=settings.address,
                port=settings.port,
                scheme=settings.scheme,  # type: ignore[arg-type]
                username=settings.username,
                fingerprint=_pin(settings),
                remote_site_id=probed.remote_site_id,
                product=probed.product,
                version=probed.version,
                public_key=probed.public_key,
                time_zone=probed.time_zone,
            )
            site, _ = await asyncio.to_thread(
                self._catalog.add_site, new_site, settings.password, list(probed.devices)
            )
        self._registry.site_added(site.site_id)
        return site

    async def update_site(self, site_id: str, changes: Mapping[str, object]) -> SiteRecord:
        """Change a site's name, connection settings, retrieval settings or enabled flag.
        Connection settings are probed first; see the module docstring."""
        async with self._changing:
            site = await asyncio.to_thread(self._catalog.site, site_id)
            fields = dict(changes)
            password = fields.pop("password", None)
            connection_changed = password is not None or any(
                key in fields and fields[key] != getattr(site, key) for key in _CONNECTION_FIELDS
            )
            if connection_changed:
                if site.dial != "central":
                    field = next(k for k in _CONNECTION_FIELDS if k in fields or k == "password")
                    raise InvalidRecord(field, "a site that dials in has no connection settings")
                await self._probe_change(site, fields, password)
            if "retrieval" in fields and isinstance(fields["retrieval"], Mapping):
                fields["retrieval"] = _retrieval(site.retrieval, fields["retrieval"])
            updated = site
            if fields:
                updated = await asyncio.to_thread(self._catalog.update_site, site_id, **fields)
            if password is not None:
                await asyncio.to_thread(self._catalog.set_site_password, site_id, str(password))
        if connection_changed:
            self._registry.settings_changed(site_id)
        if updated.enabled != site.enabled:
            self._registry.set_enabled(site_id, updated.enabled)
        return updated

    async def remove_site(self, site_id: str) -> None:
        async with self._changing:
            await asyncio.to_thread(self._catalog.site, site_id)  # NotFound first
            await self._registry.site_removed(site_id)
            await asyncio.to_thread(self._catalog.remove_site, site_id)
            await self._unreported.forget(site_id)
            if self._trends is not None:
                await asyncio.to_thread(self._trends.forget, site_id)

    async def update_hardware(self, site_id: str) -> HardwareDiff:
        """Read the device list over the site's link now and apply it; what changed since
        the site's last report (see the module docstring). `SiteOffline` without a link."""
        await asyncio.to_thread(self._catalog.site, site_id)  # NotFound first
        link = self._registry.link(site_id)
        if link is None:
            raise SiteOffline(f"site {site_id} is offline; its devices cannot be read now")
        try:
            async with asyncio.timeout(HARDWARE_TIMEOUT_S):
                devices = await link.devices()
            found = discovered_devices(devices)
        except (LinkLost, RequestFailed, TimeoutError, DeviceListError) as exc:
            raise SiteOffline(f"site {site_id}: the device list could not be read ({exc})") from exc
        diff = await asyncio.to_thread(self._catalog.apply_hardware, site_id, found)
        return await self._unreported.report(site_id, diff)

    async def issue_enrolment(self, label: str, ttl_s: float | None) -> IssuedEnrolment:
        ttl = ENROLMENT_TTL_S if ttl_s is None else ttl_s
        if not 60 <= ttl <= MAX_ENROLMENT_TTL_S:
            raise InvalidRecord("expires_in_s", f"must be 60 to {MAX_ENROLMENT_TTL_S} seconds")
        token = secrets.token_urlsafe(32)
        expires_ns = self._clock.now_ns() + round(ttl * NS_PER_S)
        record = await asyncio.to_thread(
            self._catalog.add_enrolment_token, enrolment_digest(token), label, expires_ns
        )
        return IssuedEnrolment(token, record.label, record.expires_ns)

    # -- inside ----------------------------------------------------------------------------

    async def _probe(self, settings: SiteSettings) -> ProbedSite:
        """The probe, bounded by the link read timeout: an address that takes connections
        and never answers must not hold the request (and, for a change, every other site
        change waiting for the lock) for ever."""
        address = SiteAddress(settings.scheme, settings.address, settings.port)
        try:
            async with asyncio.timeout(self._read_timeout_s):
                return await probe_site(
                    self._http,
                    address,
                    username=settings.username,
                    password=settings.password,
                    fingerprint=settings.fingerprint,
                    clock=self._clock,
                    software=self._software,
                    read_timeout_s=self._read_timeout_s,
                )
        except TimeoutError as exc:
            raise SiteProbeError(
                "address",
                f"{address.base_url}: no answer within {self._read_timeout_s:g} s "
                "(the link read timeout)",
            ) from exc

    async def _probe_change(
        self, site: SiteRecord, fields: dict[str, object], password: object
    ) -> None:
        def value(key: str) -> object:
            return fields[key] if key in fields else getattr(site, key)

        if password is None:
            password = await asyncio.to_thread(self._catalog.site_password, site.site_id)
        settings = SiteSettings(
            name=None,
            address=str(value("address")),
            port=int(value("port")),  # type: ignore[call-overload]
            scheme=str(value("scheme")),
            username=str(value("username") or ""),
            password=str(password or ""),
            fingerprint=None if value("fingerprint") is None else str(value("fingerprint")),
        )
        probed = await self._probe(settings)
        if site.remote_site_id is not None and probed.remote_site_id != site.remote_site_id:
            raise SiteProbeError(
                "address",
                f"that is site {probed.remote_site_id}, not {site.remote_site_id}: add it as "
                "a site of its own",
            )
        if site.public_key is not None and probed.public_key != site.public_key:
            raise SiteProbeError(
                "site", "the site there signs with another key; its recordings cannot be trusted"
            )
        if "fingerprint" in fields or settings.scheme == "https":
            fields["fingerprint"] = _pin(settings)


def _pin(settings: SiteSettings) -> str | None:
    """The pin to store (the catalog normalises its form); none over HTTP."""
    return settings.fingerprint if settings.scheme == "https" else None


MIN_RETRIEVAL_CAP_BPS = 256_000
"""The lowest retrieval cap the API takes: the cap is kept within 5% in every 1 s window
down to it (docs/design/protocol.md, pacing)."""


def _retrieval(current: RetrievalSettings, changes: Mapping[str, object]) -> RetrievalSettings:
    allowed = {"max_bandwidth_bps", "window_start", "window_end", "parallel_devices"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidRecord(
            f"retrieval.{unknown[0]}", f"unknown; known: {', '.join(sorted(allowed))}"
        )
    cap = changes.get("max_bandwidth_bps")
    if isinstance(cap, int) and not isinstance(cap, bool) and cap < MIN_RETRIEVAL_CAP_BPS:
        raise InvalidRecord(
            "retrieval.max_bandwidth_bps",
            f"must be at least {MIN_RETRIEVAL_CAP_BPS} bits per second (below that a chunk's "
            "head, sent whole, is more than 5% of a second's worth on its own), or null for "
            "no cap",
        )
    values: dict[str, object] = {
        "max_bandwidth_bps": current.max_bandwidth_bps,
        "window_start": current.window_start,
        "window_end": current.window_end,
        "parallel_devices": current.parallel_devices,
    }
    values.update(changes)
    return RetrievalSettings(**values)  # type: ignore[arg-type]
