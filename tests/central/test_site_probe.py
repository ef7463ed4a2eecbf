"""Probing a site before adding it: each wrong setting is named, a right one reads the
site's identity and the devices its account may see."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from central.site_probe import SiteAddress, SiteProbeError, probe_site
from shared.clock import SystemClock
from tests.agent_api.api_site import PASSWORDS
from tests.link_io.link_site import LinkSite, running_link_site


async def _probe(
    site: LinkSite,
    *,
    scheme: str = "https",
    host: str = "127.0.0.1",
    port: int | None = None,
    username: str = "clerk",
    password: str | None = None,
    fingerprint: str | None = "pinned",
) -> object:
    pin = site.identity.fingerprint if fingerprint == "pinned" else fingerprint
    async with aiohttp.ClientSession() as http:
        return await probe_site(
            http,
            SiteAddress(scheme, host, port or site.port),
            username=username,
            password=password or PASSWORDS[username],
            fingerprint=pin,
            clock=SystemClock(),
            software="test-central",
            read_timeout_s=5,
        )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens once the probe socket is closed


async def test_a_right_probe_reads_identity_and_the_granted_devices(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site:
        probed = await _probe(site)
    assert probed.remote_site_id == site.config.site.id  # type: ignore[attr-defined]
    assert probed.public_key == site.signer.public_key  # type: ignore[attr-defined]
    devices = probed.devices  # type: ignore[attr-defined]
    assert [(d.remote_device_id, d.kind) for d in devices] == [
        ("cam-a", "camera"),
        ("door", "input"),
    ]
    formats = {
        s.name: (s.media_kind.value, s.codec, s.width, s.height, s.frame_rate)
        for s in devices[0].streams
    }
    # The formats the site reports are kept, for the catalog to store at the site's add.
    assert formats["lq"] == ("video", "h264", 160, 90, 5.0)
    assert formats["hq"] == ("video", "h264", 320, 180, 10.0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"password": "not-the-password"}, "password"),
        ({"fingerprint": "AB" * 32}, "fingerprint"),
        ({"fingerprint": "zz"}, "fingerprint"),
        ({"scheme": "http"}, "scheme"),
        ({"port": "closed"}, "port"),
        ({"host": "no-such-site.invalid"}, "address"),
    ],
)
async def test_each_wrong_setting_is_named(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    if change.get("port") == "closed":
        change = {"port": _closed_port()}
    async with running_link_site(tmp_path) as site:
        with pytest.raises(SiteProbeError) as caught:
            await _probe(site, **change)  # type: ignore[arg-type]
    assert caught.value.field == field, caught.value.message


async def test_https_without_a_pin_shows_the_fingerprint_to_compare(tmp_path: Path) -> None:
    async with running_link_site(tmp_path) as site:
        with pytest.raises(SiteProbeError) as caught:
            await _probe(site, fingerprint=None)
    assert caught.value.field == "fingerprint"
    assert site.identity.fingerprint in caught.value.message
