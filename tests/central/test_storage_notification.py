"""The central's storage notifications, with a real site over the link on loopback: a site's
storage going low opens `storage_low` and its recovery clears it (by the site's event, by the
status poll, by the status read on a new link); a store that could not store a chunk opens
`storage_full`, which free disk space alone never clears, only a chunk stored after it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import load_agent_config
from agent.system_events import SystemEvent, SystemEventKind
from central.catalog.records import Notification
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.connector_state import ConnectorPolicy, ConnectorStatus
from central.site_connector import SiteConnector
from central.site_link_work import STORAGE_FULL, STORAGE_LOW, SiteLinkWork
from shared.backoff import BackoffPolicy
from shared.clock import SystemClock
from tests.agent.site_config import write_site_config
from tests.central.site_dialer_for_tests import add_dialled_site, catalog_dialer
from tests.link_io.link_site import LinkSite, running_site_of

POLICY = ConnectorPolicy(
    backoff=BackoffPolicy(initial_s=0.2, max_s=1.0), slow_retry_s=5, offline_notice_after_s=30
)
STATUS_INTERVAL_S = 0.2
WAIT_S = 20.0

# A camera that stores nothing (both streams relay only) and an input that toggles only when
# the test says: nothing reaches the site's store unless the test makes it.
QUIET_DEVICES = """
[[cameras]]
id = "cam-a"
source = "synthetic"
[cameras.synthetic]
hq = { width = 160, height = 90, fps = 5, bitrate_kbps = 80 }
lq = { width = 160, height = 90, fps = 5, bitrate_kbps = 60 }
audio = false
[cameras.recording]
hq = { mode = "relay_only" }
lq = { mode = "relay_only" }

[[inputs]]
id = "door"
name = "Back door"
period_s = 86400
"""


class _ClearNotingCatalog(SqliteCatalog):
    """A real catalog that counts the clears asked of it, by kind: each status read that
    finds room enough on the disk asks to clear `storage_low`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clears: dict[str, int] = {}

    def clear_notification(
        self, kind: str, site_id: str | None, device_id: str | None, at_ns: int
    ) -> bool:
        self.clears[kind] = self.clears.get(kind, 0) + 1
        return super().clear_notification(kind, site_id, device_id, at_ns)


@contextlib.asynccontextmanager
async def _quiet_site(
    directory: Path, *, quota: str = "64 MiB", port: int = 0
) -> AsyncIterator[LinkSite]:
    """A recording site in `directory` (the same site when started there again)."""
    existing = directory / "agent.toml"
    if existing.exists():
        text = existing.read_text()
        head, _, tail = text.partition('quota = "')
        existing.write_text(head + f'quota = "{quota}' + tail[tail.index('"') :])
        path = existing
    else:
        path = write_site_config(directory, QUIET_DEVICES, quota=quota)
    async with running_site_of(load_agent_config(path), port=port) as site:
        yield site


@contextlib.asynccontextmanager
async def _central_of(
    tmp_path: Path, site_port: int, fingerprint: str
) -> AsyncIterator[tuple[_ClearNotingCatalog, SiteConnector, str]]:
    """A site connector with the central's link work (its status read every
    `STATUS_INTERVAL_S`) for the site at `site_port`."""
    clock = SystemClock()
    catalog = await asyncio.to_thread(
        _ClearNotingCatalog.open,
        tmp_path / "central" / "catalog.sqlite",
        clock=clock,
        secret_box=SecretBox.load_or_create(tmp_path / "secret.key"),
    )
    assert isinstance(catalog, _ClearNotingCatalog)
    record = await add_dialled_site(catalog, site_port, fingerprint)
    async with aiohttp.ClientSession() as http:
        connector = SiteConnector(
            record,
            catalog=catalog,
            dialer=catalog_dialer(http, catalog, clock),
            work=SiteLinkWork(catalog, clock=clock, status_interval_s=STATUS_INTERVAL_S),
            clock=clock,
            policy=POLICY,
            rng=random.Random(1),
        )
        running = asyncio.create_task(connector.run())
        try:
            await _until(lambda: connector.view.status is ConnectorStatus.ONLINE)
            yield catalog, connector, record.site_id
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await asyncio.to_thread(catalog.close)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll: the catalog has no change signal to wait on."""
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _open(catalog: SqliteCatalog, kind: str) -> list[Notification]:
    return [n for n in catalog.notifications(open_only=True) if n.kind == kind]


async def _publish_until_open(
    site: LinkSite, catalog: SqliteCatalog, kind: SystemEventKind, detail: str
) -> Notification:
    """Publish `kind` at the site until the central opens its notification: an event sent
    before the central's subscription reaches the site is not seen."""
    async with asyncio.timeout(WAIT_S):
        while not _open(catalog, kind.value):
            site.site.events.publish(SystemEvent(kind, "site", site.clock.now_ns(), detail))
            await asyncio.sleep(0.2)
    [notification] = _open(catalog, kind.value)
    return notification


