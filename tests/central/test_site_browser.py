"""Finding sites by zeroconf: a real agent advertisement on loopback is found by the central's
browser with its fields in the catalog's form, a changed record is updated (and dropped when it
turns malformed), a goodbye removes it, and a record that cannot describe a usable site is
skipped with a logged reason.

Other programs on this machine may advertise on loopback at the same time (another test run),
so every test advertises fresh site ids and looks only at its own."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from agent.discovery import SERVICE_TYPE, AdvertisedSite, SiteAdvertiser
from central.site_browser import (
    FoundSite,
    MalformedAdvertisement,
    SiteBrowser,
    SiteChange,
    SiteChangeKind,
    browse_sites,
    parse_advertisement,
)
from shared.clock import SystemClock

LOOPBACK = ["127.0.0.1"]
WAIT_S = 10.0
POLL_S = 0.05
FINGERPRINT = ":".join(f"{b:02X}" for b in range(0xA0, 0xC0))
FINGERPRINT_HEX = bytes(range(0xA0, 0xC0)).hex()


def _new_site() -> AdvertisedSite:
    return AdvertisedSite(
        site_id=str(uuid.uuid4()),
        name="Shop 12 — Entrance",
        version="1.2.3",
        port=8443,
        scheme="https",
        fingerprint=FINGERPRINT,
    )


def _ours(sites: list[FoundSite], *site_ids: str) -> list[FoundSite]:
    return [site for site in sites if site.site_id in site_ids]


async def _zeroconf_on_loopback() -> AsyncZeroconf:
    try:
        return AsyncZeroconf(interfaces=LOOPBACK)
    except OSError as exc:
        pytest.skip(f"multicast on loopback is not available here: {exc}")


@dataclass
class _Sides:
    agent: AsyncZeroconf
    central: AsyncZeroconf


@pytest.fixture
async def sides() -> AsyncIterator[_Sides]:
    """An agent's and a central's zeroconf, both on loopback only."""
    agent = await _zeroconf_on_loopback()
    try:
        central = await _zeroconf_on_loopback()
    except BaseException:
        await agent.async_close()
        raise
    try:
        yield _Sides(agent, central)
    finally:
        await central.async_close()
        await agent.async_close()


@pytest.fixture
async def browser(sides: _Sides) -> AsyncIterator[tuple[SiteBrowser, list[SiteChange]]]:
    changes: list[SiteChange] = []
    site_browser = SiteBrowser(sides.central, on_change=changes.append)
    await site_browser.start()
    try:
        yield site_browser, changes
    finally:
        await site_browser.stop()


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait, polling, until `condition` holds; fail naming `what` after `WAIT_S` seconds."""
    for _ in range(round(WAIT_S / POLL_S)):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"not seen in {WAIT_S} s: {what}")


async def test_the_browser_finds_an_advertised_site_and_forgets_it_after_the_goodbye(
    sides: _Sides, browser: tuple[SiteBrowser, list[SiteChange]]
) -> None:
    site_browser, changes = browser
    site = _new_site()
    advertiser = SiteAdvertiser(sides.agent, site, ["127.0.0.1"])
    try:
        await advertiser.start()
        await _until(lambda: bool(_ours(site_browser.sites(), site.site_id)), "the site is found")
        assert _ours(site_browser.sites(), site.site_id) == [
            FoundSite(
                addresses=("127.0.0.1",),
                port=8443,
                scheme="https",
                fingerprint=FINGERPRINT_HEX,
                source="zeroconf",
                site_id=site.site_id,
                name="Shop 12 — Entrance",
                version="1.2.3",
            )
        ]
        await advertiser.stop()
        await _until(lambda: not _ours(site_browser.sites(), site.site_id), "the site is gone")
        ours = [c for c in changes if c.service_name == advertiser.service_name]
        assert [c.kind for c in ours] == [SiteChangeKind.ADDED, SiteChangeKind.REMOVED]
        assert ours[-1].site.site_id == site.site_id
    finally:
        await advertiser.stop()


async def test_a_changed_record_updates_the_site(
    sides: _Sides, browser: tuple[SiteBrowser, list[SiteChange]]
) -> None:
    site_browser, changes = browser
    site_id = str(uuid.uuid4())
    name = f"siteline-{site_id}.{SERVICE_TYPE}"
    txt = {"site_id": site_id, "name": "Depot", "version": "1.0", "port": "8080"}
    info = _service(name, 8080, {**txt, "scheme": "http", "path": "/api/v1"})
    await (await sides.agent.async_register_service(info))
    try:
        await _until(lambda: bool(_ours(site_browser.sites(), site_id)), "the site is found")
        [found] = _ours(site_browser.sites(), site_id)
        assert (found.scheme, found.fingerprint, found.port) == ("http", None, 8080)
        renamed = _service(name, 8080, {**txt, "name": "Depot (north)", "scheme": "http"})
        await (await sides.agent.async_update_service(renamed))
        await _until(
            lambda: [s.name for s in _ours(site_browser.sites(), site_id)] == ["Depot (north)"],
            "the new name is seen",
        )
        broken = _service(name, 8080, {**txt, "scheme": "gopher"})
        await (await sides.agent.async_update_service(broken))
        await _until(lambda: not _ours(site_browser.sites(), site_id), "the broken record")
        assert [c.kind for c in changes if c.service_name == name] == [
            SiteChangeKind.ADDED,
            SiteChangeKind.UPDATED,
            SiteChangeKind.REMOVED,
        ]
    finally:
        await (await sides.agent.async_unregister_service(info))


