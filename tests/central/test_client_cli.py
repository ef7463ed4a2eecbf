"""`siteline site ...` as an operator runs it: a real child process against a real central
on loopback HTTPS, managing a real recording site."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_agent_config
from central.client_cli import UsageError, central_base_url
from tests.agent.site_config import small_camera, write_site_config
from tests.agent_api.api_site import PASSWORDS
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central
from tests.central.cli_process import central_env, siteline
from tests.link_io.link_site import LinkSite, running_link_site

OTHER_FINGERPRINT = ":".join(["5A"] * 32)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def admin_env(central: RunningCentral, tmp_path: Path) -> dict[str, str]:
    return central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)


async def sites(central: RunningCentral) -> list[dict[str, Any]]:
    status, body = await central.call("GET", "/sites")
    assert status == 200, body
    listed: list[dict[str, Any]] = body["sites"]
    return listed


async def until_online(central: RunningCentral, site_id: str) -> None:
    for _ in range(300):
        status, body = await central.call("GET", f"/sites/{site_id}")
        assert status == 200, body
        if body["status"]["state"] == "online":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"site {site_id} never came online: {body['status']}")


def add_site_argv(site: LinkSite, *, password: str, fingerprint: str) -> list[str]:
    return [
        "site",
        "add",
        "--address",
        "127.0.0.1",
        "--port",
        str(site.port),
        "--user",
        "admin",
        "--password",
        password,
        "--fingerprint",
        fingerprint,
    ]


async def test_add_list_update_hardware_and_remove_a_site(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        env = admin_env(central, tmp_path)
        good_pin = site.identity.fingerprint

        wrong_password = await siteline(
            *add_site_argv(site, password="not-the-password", fingerprint=good_pin), env=env
        )
        assert wrong_password.code == 1, wrong_password
        assert "siteline: password: https://127.0.0.1:" in wrong_password.err, wrong_password
        assert "refused the username or password" in wrong_password.err
        assert "Traceback" not in wrong_password.err
        assert await sites(central) == []

        wrong_pin = await siteline(
            *add_site_argv(site, password=PASSWORDS["admin"], fingerprint=OTHER_FINGERPRINT),
            env=env,
        )
        assert wrong_pin.code == 1, wrong_pin
        assert "siteline: fingerprint: " in wrong_pin.err, wrong_pin
        assert await sites(central) == []

        added = await siteline(
            *add_site_argv(site, password=PASSWORDS["admin"], fingerprint=good_pin),
            "--name",
            "Corner shop",
            env=env,
        )
        assert added.code == 0, added
        [record] = await sites(central)
        assert record["name"] == "Corner shop"
        site_id = record["id"]
        status, body = await central.call("GET", f"/devices?site={site_id}")
        assert status == 200
        device_count = len(body["devices"])
        assert record["device_count"] == device_count > 1
        assert added.out.strip() == (
            f"added site {site_id} (Corner shop): {device_count} devices"
        ), added
        await until_online(central, site_id)

        table = await siteline("site", "list", env=env)
        assert table.code == 0, table
        header, row = table.out.strip().splitlines()
        assert header.split() == ["ID", "NAME", "STATUS", "ADDRESS", "DEVICES", "LAST", "SEEN"]
        assert row.startswith(f"{site_id}  Corner shop  online")
        assert f"https://127.0.0.1:{site.port}" in row
        assert f" {device_count} " in row

        as_json = await siteline("site", "list", "--json", env=env)
        assert as_json.code == 0, as_json
        [listed] = json.loads(as_json.out)
        assert (listed["id"], listed["name"], listed["device_count"]) == (
            site_id,
            "Corner shop",
            device_count,
        )

        renamed = await siteline("site", "update", site_id, "--name", "Main street", env=env)
        assert renamed.code == 0, renamed
        assert renamed.out.startswith(f"updated site {site_id} (Main street): online"), renamed
        assert [s["name"] for s in await sites(central)] == ["Main street"]

        nothing = await siteline("site", "update", site_id, env=env)
        assert nothing.code == 2, nothing
        assert "name something to change" in nothing.err

        hardware = await siteline("site", "hardware", site_id, env=env)
        assert hardware.code == 0, hardware
        assert hardware.out.splitlines() == [
            "added:    none",
            "removed:  none",
            "returned: none",
            "changed:  none",
        ]

        disabled = await siteline("site", "update", site_id, "--disable", env=env)
        assert disabled.code == 0, disabled
        listed_disabled = await siteline("site", "list", env=env)
        assert "(disabled)" in listed_disabled.out, listed_disabled
        enabled = await siteline("site", "update", site_id, "--enable", env=env)
        assert enabled.code == 0, enabled
        await until_online(central, site_id)

        removed = await siteline("site", "remove", site_id, env=env)
        assert removed.code == 0, removed
        assert removed.out.strip() == f"removed site {site_id}"
        assert await sites(central) == []
        status, _ = await central.call("GET", "/devices")
        assert status == 200

        again = await siteline("site", "remove", site_id, env=env)
        assert again.code == 1, again
        assert f"site {site_id!r} does not exist" in again.err


async def test_site_add_takes_the_centrals_login_from_its_own_flags(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        env = central_env(central.base_url, tmp_path / "config")  # no password in the env
        argv = add_site_argv(
            site, password=PASSWORDS["admin"], fingerprint=site.identity.fingerprint
        )
        missing = await siteline(*argv, env=env)
        assert missing.code == 2, missing
        assert "SITELINE_PASSWORD" in missing.err
        wrong = await siteline(*argv, "--central-password", "not-it", env=env)
        assert wrong.code == 1, wrong
        assert "wrong username or password" in wrong.err
        assert await sites(central) == []
        added = await siteline(
            *argv, "--central-user", "admin", "--central-password", ADMIN_PASSWORD, env=env
        )
        assert added.code == 0, added
        assert len(await sites(central)) == 1


async def test_enrol_prints_the_token_once_and_the_agents_link_table(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central") as central:
        env = admin_env(central, tmp_path)
        enrolled = await siteline(
            "site", "enrol", "--label", "shop behind NAT", "--expires-in-s", "3600", env=env
        )
        assert enrolled.code == 0, enrolled
        token_line = enrolled.out.splitlines()[1]
        token = token_line.strip()
        assert len(token) >= 32
        assert enrolled.out.count(token) == 2  # shown, and in the table
        table = enrolled.out[enrolled.out.index("[link]") :]
        link = tomllib.loads(table)["link"]
        assert link == {
            "central_url": f"{central.base_url}/api/v1/sites/link",
            "enrolment_token": token,
            "account": "admin",
            "central_fingerprint": central.fingerprint,
        }
        status, body = await central.call("GET", "/enrolments")
        assert status == 200
        assert [e["label"] for e in body["enrolments"]] == ["shop behind NAT"]

        # The lines are what the agent's configuration loader accepts.
        config_file = write_site_config(tmp_path / "agent", small_camera("cam"), extra_toml=table)
        config = await asyncio.to_thread(load_agent_config, config_file)
        assert config.link.central_url == link["central_url"]
        assert config.link.enrolment_token == token
        assert config.link.central_fingerprint == central.fingerprint


async def test_wrong_login_missing_settings_and_no_central(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central") as central:
        config_dir = tmp_path / "config"
        wrong = await siteline(
            "site", "list", env=central_env(central.base_url, config_dir, password="nope")
        )
        assert wrong.code == 1, wrong
        assert wrong.err.endswith("siteline: wrong username or password\n"), wrong
        assert "Traceback" not in wrong.err

        flags_win = await siteline(
            "site",
            "list",
            "--password",
            ADMIN_PASSWORD,
            env=central_env(central.base_url, config_dir, password="nope"),
        )
        assert flags_win.code == 0, flags_win

        no_central = await siteline("site", "list", env={"SITELINE_CONFIG_DIR": str(config_dir)})
        assert no_central.code == 2, no_central
        assert "--central URL or set SITELINE_CENTRAL" in no_central.err

        bad_url = await siteline(
            "site", "list", env=central_env("ftp://example", config_dir, password="x")
        )
        assert bad_url.code == 2, bad_url
        assert "expected https://HOST:PORT" in bad_url.err

        port = unused_port()
        gone = await siteline(
            "site",
            "list",
            env=central_env(f"https://127.0.0.1:{port}", config_dir, password=ADMIN_PASSWORD),
        )
        assert gone.code == 2, gone
        assert "cannot reach the central at https://127.0.0.1:" in gone.err
        assert "Traceback" not in gone.err


async def test_the_centrals_certificate_is_trusted_on_first_use_and_a_change_refused(
    tmp_path: Path,
) -> None:
    async with running_central(tmp_path / "central") as central:
        home = tmp_path / "home"
        env = {
            "HOME": str(home),
            "SITELINE_CENTRAL": central.base_url + "/api/v1/",
            "SITELINE_USER": "admin",
            "SITELINE_PASSWORD": ADMIN_PASSWORD,
        }
        known_file = home / ".config" / "siteline" / "known_centrals.json"

        first = await siteline("site", "list", env=env)
        assert first.code == 0, first
        assert "first contact with the central" in first.err
        assert central.fingerprint in first.err
        known = json.loads(known_file.read_text())["centrals"]
        assert list(known) == [central.base_url]
        assert known[central.base_url]["fingerprint"] == central.fingerprint
        assert known_file.stat().st_mode & 0o077 == 0

        second = await siteline("site", "list", env=env)
        assert second.code == 0, second
        assert second.err == ""

        # Another certificate than the one remembered (as after an interception).
        known[central.base_url]["fingerprint"] = OTHER_FINGERPRINT
        known_file.write_text(json.dumps({"centrals": known}))
        changed = await siteline("site", "list", env=env)
        assert changed.code == 2, changed
        assert "is NOT the one remembered" in changed.err
        assert f"remembered: SHA-256 {OTHER_FINGERPRINT}" in changed.err
        assert f"presented:  SHA-256 {central.fingerprint}" in changed.err
        assert changed.out == ""
        assert OTHER_FINGERPRINT in known_file.read_text()

        known_file.write_text("{not json")
        unreadable = await siteline("site", "list", env=env)
        assert unreadable.code == 2, unreadable
        assert f"{known_file}: not a file of known centrals" in unreadable.err
        known_file.write_text(json.dumps({"centrals": known}))

        wrong_pin = await siteline(
            "site", "list", "--central-fingerprint", OTHER_FINGERPRINT.lower(), env=env
        )
        assert wrong_pin.code == 2, wrong_pin
        assert f"not the pinned {OTHER_FINGERPRINT}" in wrong_pin.err

        # The operator confirms the new certificate: it replaces the remembered one.
        confirmed = await siteline(
            "site", "list", env={**env, "SITELINE_CENTRAL_FINGERPRINT": central.fingerprint}
        )
        assert confirmed.code == 0, confirmed
        known = json.loads(known_file.read_text())["centrals"]
        assert known[central.base_url]["fingerprint"] == central.fingerprint
        assert (await siteline("site", "list", env=env)).code == 0


async def test_every_command_explains_itself(tmp_path: Path) -> None:
    env = {"SITELINE_CONFIG_DIR": str(tmp_path / "config")}
    for argv, words in [
        (["site", "--help"], ["add", "list", "update", "remove", "hardware", "enrol"]),
        (["site", "add", "--help"], ["--central-user", "SITE's account", "--fingerprint"]),
        (["site", "list", "--help"], ["--json", "SITELINE_CENTRAL", "exit codes"]),
        (["site", "update", "--help"], ["--site-user", "--site-password", "--disable"]),
        (["site", "remove", "--help"], ["SITE_ID"]),
        (["site", "hardware", "--help"], ["SITE_ID"]),
        (["site", "enrol", "--help"], ["--label", "--expires-in-s"]),
        (
            ["export", "--help"],
            ["--device", "--start", "--container", "FILE.evidence", "FOLDER", "exits 1"],
        ),
    ]:
        shown = await siteline(*argv, env=env)
        assert shown.code == 0, shown
        for word in words:
            assert word in shown.out, (argv, word, shown.out)


def test_central_urls_are_reduced_to_scheme_host_and_port() -> None:
    assert central_base_url("https://central.example:8600/api/v1/") == (
        "https://central.example:8600"
    )
    assert central_base_url(" https://central.example ") == "https://central.example:443"
    assert central_base_url("http://[::1]:8600/") == "http://[::1]:8600"
    for wrong, problem in [
        ("central.example:8600", "expected https://HOST:PORT"),
        ("https://central.example:8600/sites", "without a path"),
        ("https://central.example:8600/?x=1", "without a path"),
        ("https://admin:pw@central.example:8600", "--user/--password"),
        ("https://", "expected https://HOST:PORT"),
    ]:
        with pytest.raises(UsageError, match=re.escape(problem)):
            central_base_url(wrong)