async def test_storage_low_opens_and_clears_by_event_and_by_the_status_poll(
    tmp_path: Path,
) -> None:
    async with (
        _quiet_site(tmp_path / "site") as site,
        _central_of(tmp_path, site.port, site.identity.fingerprint) as (catalog, _, site_id),
    ):
        # The site's disk holds its 64 MiB quota: nothing is open.
        assert _open(catalog, STORAGE_LOW) == []
        # Low by the site's event, cleared by its event.
        low = await _publish_until_open(
            site, catalog, SystemEventKind.STORAGE_LOW, "disk has 1 MiB free"
        )
        assert (low.kind, low.site_id, low.device_id) == (STORAGE_LOW, site_id, None)
        assert low.message == "site storage low: disk has 1 MiB free"
        site.site.events.publish(
            SystemEvent(SystemEventKind.STORAGE_OK, "site", site.clock.now_ns(), "room again")
        )
        await _until(lambda: _open(catalog, STORAGE_LOW) == [])
        # Low by the event again; no event says it is over, the status poll finds room.
        again = await _publish_until_open(
            site, catalog, SystemEventKind.STORAGE_LOW, "disk nearly full"
        )
        assert again.notification_id != low.notification_id
        await _until(lambda: _open(catalog, STORAGE_LOW) == [])
        cleared = [
            n
            for n in catalog.notifications(open_only=False)
            if n.notification_id == again.notification_id
        ]
        assert cleared[0].cleared_ns is not None


async def test_a_disk_that_cannot_hold_the_quota_is_low_until_the_site_fits_it(
    tmp_path: Path,
) -> None:
    # 1 TiB of quota on a test machine's disk: the site's status says the disk cannot hold
    # it (the store's map is reserved address space; its file grows only with its data).
    first_run = _quiet_site(tmp_path / "site", quota="1 TiB")
    site = await first_run.__aenter__()
    running = True
    try:
        async with _central_of(tmp_path, site.port, site.identity.fingerprint) as (
            catalog,
            connector,
            site_id,
        ):
            await _until(lambda: len(_open(catalog, STORAGE_LOW)) == 1)
            [low] = _open(catalog, STORAGE_LOW)
            assert low.site_id == site_id
            assert low.message.startswith("site storage low: ")
            # The same site, its quota brought down to what the disk holds, back at its
            # address: the status read on the new link clears the notification.
            port = site.port
            running = False
            await first_run.__aexit__(None, None, None)
            await _until(lambda: connector.view.status is not ConnectorStatus.ONLINE)
            assert len(_open(catalog, STORAGE_LOW)) == 1
            async with _quiet_site(tmp_path / "site", quota="64 MiB", port=port):
                await _until(lambda: connector.view.status is ConnectorStatus.ONLINE)
                await _until(lambda: _open(catalog, STORAGE_LOW) == [])
    finally:
        if running:
            await first_run.__aexit__(None, None, None)


async def test_a_full_store_stays_notified_until_the_site_stores_a_chunk_again(
    tmp_path: Path,
) -> None:
    async with (
        _quiet_site(tmp_path / "site") as site,
        _central_of(tmp_path, site.port, site.identity.fingerprint) as (catalog, _, site_id),
    ):
        full = await _publish_until_open(
            site, catalog, SystemEventKind.STORAGE_FULL, "hq: the disk is full"
        )
        assert (full.kind, full.site_id, full.device_id) == (STORAGE_FULL, site_id, None)
        assert full.message == "site storage full, recording stopped: hq: the disk is full"
        # Three status reads that found room enough on the disk (each asks to clear
        # storage_low) leave the full store notified: free space is no proof that the
        # store takes chunks.
        seen = catalog.clears.get(STORAGE_LOW, 0)
        await _until(lambda: catalog.clears.get(STORAGE_LOW, 0) >= seen + 3)
        assert [n.notification_id for n in _open(catalog, STORAGE_FULL)] == [full.notification_id]
        # The site stores a chunk again (the door's state, stored by its own recorder): the
        # next status shows a chunk newer than the report, and the notification clears.
        door = site.site.inputs[0]
        await door.set_state(True)
        await door.recorder.flush()
        await _until(lambda: _open(catalog, STORAGE_FULL) == [])
