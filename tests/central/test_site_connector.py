"""A site connector against a real site on loopback: it goes online, reads the devices into
the catalog, follows the site's health, goes offline when the site stops, refuses a site
that is not the one that was added, dials with new settings once told they changed, and
makes its catalog writes off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent.system_events import SystemEvent, SystemEventKind
from central.catalog.records import NewSite, Notification, SiteRecord
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.connector_state import ConnectorPolicy, ConnectorStatus
from central.site_connector import SITE_OFFLINE, SiteConnector
from central.site_link_work import CAMERA_LOST, SiteLinkWork
from shared.backoff import BackoffPolicy
from shared.clock import SystemClock
from shared.link_io.dialing import connect_to_site
from tests.agent_api.api_site import PASSWORDS
from tests.central.api.agent_sites import free_port
from tests.central.site_dialer_for_tests import add_dialled_site, catalog_dialer
from tests.link_io.link_site import LinkSite, running_link_site

POLICY = ConnectorPolicy(
    backoff=BackoffPolicy(initial_s=0.2, max_s=1.0), slow_retry_s=5, offline_notice_after_s=0.5
)
WAIT_S = 20.0


class _WriterNotingCatalog(SqliteCatalog):
    """A real catalog that notes which thread made each write the connector makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writers: list[tuple[str, threading.Thread]] = []

    def update_site(self, site_id: str, /, **changes: object) -> SiteRecord:
        self._note("update_site")
        return super().update_site(site_id, **changes)

    def mark_seen(self, site_id: str, at_ns: int) -> None:
        self._note("mark_seen")
        super().mark_seen(site_id, at_ns)

    def raise_notification(
        self, kind: str, site_id: str | None, device_id: str | None, message: str, at_ns: int
    ) -> Notification:
        self._note("raise_notification")
        return super().raise_notification(kind, site_id, device_id, message, at_ns)

    def _note(self, call: str) -> None:
        self.writers.append((call, threading.current_thread()))


@contextlib.asynccontextmanager
async def _connected(
    tmp_path: Path,
    site: LinkSite,
    *,
    remote_site_id: str | None = None,
    port: int | None = None,
    catalog_type: type[SqliteCatalog] = SqliteCatalog,
) -> AsyncIterator[tuple[SqliteCatalog, SiteConnector, str]]:
    """A connector for `site` (at `port` instead of the site's own, if given)."""
    clock = SystemClock()
    catalog = catalog_type.open(
        tmp_path / "central" / "catalog.sqlite",
        clock=clock,
        secret_box=SecretBox.load_or_create(tmp_path / "secret.key"),
    )
    record = await add_dialled_site(
        catalog,
        site.port if port is None else port,
        site.identity.fingerprint,
        username="clerk",
        remote_site_id=remote_site_id,
    )
    async with aiohttp.ClientSession() as http:
        connector = SiteConnector(
            record,
            catalog=catalog,
            dialer=catalog_dialer(http, catalog, SystemClock()),
            work=SiteLinkWork(catalog, clock=clock, status_interval_s=60),
            clock=clock,
            policy=POLICY,
            rng=random.Random(1),
        )
        running = asyncio.create_task(connector.run())
        try:
            yield catalog, connector, record.site_id
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            catalog.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Poll: the catalog and the connector's view have no change signal to wait on."""
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _open(catalog: SqliteCatalog, kind: str) -> list[str | None]:
    return [n.device_id for n in catalog.notifications(open_only=True) if n.kind == kind]


async def test_online_it_reads_the_devices_and_follows_the_site_health(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        _connected(tmp_path, site) as (catalog, connector, site_id),
    ):
        await _until(lambda: connector.view.status is ConnectorStatus.ONLINE)
        record = catalog.site(site_id)
        assert record.remote_site_id == site.config.site.id
        assert record.public_key == site.signer.public_key
        await _until(lambda: len(catalog.devices(site_id)) == 2)
        devices = {d.remote_device_id: d for d in catalog.devices(site_id)}
        assert set(devices) == {"cam-a", "door"}  # what the clerk account may see
        assert devices["cam-a"].original_name == devices["cam-a"].name
        cam_a = devices["cam-a"].device_id
        # Events sent before the connector's subscription reaches the site are not seen
        # (the status read on each new link covers those), so send until one is.
        async with asyncio.timeout(WAIT_S):
            while _open(catalog, CAMERA_LOST) != [cam_a]:
                lost = SystemEvent(SystemEventKind.CAMERA_LOST, "cam-a", site.clock.now_ns())
                site.site.events.publish(lost)
                await asyncio.sleep(0.2)
        now = site.clock.now_ns()
        site.site.events.publish(SystemEvent(SystemEventKind.CAMERA_RESTORED, "cam-a", now))
        await _until(lambda: _open(catalog, CAMERA_LOST) == [])


