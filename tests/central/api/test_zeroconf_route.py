"""Finding a site on the LAN through the API: an advertised agent shows in
GET /discovery/zeroconf with its identity and fingerprint, marked known once added."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from zeroconf import InterfaceChoice
from zeroconf.asyncio import AsyncZeroconf

from agent.discovery import AdvertisedSite, SiteAdvertiser
from central.site_browser import browse_sites
from shared.clock import SystemClock
from tests.central.central_fixture import running_central

FINGERPRINT = ":".join(f"{b:02X}" for b in range(0x10, 0x30))


async def test_an_advertised_site_is_found_through_the_api(tmp_path: Path) -> None:
    try:
        zeroconf = AsyncZeroconf(interfaces=InterfaceChoice.All)
    except OSError as exc:
        pytest.skip(f"multicast is not available here: {exc}")
    site = AdvertisedSite(
        site_id=str(uuid.uuid4()),
        name="Depot",
        version="9.9",
        port=8443,
        scheme="https",
        fingerprint=FINGERPRINT,
    )
    advertiser = SiteAdvertiser(zeroconf, site, ["127.0.0.1"])
    try:
        await advertiser.start()
        async with running_central(tmp_path / "central") as central:
            status, body = await central.call("GET", "/discovery/zeroconf?wait_s=3")
            assert status == 200, body
            found = [f for f in body["sites"] if f["remote_site_id"] == site.site_id]
            if not found:
                # Tell a broken route from a machine without multicast: browse directly.
                listener = AsyncZeroconf(interfaces=InterfaceChoice.All)
                try:
                    direct = await browse_sites(listener, 3.0, SystemClock())
                finally:
                    await listener.async_close()
                if not any(f.site_id == site.site_id for f in direct):
                    pytest.skip("multicast between two zeroconf instances does not work here")
            [one] = found
            assert (one["name"], one["port"], one["scheme"]) == ("Depot", 8443, "https")
            assert one["fingerprint"] == FINGERPRINT
            assert one["source"] == "zeroconf"
            assert one["known_site_id"] is None
            status, body = await central.call("GET", "/discovery/zeroconf?wait_s=99")
            assert (status, body["error"]["field"]) == (400, "wait_s")
    finally:
        await advertiser.stop()
        await zeroconf.async_close()
