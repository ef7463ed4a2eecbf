"""Sites the central dials, through the API, against a real recording site on loopback:
adding one (and every wrong setting named, with nothing added), renaming it and its devices,
the devices' central settings, update hardware online and offline, and removal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from central.catalog.records import DEVICE_KINDS
from tests.agent_api.api_site import PASSWORDS
from tests.central.api.central_calls import (
    add_site,
    assert_refused,
    closed_port,
    site_devices,
    site_settings,
    wait_for_state,
)
from tests.central.api.silent_sites import silent_sites
from tests.central.central_fixture import running_central
from tests.link_io.link_site import running_link_site

HANG_GUARD_S = 10.0  # only against a hang; no answer's time is asserted


def _colon(fingerprint: str) -> str:
    return ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)).upper()


async def test_a_site_added_by_address_comes_online_with_its_devices(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        added = await add_site(central, site, name="Harbour shop")
        assert added["name"] == "Harbour shop"
        assert added["dial"] == "central"
        assert added["remote_site_id"] == site.config.site.id
        assert added["public_key"] == site.signer.public_key.hex()
        assert added["fingerprint"] == _colon(site.identity.fingerprint.replace(":", ""))
        assert added["device_count"] == len(site.config.device_ids())
        status = await wait_for_state(central, added["id"], "online")
        assert status["problem"] is None
        devices = await site_devices(central, added["id"])
        assert sorted(d["remote_device_id"] for d in devices) == sorted(site.config.device_ids())
        for device in devices:
            assert device["id"].startswith("d-"), device
            assert device["site_id"] == added["id"]
            assert device["name"] == device["original_name"]
            assert device["kind"] in DEVICE_KINDS
            assert device["online"] is True
        [cam_a] = [d for d in devices if d["remote_device_id"] == "cam-a"]
        lq = next(s for s in cam_a["streams"] if s["name"] == "lq")
        assert (lq["media"], lq["codec"], lq["width"], lq["height"], lq["frame_rate"]) == (
            "video",
            "h264",
            160,
            90,
            5.0,
        )
        kinds = {d["remote_device_id"]: d["kind"] for d in devices}
        assert (kinds["cam-a"], kinds["cam-a.mic"], kinds["door"]) == (
            "camera",
            "microphone",
            "input",
        )
        status_code, listed = await central.call("GET", "/sites")
        assert status_code == 200
        [shown] = listed["sites"]
        assert (shown["id"], shown["status"]["state"]) == (added["id"], "online")


async def test_each_wrong_setting_is_named_and_nothing_is_added(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        wrong: list[tuple[dict[str, object], str]] = [
            ({"password": "not-the-password"}, "password"),
            ({"username": "nobody-here"}, "password"),
            ({"fingerprint": "AB" * 32}, "fingerprint"),
            ({"fingerprint": "not hex"}, "fingerprint"),
            ({"port": closed_port()}, "port"),
            ({"scheme": "http", "fingerprint": None}, "scheme"),
            ({"address": "no-such-site.invalid"}, "address"),
        ]
        for changes, field in wrong:
            reply = await central.call("POST", "/sites", json=site_settings(site, **changes))
            assert_refused(reply, 422, "site_unusable", field)
            assert await central.call("GET", "/sites") == (200, {"sites": []})
        # HTTPS without a pin shows the certificate's fingerprint, to compare at the site.
        reply = await central.call("POST", "/sites", json=site_settings(site, fingerprint=None))
        message = assert_refused(reply, 422, "site_unusable", "fingerprint")
        assert _colon(site.identity.fingerprint.replace(":", "")) in message
        assert await central.call("GET", "/devices") == (200, {"devices": []})


async def test_the_same_site_is_refused_a_second_time(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        first = await add_site(central, site)
        for again in ({}, {"username": "clerk", "password": PASSWORDS["clerk"]}):
            reply = await central.call("POST", "/sites", json=site_settings(site, **again))
            message = assert_refused(reply, 422, "site_unusable", "site")
            assert first["id"] in message
        _, listed = await central.call("GET", "/sites")
        assert [s["id"] for s in listed["sites"]] == [first["id"]]


async def test_renaming_keeps_original_names_and_device_settings_round_trip(
    tmp_path: Path,
) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        added = await add_site(central, site)
        site_id = added["id"]
        await wait_for_state(central, site_id, "online")
        status, renamed = await central.call("PATCH", f"/sites/{site_id}", json={"name": "Quay"})
        assert (status, renamed["name"]) == (200, "Quay")
        assert (await central.call("GET", f"/sites/{site_id}"))[1]["name"] == "Quay"

        [camera] = [
            d for d in await site_devices(central, site_id) if d["remote_device_id"] == "cam-a"
        ]
        path = f"/devices/{camera['id']}"
        status, changed = await central.call("PATCH", path, json={"name": "  Front gate "})
        assert status == 200, changed
        assert (changed["name"], changed["original_name"]) == ("Front gate", "cam-a")

        rule = {"mode": "schedule", "pre_buffer_s": 5, "schedule": ["mon-fri 08:00-18:00"]}
        for body in (
            {"recording": "both"},
            {"recording": "central_only", "live_feed": "always"},
            {"live_feed": "never", "central_rule": rule},
            {"recording": "site_only", "live_feed": "on_demand", "central_rule": {}},
            {"central_rule": {"mode": "motion", "post_buffer_s": 30}},
        ):
            before = (await central.call("GET", path))[1]
            status, changed = await central.call("PATCH", path, json=body)
            assert status == 200, changed
            status, read = await central.call("GET", path)
            assert read == changed
            for member in ("recording", "live_feed"):
                assert read[member] == body.get(member, before[member])
            if "central_rule" in body:
                expected = {"mode": "always", "pre_buffer_s": 0.0, "post_buffer_s": 0.0}
                expected.update(body["central_rule"])  # type: ignore[arg-type]
                assert read["central_rule"] == expected
            assert (read["name"], read["original_name"]) == ("Front gate", "cam-a")

        # The central's names survive reading the site's device list again.
        status, diff = await central.call("POST", f"/sites/{site_id}/hardware")
        assert (status, diff) == (200, {"added": [], "removed": [], "returned": [], "changed": []})
        read = (await central.call("GET", path))[1]
        assert (read["name"], read["recording"]) == ("Front gate", "site_only")
        # Giving the original name back is how a rename is undone.
        status, changed = await central.call("PATCH", path, json={"name": "cam-a"})
        assert (status, changed["name"]) == (200, "cam-a")


async def test_update_hardware_reports_the_difference_online_and_refuses_offline(
    tmp_path: Path,
) -> None:
    async with running_central(tmp_path / "central") as central:
        async with running_link_site(tmp_path / "site") as site:
            added = await add_site(central, site)
            site_id = added["id"]
            await wait_for_state(central, site_id, "online")
            devices = await site_devices(central, site_id)
            # As if the last reading had listed nothing: every device is gone.
            await asyncio.to_thread(central.node.catalog.apply_hardware, site_id, [])
            _, present = await central.call("GET", "/devices", params={"present": "true"})
            assert present == {"devices": []}
            status, diff = await central.call("POST", f"/sites/{site_id}/hardware")
            assert status == 200, diff
            assert sorted(diff["returned"]) == sorted(d["id"] for d in devices)
            assert (diff["added"], diff["removed"]) == ([], [])
            status, diff = await central.call("POST", f"/sites/{site_id}/hardware")
            assert (status, diff) == (
                200,
                {"added": [], "removed": [], "returned": [], "changed": []},
            )
        # The site stopped: its devices cannot be read now.
        await wait_for_state(central, site_id, "offline")
        reply = await central.call("POST", f"/sites/{site_id}/hardware")
        message = assert_refused(reply, 409, "site_offline", None)
        assert site_id in message
        assert len(await site_devices(central, site_id)) == len(devices)


@pytest.mark.parametrize("online", [True, False])
async def test_removing_a_site_removes_it_and_its_devices(tmp_path: Path, online: bool) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        added = await add_site(central, site)
        site_id = added["id"]
        if online:
            await wait_for_state(central, site_id, "online")
        else:
            status, _ = await central.call("PATCH", f"/sites/{site_id}", json={"enabled": False})
            assert status == 200
            await wait_for_state(central, site_id, "disabled")
        assert await central.call("DELETE", f"/sites/{site_id}") == (204, None)
        assert_refused(await central.call("GET", f"/sites/{site_id}"), 404, "not_found", None)
        assert await central.call("GET", "/sites") == (200, {"sites": []})
        assert await central.call("GET", "/devices") == (200, {"devices": []})
        assert central.node.registry is not None
        assert central.node.registry.view(site_id) is None
        assert central.node.registry.link(site_id) is None
        assert_refused(await central.call("DELETE", f"/sites/{site_id}"), 404, "not_found", None)
        # It can be added again afterwards, as a new site.
        again = await add_site(central, site)
        assert again["id"] != site_id
        await wait_for_state(central, again["id"], "online")


async def test_a_site_that_never_answers_is_refused_and_holds_nothing_up(
    tmp_path: Path,
) -> None:
    links = "read_timeout_s = 3\noffline_notice_after_s = 30\nretry_max_s = 2"
    async with (
        running_link_site(tmp_path / "site") as site,
        silent_sites(1) as silent,
        running_central(tmp_path / "central", links_toml=links) as central,
    ):
        [address] = silent.addresses
        silent_settings = {"address": address, "port": silent.port, "scheme": "http"}
        async with asyncio.timeout(HANG_GUARD_S):
            reply = await central.call(
                "POST", "/sites", json=site_settings(site, **silent_settings, fingerprint=None)
            )
            message = assert_refused(reply, 422, "site_unusable", "address")
            assert "no answer" in message
            assert await central.call("GET", "/sites") == (200, {"sites": []})
            # A change to a silent address is refused too, and site changes go on after it.
            added = await add_site(central, site)
            await wait_for_state(central, added["id"], "online")
            reply = await central.call(
                "PATCH", f"/sites/{added['id']}", json={**silent_settings, "fingerprint": None}
            )
            assert_refused(reply, 422, "site_unusable", "address")
            status, kept = await central.call("GET", f"/sites/{added['id']}")
            assert (kept["address"], kept["port"]) == ("127.0.0.1", site.port)
            status, renamed = await central.call(
                "PATCH", f"/sites/{added['id']}", json={"name": "Still here"}
            )
            assert (status, renamed["name"]) == (200, "Still here")
            assert await central.call("DELETE", f"/sites/{added['id']}") == (204, None)
