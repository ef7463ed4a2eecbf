"""`siteline demo`: a central and simulated sites with synthetic cameras, on loopback.

The sites are real `siteline agent run` processes (each with its own store, key and HTTPS
API); the central runs in this process, exactly as `siteline central run` would, and the
sites are added through its API the way an operator adds them (probe, pin, add). Then the
demo prints the URLs, the admin login and commands to try, prints a status line now and
then, and stops everything cleanly at Ctrl-C, SIGTERM or after `--duration` seconds. Run
again with the same `--data-dir`, it finds the same central, sites and recordings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from central.central_init import init_central
from central.central_node import CentralNode
from central.config import load_central_config
from central.demo_sites import DemoSite, demo_site, kept_password
from shared.clock import SystemClock

_log = logging.getLogger("siteline.demo")

SITE_START_TIMEOUT_S = 60.0
FIRST_STATUS_AFTER_S = 5.0
STATUS_INTERVAL_S = 15.0  # between status lines
STOP_TIMEOUT_S = 20.0


class DemoError(Exception):
    """The demo cannot start; the message says why."""


async def run_demo(
    data_dir: Path,
    *,
    port: int,
    duration_s: float | None,
    admin_password: str | None,
    site_count: int,
) -> int:
    clock = SystemClock()
    central_dir = data_dir / "central"
    password = kept_password(data_dir / "admin-password", admin_password)
    await asyncio.to_thread(_central_folder, central_dir, port, password)
    sites = [
        demo_site(data_dir / f"demo-site-{i + 1}", index=i, port=port + 1 + i)
        for i in range(site_count)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        processes = [await stack.enter_async_context(_agent_process(site)) for site in sites]
        config = load_central_config(central_dir / "central.toml")
        node = await asyncio.to_thread(CentralNode.open, config, clock=clock)
        stack.push_async_callback(node.stop)
        await node.start(port=port)
        assert node.identity is not None
        connector = aiohttp.TCPConnector(
            ssl=aiohttp.Fingerprint(bytes.fromhex(node.identity.fingerprint.replace(":", "")))
        )
        client = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        api = _Api(client, node.base_url)
        await api.login("admin", password)
        for site, process in zip(sites, processes, strict=True):
            await _add_site(api, site, process)
        await _wait_until_online(api, len(sites))
        _, devices = await api.call("GET", "/devices")
        cameras = [d["id"] for d in devices["devices"] if d["kind"] == "camera"]
        _print_welcome(node, password, sites, data_dir, cameras[0] if cameras else "DEVICE_ID")
        waiting = asyncio.create_task(stop.wait())
        try:
            async with asyncio.timeout(duration_s):
                interval_s = FIRST_STATUS_AFTER_S
                while not waiting.done():
                    await asyncio.wait({waiting}, timeout=interval_s)
                    interval_s = STATUS_INTERVAL_S
                    if not waiting.done():
                        await _print_status(api, node)
        except TimeoutError:
            print(f"demo: {duration_s:g} s are up", flush=True)
        finally:
            waiting.cancel()
        print("demo: stopping", flush=True)
    print("demo: stopped", flush=True)
    return 0


def _central_folder(directory: Path, port: int, password: str) -> None:
    config = directory / "central.toml"
    if config.exists():
        current = load_central_config(config)
        if current.api.port != port:
            raise DemoError(
                f"{config} serves port {current.api.port}; run with --port "
                f"{current.api.port} or another --data-dir"
            )
    # Writes the file the first time; afterwards keeps the central's identity and sets the
    # admin's password to the demo's.
    init_central(
        directory,
        clock=SystemClock(),
        admin_password=password,
        port=port,
        name="Siteline demo central",
        quota="2 GiB",
        overwrite=config.exists(),
    )


class _AgentProcess:
    def __init__(self, site: DemoSite, process: asyncio.subprocess.Process) -> None:
        self.site = site
        self.process = process


@contextlib.asynccontextmanager
async def _agent_process(site: DemoSite) -> AsyncIterator[_AgentProcess]:
    log = (site.directory / "agent.log").open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shared.command_line",
            "agent",
            "run",
            "--config",
            str(site.config_path),
            "--status-interval",
            "60",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            yield _AgentProcess(site, process)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
    finally:
        log.close()


class _Api:
    def __init__(self, client: aiohttp.ClientSession, base_url: str) -> None:
        self._client = client
        self._base = base_url + "/api/v1"
        self._token = ""

    async def login(self, username: str, password: str) -> None:
        status, body = await self.call(
            "POST", "/auth/login", json={"username": username, "password": password}
        )
        if status != 200:
            raise DemoError(f"cannot log in to the demo central: {body}")
        self._token = body["token"]

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        async with self._client.request(
            method, self._base + path, headers=headers, **kwargs
        ) as reply:
            return reply.status, await reply.json(content_type=None)


async def _add_site(api: _Api, site: DemoSite, process: _AgentProcess) -> None:
    """Add the site through the API unless the central has it already."""
    _, body = await api.call("GET", "/sites")
    for known in body["sites"]:
        if known["address"] == "127.0.0.1" and known["port"] == site.port:
            return
    fingerprint = await _site_fingerprint(site, process)
    status, body = await api.call(
        "POST",
        "/sites",
        json={
            "name": site.name,
            "address": "127.0.0.1",
            "port": site.port,
            "username": site.username,
            "password": site.password,
            "fingerprint": fingerprint,
        },
    )
    if status != 201:
        raise DemoError(f"adding {site.name!r} failed: {body['error']['message']}")
    site_id = body["id"]
    # Show central recording and merged playback: the cameras' reference streams are
    # recorded at the central too.
    _, devices = await api.call("GET", f"/devices?site={site_id}")
    for device in devices["devices"]:
        if device["kind"] == "camera":
            await api.call("PATCH", f"/devices/{device['id']}", json={"recording": "both"})


async def _wait_until_online(api: _Api, count: int) -> None:
    """Until every site's link is up (a site whose agent was slow to start may be waiting
    for its next attempt); gives up quietly after `SITE_START_TIMEOUT_S`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SITE_START_TIMEOUT_S):
            while True:
                _, body = await api.call("GET", "/sites")
                states = [s["status"]["state"] for s in body["sites"]]
                if states.count("online") >= count:
                    return
                await asyncio.sleep(0.5)


