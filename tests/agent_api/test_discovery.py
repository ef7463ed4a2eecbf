"""The zeroconf record: a real browser on loopback finds `_siteline._tcp.local.` with the
site's TXT fields, and loses it after the goodbye."""

from __future__ import annotations

import asyncio

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from agent.discovery import SERVICE_TYPE, AdvertisedSite, SiteAdvertiser

LOOPBACK = ["127.0.0.1"]
WAIT_S = 10.0
FINGERPRINT = ":".join(["AB"] * 32)


class _Changes:
    """Service changes a browser reported, as an awaitable condition."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ServiceStateChange]] = []
        self._changed = asyncio.Event()

    def handler(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        self.seen.append((name, state_change))
        self._changed.set()

    async def wait_for(self, name: str, change: ServiceStateChange) -> None:
        async with asyncio.timeout(WAIT_S):
            while (name, change) not in self.seen:
                self._changed.clear()
                await self._changed.wait()


async def test_a_browser_finds_the_site_with_its_txt_record() -> None:
    site = AdvertisedSite(
        site_id="3f2b6c1e-0000-4000-8000-00000000abcd",
        name="Shop 12 — Entrance",
        version="1.2.3",
        port=8443,
        scheme="https",
        fingerprint=FINGERPRINT,
    )
    async with (
        AsyncZeroconf(interfaces=LOOPBACK) as agent_side,
        AsyncZeroconf(interfaces=LOOPBACK) as central_side,
    ):
        advertiser = SiteAdvertiser(agent_side, site, ["127.0.0.1"])
        changes = _Changes()
        browser = AsyncServiceBrowser(
            central_side.zeroconf, SERVICE_TYPE, handlers=[changes.handler]
        )
        try:
            await advertiser.start()
            name = advertiser.service_name
            assert name == f"siteline-{site.site_id}.{SERVICE_TYPE}"
            await changes.wait_for(name, ServiceStateChange.Added)
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            assert await info.async_request(central_side.zeroconf, round(WAIT_S * 1000))
            assert info.port == 8443
            assert info.parsed_addresses() == ["127.0.0.1"]
            assert info.decoded_properties == {
                "site_id": site.site_id,
                "name": "Shop 12 — Entrance",
                "version": "1.2.3",
                "port": "8443",
                "scheme": "https",
                "path": "/api/v1",
                "fingerprint": FINGERPRINT,
            }
            await advertiser.stop()
            await changes.wait_for(name, ServiceStateChange.Removed)
        finally:
            await browser.async_cancel()
            await advertiser.stop()


def test_plain_http_sites_carry_no_fingerprint_and_long_names_are_clipped() -> None:
    site = AdvertisedSite("site-0001", "é" * 300, "1", 8080, "http", None)
    txt = site.txt()
    assert "fingerprint" not in txt
    assert txt["scheme"] == "http"
    assert txt["name"] == "é" * 100  # 200 bytes of UTF-8, cut between characters
