"""`siteline central init` and `siteline central run` as real child processes: a working
folder, the first administrator, no accidental overwrite, `--force` keeping the identity,
errors that name what is wrong, a clean stop on SIGTERM; and `--help` of the commands the
client-command test does not cover."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
import tomllib
from pathlib import Path

import aiohttp

from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.config import load_central_config
from shared.clock import SystemClock
from shared.passwords import verify_password
from tests.central.cli_process import REPO, siteline

PASSWORD = "first-admin-pw"
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _admin_hash(config_path: Path) -> str:
    config = load_central_config(config_path)
    catalog = SqliteCatalog.open(
        config.storage.catalog_path,
        clock=SystemClock(),
        secret_box=SecretBox.load_or_create(config.storage.secret_key),
    )
    try:
        admin = catalog.user("admin")
    finally:
        catalog.close()
    assert admin is not None
    assert admin.role == "admin"
    assert not admin.disabled
    return admin.password_hash


async def test_init_writes_a_working_folder_and_never_overwrites_by_accident(
    tmp_path: Path,
) -> None:
    env = {"SITELINE_CONFIG_DIR": str(tmp_path / "config")}
    folder = tmp_path / "central"
    made = await siteline(
        "central", "init", "--dir", str(folder), "--admin-password", PASSWORD, "--port", "8611",
        env=env,
    )  # fmt: skip
    assert made.code == 0, made
    config_path = folder / "central.toml"
    assert f"wrote {config_path}" in made.out
    assert "password:" not in made.out  # the given password is not echoed
    assert f"siteline central run --config {config_path}" in made.out
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    written = tomllib.loads(config_path.read_text())
    assert written["api"]["port"] == 8611
    central_id = written["central"]["id"]
    first_hash = await asyncio.to_thread(_admin_hash, config_path)
    assert await asyncio.to_thread(verify_password, PASSWORD, first_hash)

    again = await siteline("central", "init", "--dir", str(folder), env=env)
    assert again.code == 2, again
    assert "exists already" in again.err
    assert "--force" in again.err
    assert tomllib.loads(config_path.read_text())["central"]["id"] == central_id
    assert await asyncio.to_thread(_admin_hash, config_path) == first_hash

    forced = await siteline("central", "init", "--dir", str(folder), "--force", env=env)
    assert forced.code == 0, forced
    shown = [line for line in forced.out.splitlines() if "password:" in line]
    assert len(shown) == 1, forced  # a generated password is shown, once
    new_password = shown[0].rsplit("password:", 1)[1].strip()
    assert tomllib.loads(config_path.read_text())["central"]["id"] == central_id
    new_hash = await asyncio.to_thread(_admin_hash, config_path)
    assert await asyncio.to_thread(verify_password, new_password, new_hash)
    assert not await asyncio.to_thread(verify_password, PASSWORD, new_hash)


async def test_init_names_what_is_wrong(tmp_path: Path) -> None:
    env = {"SITELINE_CONFIG_DIR": str(tmp_path / "config")}
    for argv, problem in [
        (["--port", "70000"], "port must be 1-65535"),
        (["--admin-password", "short"], "8 to 1024 characters"),
        (["--name", 'a "quoted" name'], "may not contain quotes"),
        (["--quota", "lots"], "quota"),
    ]:
        folder = tmp_path / f"central-{len(problem)}"
        refused = await siteline("central", "init", "--dir", str(folder), *argv, env=env)
        assert refused.code == 2, (argv, refused)
        assert problem in refused.err, (argv, refused)
        assert refused.err.startswith("siteline: "), refused  # a message, not a traceback
        assert "Traceback" not in refused.err


async def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {"SITELINE_CONFIG_DIR": str(tmp_path / "config")}
    folder = tmp_path / "central"
    port = _free_port()
    made = await siteline(
        "central", "init", "--dir", str(folder), "--admin-password", PASSWORD,
        "--port", str(port), "--scheme", "http",
        env=env,
    )  # fmt: skip
    assert made.code == 0, made
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_")}
    child_env["HOME"] = str(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.command_line", "central", "run",
        "--config", str(folder / "central.toml"),
        cwd=REPO, env=child_env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/api/v1/auth/login"
        reply: dict[str, object] = {}
        async with aiohttp.ClientSession() as http, asyncio.timeout(START_TIMEOUT_S):
            while not reply:
                assert process.returncode is None, "the central ended before serving"
                try:
                    async with http.post(
                        url, json={"username": "admin", "password": PASSWORD}
                    ) as response:
                        assert response.status == 200, await response.text()
                        reply = await response.json()
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.2)
        assert set(reply) >= {"token", "expires_at"}, reply
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(START_TIMEOUT_S):
            _out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_other_commands_explain_themselves(tmp_path: Path) -> None:
    env = {"SITELINE_CONFIG_DIR": str(tmp_path / "config")}
    for argv, words in [
        (["central", "--help"], ["init", "run"]),
        (["central", "init", "--help"], ["--dir", "--admin-password", "--port", "--force"]),
        (["central", "run", "--help"], ["--config", "SIGTERM"]),
        (["verify", "--help"], ["exit 0 only if authentic and complete", "--site-key"]),
        (["demo", "--help"], ["--duration", "--port", "--data-dir", "--admin-password"]),
        (["retrieve", "--help"], ["--device", "--start", "--end", "--wait", "--list", "--stop"]),
    ]:
        shown = await siteline(*argv, env=env)
        assert shown.code == 0, shown
        for word in words:
            assert word in shown.out, (argv, word, shown.out)
