"""`siteline agent run`: open everything, record until SIGTERM/SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import sys
from pathlib import Path

from zeroconf.asyncio import AsyncZeroconf

from agent.accounts import Accounts
from agent.config import (
    AgentConfig,
    CameraConfig,
    ConfigError,
    SyntheticSettings,
    load_agent_config,
)
from agent.discovery import (
    AdvertisedSite,
    SiteAdvertiser,
    advertised_addresses,
    zeroconf_interfaces,
)
from agent.link_endpoint import CentralUplink, link_route
from agent.package_version import package_version
from agent.site_runtime import AgentSite
from agent.site_service import SiteService
from agent.site_tls import site_identity
from agent.source_factory import build_source
from agent.sources.base import CameraSource, SourceConfigError
from agent.store_writer import StoreWriter
from agent.stream_routes import stream_routes
from agent.web_api import API_PREFIX, build_web_app
from shared.api_server import ApiServer, ApiServerError
from shared.clock import NS_PER_S, Clock, SystemClock
from shared.signing import SigningKeyError, SiteSigner
from shared.sizes import format_size
from shared.store.chunk_store import ChunkStore
from shared.store.errors import StoreError
from shared.store.retention import RetentionPolicy
from shared.tls_identity import TlsIdentity, TlsIdentityError

_log = logging.getLogger("siteline.agent")


def retention_policy(config: AgentConfig) -> RetentionPolicy:
    """The store's retention from the configuration's quota and per-stream ages."""
    site = config.site.id
    ages: dict[tuple[str, str, str], int] = {}
    for camera in config.cameras:
        recording = camera.recording
        ages[(site, camera.id, "hq")] = recording.hq.max_age_s * NS_PER_S
        ages[(site, camera.id, "lq")] = recording.lq.max_age_s * NS_PER_S
        ages[(site, camera.microphone_id, "audio")] = recording.audio.max_age_s * NS_PER_S
    for device in config.inputs:
        ages[(site, device.id, "state")] = device.max_age_s * NS_PER_S
    return RetentionPolicy(
        max_bytes=config.storage.quota_bytes,
        default_max_age_ns=config.storage.max_age_s * NS_PER_S,
        max_age_ns=ages,
    )


def run_agent(config_path: Path, *, status_interval_s: float, log_level: str) -> int:
    """Run the agent of `config_path`; the process exit code."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_agent_config(config_path)
    except ConfigError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_record(config, SystemClock(), status_interval_s))
    except (
        StoreError,
        SigningKeyError,
        SourceConfigError,
        TlsIdentityError,
        ApiServerError,
    ) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2


async def _record(config: AgentConfig, clock: Clock, status_interval_s: float) -> int:
    signer = SiteSigner.load_or_create(config.storage.key_path)
    identity = None
    if config.api.scheme == "https":
        identity = await asyncio.to_thread(site_identity, config, clock)
    sources: dict[str, CameraSource] = {
        camera.id: build_source(camera, clock=clock) for camera in config.cameras
    }
    store = ChunkStore.open(
        config.storage.path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=config.storage.hold_budget_bytes,
        clock=clock,
        retention=retention_policy(config),
        home_site_id=config.site.id,
    )
    writer = StoreWriter(store)
    service: SiteService | None = None
    try:
        site = AgentSite(
            config,
            writer=writer,
            signer=signer,
            clock=clock,
            source_factory=lambda camera: sources[camera.id],
        )
        service = SiteService(
            config,
            store,
            public_key=signer.public_key,
            fingerprint=None if identity is None else identity.fingerprint,
            clock=clock,
            cameras_up=lambda: {c.camera.id: c.supervisor.connected for c in site.cameras},
            version=package_version(),
            stream_codecs=site.stream_codecs,
        )
        software = f"siteline-agent {package_version()}"
        link = link_route(
            events=site.events,
            live=site.live,
            clock=clock,
            software=software,
            read_timeout_s=config.link.read_timeout_s,
        )
        streams = stream_routes(events=site.events, live=site.live, clock=clock)
        server = ApiServer(
            build_web_app(
                service, Accounts(config.users, clock=clock), extra_routes=[link, *streams]
            ),
            host=config.api.bind,
            port=config.api.port,
            ssl_context=None if identity is None else identity.server_ssl_context(),
        )
        await server.start()
        advertisement: _Advertisement | None = None
        try:
            advertisement = await _advertise(config, service)
            _print_banner(config, signer, identity, advertised=advertisement is not None)
            uplink = _uplink(config, service, site, clock, software)
            failed = await _record_until_stopped(site, store, status_interval_s, uplink)
        finally:
            if advertisement is not None:
                await advertisement.close()
            await server.stop()
    finally:
        if service is not None:
            await service.wait_idle()
        await asyncio.to_thread(writer.close)
        store.close()
    if failed is not None:
        _log.error("recording stopped by an error", exc_info=failed)
        return 1
    print("siteline: stopped cleanly", flush=True)
    return 0


def _uplink(
    config: AgentConfig, service: SiteService, site: AgentSite, clock: Clock, software: str
) -> CentralUplink | None:
    link = config.link
    if link.central_url is None:
        return None
    [account] = [u for u in config.users if u.username == link.account]
    print(f"  uplink:      dialling {link.central_url} as account {account.username!r}")
    return CentralUplink(
        link,
        account,
        service,
        events=site.events,
        live=site.live,
        clock=clock,
        software=software,
        rng=random.Random(),  # noqa: S311 - backoff jitter, not security
    )


