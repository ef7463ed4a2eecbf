"""Zeroconf advertisement: the site announces `_siteline._tcp.local.` so a technician's
tools and the central find it on the LAN, with what they need to pin its certificate.

TXT record: `site_id`, `name`, `version`, `port`, `scheme`, `path` (`/api/v1`) and, over
HTTPS, `fingerprint` (SHA-256 of the certificate as AB:CD:...). The instance is named after
the site id, which is stable and unique; the site's name can be anything and goes in TXT.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import ifaddr
from zeroconf import InterfaceChoice
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

SERVICE_TYPE = "_siteline._tcp.local."
API_PATH = "/api/v1"
MAX_TXT_VALUE_BYTES = 200  # a TXT string holds 255 bytes with its key


@dataclass(frozen=True)
class AdvertisedSite:
    """What the advertisement says about the site."""

    site_id: str
    name: str
    version: str
    port: int
    scheme: str
    fingerprint: str | None

    def txt(self) -> dict[str, str]:
        values = {
            "site_id": self.site_id,
            "name": _clip_utf8(self.name, MAX_TXT_VALUE_BYTES),
            "version": _clip_utf8(self.version, MAX_TXT_VALUE_BYTES),
            "port": str(self.port),
            "scheme": self.scheme,
            "path": API_PATH,
        }
        if self.fingerprint is not None:
            values["fingerprint"] = self.fingerprint
        return values

    @property
    def instance_label(self) -> str:
        return f"siteline-{self.site_id}"[:63]


class SiteAdvertiser:
    """Registers the site's service on `zeroconf` at `start` and withdraws it at `stop`.

    `addresses` are the IP addresses clients should use (see `advertised_addresses`). The
    caller owns `zeroconf` and closes it after `stop`.
    """

    def __init__(
        self, zeroconf: AsyncZeroconf, site: AdvertisedSite, addresses: Sequence[str]
    ) -> None:
        if not addresses:
            raise ValueError("a site must be advertised with at least one address")
        self._zeroconf = zeroconf
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{site.instance_label}.{SERVICE_TYPE}",
            addresses=[ipaddress.ip_address(a).packed for a in addresses],
            port=site.port,
            properties=site.txt(),
            server=f"{site.instance_label}.local.",
        )
        self._registered = False

    @property
    def service_name(self) -> str:
        """The registered name (it may differ from the requested one after a conflict)."""
        return self._info.name

    async def start(self) -> None:
        """Probe for the name, then announce (about two seconds; a conflict renames)."""
        announced = await self._zeroconf.async_register_service(self._info, allow_name_change=True)
        await announced
        self._registered = True

    async def stop(self) -> None:
        """Send the goodbye, so browsers forget the site at once (idempotent)."""
        if not self._registered:
            return
        self._registered = False
        goodbye = await self._zeroconf.async_unregister_service(self._info)
        await goodbye


def zeroconf_interfaces(bind: str) -> InterfaceChoice | list[str]:
    """Where to advertise for an API bound to `bind`: everywhere for a wildcard address."""
    if bind in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        return InterfaceChoice.All
    return [bind]


def advertised_addresses(bind: str) -> list[str]:
    """The addresses to publish for an API bound to `bind`: that one, or for a wildcard every
    IPv4 address of the machine that is not loopback (loopback only when there is no other)."""
    if bind not in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        return [bind]
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                found.append(ip.ip)
    return list(dict.fromkeys(found)) or ["127.0.0.1"]


def _clip_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