async def test_a_site_that_went_away_is_offline_and_notified(tmp_path: Path) -> None:
    async with _connected_until_site_stops(tmp_path) as (catalog, connector, site_id):
        await _until(lambda: connector.view.status is ConnectorStatus.OFFLINE)
        await _until(
            lambda: any(
                n.kind == SITE_OFFLINE and n.site_id == site_id
                for n in catalog.notifications(open_only=True)
            )
        )
        assert connector.view.problem is not None


@contextlib.asynccontextmanager
async def _connected_until_site_stops(
    tmp_path: Path, catalog_type: type[SqliteCatalog] = SqliteCatalog
) -> AsyncIterator[tuple[SqliteCatalog, SiteConnector, str]]:
    site_cm = running_link_site(tmp_path / "site")
    site = await site_cm.__aenter__()
    stopped = False
    try:
        async with _connected(tmp_path, site, catalog_type=catalog_type) as (
            catalog,
            connector,
            site_id,
        ):
            await _until(lambda: connector.view.status is ConnectorStatus.ONLINE)
            await site_cm.__aexit__(None, None, None)
            stopped = True
            yield catalog, connector, site_id
    finally:
        if not stopped:
            await site_cm.__aexit__(None, None, None)


async def test_the_catalog_writes_are_made_off_the_event_loop(tmp_path: Path) -> None:
    async with _connected_until_site_stops(tmp_path, _WriterNotingCatalog) as (catalog, _c, _s):
        assert isinstance(catalog, _WriterNotingCatalog)
        await _until(lambda: any(c == "raise_notification" for c, _ in catalog.writers))
        calls = {call for call, _ in catalog.writers}
        assert {"update_site", "mark_seen", "raise_notification"} <= calls
        loop_thread = threading.current_thread()
        assert [c for c, thread in catalog.writers if thread is loop_thread] == []


async def test_new_settings_are_used_once_the_connector_is_told(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        _connected(tmp_path, site, port=free_port()) as (catalog, connector, site_id),
    ):
        # Nothing listens at the first port: it retries, with backoff, and stays offline.
        await _until(lambda: connector.view.failures >= 2)
        assert connector.view.status in (ConnectorStatus.OFFLINE, ConnectorStatus.CONNECTING)
        await asyncio.to_thread(catalog.update_site, site_id, port=site.port)
        connector.settings_changed()
        await _until(lambda: connector.view.status is ConnectorStatus.ONLINE)


async def test_a_different_site_at_the_address_is_untrusted(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        _connected(tmp_path, site, remote_site_id="someone-else-entirely") as (_, connector, _s),
    ):
        await _until(lambda: connector.view.status is ConnectorStatus.UNAUTHORISED)
        assert "someone-else-entirely" in (connector.view.problem or "")


async def test_a_site_that_dials_in_again_over_a_dead_link_is_not_left_online(
    tmp_path: Path,
) -> None:
    clock = SystemClock()
    async with running_link_site(tmp_path / "site") as site:
        catalog = SqliteCatalog.open(
            tmp_path / "central" / "catalog.sqlite",
            clock=clock,
            secret_box=SecretBox.load_or_create(tmp_path / "secret.key"),
        )
        record, _ = catalog.add_site(NewSite(name="Bus", dial="site"), None)
        async with aiohttp.ClientSession() as http:
            connector = SiteConnector(
                record,
                catalog=catalog,
                dialer=catalog_dialer(http, catalog, SystemClock()),
                work=SiteLinkWork(catalog, clock=clock, status_interval_s=60),
                clock=clock,
                policy=POLICY,
                rng=random.Random(1),
            )
            running = asyncio.create_task(connector.run())
            try:
                base = f"https://127.0.0.1:{site.port}"
                first = connect_to_site(
                    http, base, username="clerk", password=PASSWORDS["clerk"],
                    fingerprint=site.identity.fingerprint, clock=clock, software="t",
                    read_timeout_s=5,
                )  # fmt: skip
                second = connect_to_site(
                    http, base, username="clerk", password=PASSWORDS["clerk"],
                    fingerprint=site.identity.fingerprint, clock=clock, software="t",
                    read_timeout_s=5,
                )  # fmt: skip
                async with first as link_one:
                    connector.attach(link_one)
                    await _until(lambda: connector.view.status is ConnectorStatus.ONLINE)
                    async with second as link_two:
                        link_two.close("gone before it is used")
                        await link_two.wait_closed()
                        connector.attach(link_two)  # the same site, again, over a dead link
                        await _until(lambda: connector.view.status is not ConnectorStatus.ONLINE)
            finally:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                catalog.close()