async def _site_fingerprint(site: DemoSite, process: _AgentProcess) -> str:
    """The site's certificate fingerprint, once its API answers (its first start makes it)."""
    from agent.config import load_agent_config  # noqa: PLC0415
    from agent.site_tls import site_identity  # noqa: PLC0415

    url = f"https://127.0.0.1:{site.port}/api/v1/site"
    async with asyncio.timeout(SITE_START_TIMEOUT_S):
        while True:
            if process.process.returncode is not None:
                raise DemoError(
                    f"the site {site.name!r} stopped (exit {process.process.returncode}); "
                    f"see {site.directory / 'agent.log'}"
                )
            config = load_agent_config(site.config_path)
            if config.api.tls_certificate.exists() and config.api.tls_key.exists():
                identity = site_identity(config, SystemClock())
                pin = aiohttp.Fingerprint(bytes.fromhex(identity.fingerprint.replace(":", "")))
                try:
                    async with aiohttp.ClientSession() as probe, probe.get(url, ssl=pin) as reply:
                        if reply.status == 401:
                            return identity.fingerprint
                except (aiohttp.ClientError, OSError):
                    pass
            await asyncio.sleep(0.3)


def _print_welcome(
    node: CentralNode, password: str, sites: list[DemoSite], data_dir: Path, camera: str
) -> None:
    assert node.identity is not None
    base = node.base_url
    fingerprint = node.identity.fingerprint
    print(
        f"""
Siteline demo is running: a central and {len(sites)} sites with synthetic cameras.

  central API   {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json)
  certificate   SHA-256 {fingerprint}
  admin login   user admin, password {password}
  sites         {", ".join(f"{s.name} (https://127.0.0.1:{s.port})" for s in sites)}
  data          {data_dir}

Try, in another terminal (from the repository):

  export PATH="$PWD/.venv/bin:$PATH" SITELINE_CENTRAL={base} \\
         SITELINE_USER=admin SITELINE_PASSWORD='{password}' \\
         SITELINE_CENTRAL_FINGERPRINT={fingerprint}
  siteline site list
  curl -sk -X POST {base}/api/v1/auth/login -d '{{"username":"admin","password":"{password}"}}'
  # after a minute or so: the last half minute of the first camera, recorded at the central
  siteline export --device {camera} --start $(date -u -d '-40 sec' +%FT%TZ) \\
         --end $(date -u -d '-10 sec' +%FT%TZ) --out clip.mp4 && siteline verify clip.mp4

Ctrl-C stops everything.
""",
        flush=True,
    )


async def _print_status(api: _Api, node: CentralNode) -> None:
    try:
        _, body = await api.call("GET", "/sites")
        online = sum(1 for s in body["sites"] if s["status"]["state"] == "online")
        _, devices = await api.call("GET", "/devices")
        usage = await asyncio.to_thread(node.store.usage)
        print(
            f"demo: {online}/{len(body['sites'])} sites online, "
            f"{len(devices['devices'])} devices, central store {usage.live_bytes // 1024} KiB",
            flush=True,
        )
    except (aiohttp.ClientError, KeyError, TypeError) as exc:
        print(f"demo: status unavailable ({exc})", flush=True)