async def test_a_malformed_record_is_skipped_with_its_reason_logged(
    sides: _Sides,
    browser: tuple[SiteBrowser, list[SiteChange]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="central.site_browser")
    site_browser, _ = browser
    bad_id, site = str(uuid.uuid4()), _new_site()
    bad_name = f"siteline-{bad_id}.{SERVICE_TYPE}"
    bad = _service(
        bad_name,
        8443,
        {"site_id": bad_id, "name": "Broken", "scheme": "https", "path": "/api/v1"},
    )
    await (await sides.agent.async_register_service(bad))
    advertiser = SiteAdvertiser(sides.agent, site, ["127.0.0.1"])
    try:
        await advertiser.start()
        await _until(lambda: bool(_ours(site_browser.sites(), site.site_id)), "the good site")
        await _until(lambda: bad_name in caplog.text, "the bad record is reported")
        assert [s.site_id for s in _ours(site_browser.sites(), site.site_id, bad_id)] == [
            site.site_id
        ]
        reasons = [r.getMessage() for r in caplog.records if bad_name in r.getMessage()]
        assert reasons == [
            f"zeroconf: skipping {bad_name}: fingerprint: an https site must advertise its "
            "fingerprint"
        ]
    finally:
        await advertiser.stop()
        await (await sides.agent.async_unregister_service(bad))


async def test_browse_sites_returns_what_answered_in_the_time_given(sides: _Sides) -> None:
    # The central's zeroconf heard the announcement before browsing starts, so this also
    # covers services the browser reports from the cache while it is being made.
    site = _new_site()
    advertiser = SiteAdvertiser(sides.agent, site, ["127.0.0.1"])
    try:
        await advertiser.start()
        found = await browse_sites(sides.central, 3.0, SystemClock())
        assert [(s.fingerprint, s.addresses) for s in _ours(found, site.site_id)] == [
            (FINGERPRINT_HEX, ("127.0.0.1",))
        ]
    finally:
        await advertiser.stop()


def _service(name: str, port: int, txt: dict[str, str]) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE,
        name,
        addresses=[bytes([127, 0, 0, 1])],
        port=port,
        properties=txt,
        server="siteline-test-host.local.",
    )


GOOD_TXT: dict[bytes, bytes | None] = {
    b"site_id": b"site-0001",
    b"name": b"Shop",
    b"version": b"1.0",
    b"port": b"8443",
    b"scheme": b"https",
    b"path": b"/api/v1",
    b"fingerprint": FINGERPRINT.encode(),
}


def test_parse_accepts_keys_in_any_case_and_fingerprints_without_colons() -> None:
    txt = {k.upper(): v for k, v in GOOD_TXT.items()}
    txt[b"FINGERPRINT"] = FINGERPRINT_HEX.upper().encode()
    site = parse_advertisement(txt, 8443, ("192.0.2.7", "fe80::1%2"))
    assert (site.site_id, site.fingerprint, site.address) == (
        "site-0001",
        FINGERPRINT_HEX,
        "192.0.2.7",
    )


@pytest.mark.parametrize(
    ("change", "port", "reason"),
    [
        ({b"site_id": None}, 8443, "site_id None: expected 8 to 64 letters, digits or -"),
        ({b"site_id": b"x y"}, 8443, "site_id 'x y': expected 8 to 64 letters, digits or -"),
        ({b"scheme": b"ftp"}, 8443, "scheme 'ftp': expected https or http"),
        ({b"path": b"/api/v2"}, 8443, "path '/api/v2': the central speaks /api/v1"),
        (
            {b"port": b"8443"},
            9000,
            "port '8443' in the TXT record disagrees with the service's port 9000",
        ),
        ({b"fingerprint": b"AB:CD"}, 8443, "a SHA-256 fingerprint has 32 bytes"),
        (
            {b"scheme": b"http"},
            8443,
            "fingerprint: an http site has no certificate to pin",
        ),
        ({b"name": b"\xff\xfe"}, 8443, "TXT name: not UTF-8"),
    ],
)
def test_parse_names_what_is_wrong_with_a_record(
    change: dict[bytes, bytes | None], port: int, reason: str
) -> None:
    txt = {k: v for k, v in {**GOOD_TXT, **change}.items() if v is not None}  # None: left out
    with pytest.raises(MalformedAdvertisement) as caught:
        parse_advertisement(txt, port, ("192.0.2.7",))
    assert reason in str(caught.value)


def test_parse_refuses_a_service_without_addresses() -> None:
    with pytest.raises(MalformedAdvertisement, match="resolved to no address"):
        parse_advertisement(GOOD_TXT, 8443, ())
