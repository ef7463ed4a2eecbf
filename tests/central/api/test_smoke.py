"""The central answers: login, its identity, and an empty catalog."""

from __future__ import annotations

from pathlib import Path

from tests.central.central_fixture import running_central


async def test_a_fresh_central_has_no_sites_and_says_who_it_is(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        status, body = await central.call("GET", "/central")
        assert status == 200
        assert body["public_key"] == central.node.signer.public_key.hex()
        assert (await central.call("GET", "/sites")) == (200, {"sites": []})
        assert (await central.call("GET", "/devices")) == (200, {"devices": []})
        status, body = await central.call("GET", "/sites", token=None)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