async def _record_until_stopped(
    site: AgentSite,
    store: ChunkStore,
    status_interval_s: float,
    uplink: CentralUplink | None,
) -> BaseException | None:
    """Record until SIGTERM or SIGINT (or an error); the error that stopped it, if any."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    recording = asyncio.create_task(site.run(), name="site")
    status = asyncio.create_task(_status_lines(site, store, status_interval_s))
    stopping = asyncio.create_task(stop.wait())
    linking = None if uplink is None else asyncio.create_task(uplink.run(), name="uplink")
    await asyncio.wait({recording, stopping}, return_when=asyncio.FIRST_COMPLETED)
    print("siteline: stopping; storing the chunks being recorded", flush=True)
    if linking is not None:
        linking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await linking
    for task in (status, stopping, recording):
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await status
    failed: BaseException | None = None
    try:
        await recording
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        failed = exc
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)
    return failed


class _Advertisement:
    """The zeroconf instance and the advertiser; announcing runs in the background."""

    def __init__(self, zeroconf: AsyncZeroconf, advertiser: SiteAdvertiser) -> None:
        self._zeroconf = zeroconf
        self._advertiser = advertiser
        self._starting = asyncio.create_task(self._start(), name="zeroconf-announce")

    async def _start(self) -> None:
        try:
            await self._advertiser.start()
        except Exception:
            _log.warning(
                "the zeroconf announcement failed; the site is not advertised", exc_info=True
            )

    async def close(self) -> None:
        self._starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._starting
        try:
            await self._advertiser.stop()
        finally:
            await self._zeroconf.async_close()


async def _advertise(config: AgentConfig, service: SiteService) -> _Advertisement | None:
    """Start advertising the site with zeroconf unless configured off; a network that does not
    allow it is logged and the site runs unadvertised (discovery is a convenience)."""
    if not config.api.advertise:
        return None
    info = service.site_info()
    site = AdvertisedSite(
        site_id=info.site_id,
        name=info.name,
        version=info.version,
        port=config.api.port,
        scheme=config.api.scheme,
        fingerprint=info.fingerprint,
    )
    try:
        zeroconf = AsyncZeroconf(interfaces=zeroconf_interfaces(config.api.bind))
    except OSError as exc:
        _log.warning("zeroconf cannot start (%s); the site is not advertised", exc)
        return None
    addresses = await asyncio.to_thread(advertised_addresses, config.api.bind)
    return _Advertisement(zeroconf, SiteAdvertiser(zeroconf, site, addresses))


def _describe_camera(camera: CameraConfig) -> str:
    settings = camera.settings
    if isinstance(settings, SyntheticSettings):
        hq, lq = settings.hq, settings.lq
        return (
            f"synthetic, hq {hq.width}x{hq.height}@{hq.fps} {hq.bitrate_bps // 1000} kbit/s, "
            f"lq {lq.width}x{lq.height}@{lq.fps} {lq.bitrate_bps // 1000} kbit/s"
        )
    return camera.source


def _print_banner(
    config: AgentConfig, signer: SiteSigner, identity: TlsIdentity | None, *, advertised: bool
) -> None:
    storage = config.storage
    lines = [
        f"Siteline agent: site {config.site.name!r} ({config.site.id})",
        f"  recordings:  {storage.path} (LMDB, quota {format_size(storage.quota_bytes)})",
        f"  signing key: {storage.key_path} (public key {signer.public_key.hex()})",
    ]
    for camera in config.cameras:
        hq, lq = camera.recording.hq.mode, camera.recording.lq.mode
        lines.append(
            f"  camera {camera.id} {camera.name!r}: {_describe_camera(camera)}; "
            f"records hq {hq}, lq {lq}"
        )
    api = config.api
    host = socket.gethostname() if _is_wildcard(api.bind) else api.bind
    lines.append(f"  site API:    {api.scheme}://{host}:{api.port}{API_PREFIX}")
    if identity is not None:
        lines.append(
            f"  certificate: {identity.cert_path} (self-signed), SHA-256 {identity.fingerprint}"
        )
    else:
        lines.append('  certificate: none; the API is plain HTTP ([api] scheme = "http")')
    lines.append(
        "  zeroconf:    advertised as _siteline._tcp"
        if advertised
        else "  zeroconf:    not advertised ([api] advertise = false, or zeroconf failed)"
    )
    lines += [
        f"  inspect:     siteline agent status --config {config.file}",
        f"  verify:      siteline agent check --config {config.file}",
        "Stop with Ctrl-C (or SIGTERM): the chunks being recorded are stored first.",
    ]
    print("\n".join(lines), flush=True)


def _is_wildcard(bind: str) -> bool:
    return bind in ("0.0.0.0", "::", "")  # noqa: S104 - comparing, not binding


async def _status_lines(site: AgentSite, store: ChunkStore, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        usage = await asyncio.to_thread(store.usage)
        up = sum(1 for camera in site.cameras if camera.supervisor.connected)
        failed = sum(r.counters.chunks_failed for r in site.stream_recorders())
        parts = []
        for camera in site.cameras:
            counts = ", ".join(
                f"{stream} {r.counters.chunks_stored}" for stream, r in camera.recorders.items()
            )
            parts.append(f"{camera.camera.id} [{counts}]")
        print(
            f"status: cameras up {up}/{len(site.cameras)}; chunks stored {'; '.join(parts)}; "
            f"store {format_size(usage.live_bytes)} of {format_size(usage.quota_bytes)}"
            + (f"; {failed} chunks failed" if failed else ""),
            flush=True,
        )
