"""Finding sites through the API: an address scan finds a real agent on loopback, with its
fingerprint, reports progress to the end, and bad ranges are named."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.central.central_fixture import running_central
from tests.link_io.link_site import running_link_site


async def test_a_scan_finds_the_agent_and_reports_progress(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        status, job = await central.call(
            "POST", "/discovery/scans", json={"range": "127.0.0.1-127.0.0.2", "ports": [site.port]}
        )
        assert status == 202, job
        assert job["total"] == 2
        async with asyncio.timeout(30):
            while job["state"] == "running":
                await asyncio.sleep(0.1)
                status, job = await central.call("GET", f"/discovery/scans/{job['id']}")
                assert status == 200
        assert job["state"] == "finished", job
        assert job["done"] == job["total"] == 2
        [found] = [f for f in job["found"] if "127.0.0.1" in f["addresses"]]
        assert found["port"] == site.port
        assert found["fingerprint"].replace(":", "").lower() == (
            site.identity.fingerprint.replace(":", "").lower()
        )
        assert found["known_site_id"] is None


async def test_bad_scans_are_refused_naming_the_input(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central") as central:
        for body, field in [
            ({"range": "10.0.0.0/8"}, "range"),
            ({"range": "10.0.0.300"}, "range"),
            ({"range": "127.0.0.1", "ports": [0]}, "ports"),
            ({"range": "127.0.0.1", "ports": "8443"}, "ports"),
            ({}, "range"),
        ]:
            status, reply = await central.call("POST", "/discovery/scans", json=body)
            assert status == 400, (body, reply)
            assert reply["error"]["field"] == field, reply
        status, _ = await central.call("GET", "/discovery/scans/99")
        assert status == 404
