"""The central's live-feed rules against a real site over the link on loopback, seen from the
site's side (its live subscriptions): ``on_demand`` pulls from the first viewer, keeps
pulling while one watches, and stops `linger_s` after the last leaves (a viewer back within
the linger keeps the pull); ``never`` refuses viewers and pulls nothing, unless the device is
recorded at the central, which still pulls the stream (as `central/live_feeds.py` says)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from central.catalog.records import SiteRecord
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.connector_state import ConnectorPolicy, ConnectorStatus
from central.ingest_writer import IngestWriter
from central.live_feeds import LIVE_STREAM, LiveFeeds, LiveRefused, LiveWatch
from central.site_connector import SiteConnector
from central.site_link_work import SiteLinkWork
from shared.backoff import BackoffPolicy
from shared.clock import NS_PER_S, SystemClock
from shared.store.chunk_store import ChunkStore
from tests.central.site_dialer_for_tests import add_dialled_site, catalog_dialer
from tests.link_io.link_site import LinkSite, running_link_site

POLICY = ConnectorPolicy(
    backoff=BackoffPolicy(initial_s=0.2, max_s=1.0), slow_retry_s=5, offline_notice_after_s=30
)
LINGER_S = 1.0
WAIT_S = 20.0
CAMERA = "cam-b"  # the site's own id


@dataclass
class _Central:
    catalog: SqliteCatalog
    store: ChunkStore
    live: LiveFeeds
    site_id: str
    device_id: str  # the central's id of CAMERA


@contextlib.asynccontextmanager
async def _central_with_live(tmp_path: Path, site: LinkSite) -> AsyncIterator[_Central]:
    """The central's parts that make live feeds (catalog, store, ingest, live feeds with a
    linger of `LINGER_S`, link work), connected to `site`, its devices listed."""
    clock = SystemClock()
    catalog = await asyncio.to_thread(
        SqliteCatalog.open,
        tmp_path / "central" / "catalog.sqlite",
        clock=clock,
        secret_box=SecretBox.load_or_create(tmp_path / "secret.key"),
    )
    store = await asyncio.to_thread(
        ChunkStore.open,
        tmp_path / "central" / "media",
        quota_bytes=256 * 1024 * 1024,
        hold_budget_bytes=0,
        clock=clock,
    )
    ingest = IngestWriter(store, None)
    live = LiveFeeds(catalog, store, ingest, clock=clock, linger_s=LINGER_S)
    record = await add_dialled_site(catalog, site.port, site.identity.fingerprint)
    async with aiohttp.ClientSession() as http:
        connector = SiteConnector(
            record,
            catalog=catalog,
            dialer=catalog_dialer(http, catalog, clock),
            work=_Works([SiteLinkWork(catalog, clock=clock), live]),
            clock=clock,
            policy=POLICY,
            rng=random.Random(1),
        )
        running = asyncio.create_task(connector.run())
        try:
            await _until(lambda: connector.view.status is ConnectorStatus.ONLINE)
            await _until(lambda: CAMERA in _remote_ids(catalog, record.site_id))
            device_id = _remote_ids(catalog, record.site_id)[CAMERA]
            yield _Central(catalog, store, live, record.site_id, device_id)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await live.stop()
            await ingest.close()
            await asyncio.to_thread(store.close)
            await asyncio.to_thread(catalog.close)


class _Works:
    """Several link works on one link, as the central's registry runs them."""

    def __init__(self, works: list[Any]) -> None:
        self._works = works

    async def serve(self, site: SiteRecord, link: Any) -> None:
        async with asyncio.TaskGroup() as group:
            for work in self._works:
                group.create_task(work.serve(site, link))


def _remote_ids(catalog: SqliteCatalog, site_id: str) -> dict[str, str]:
    return {d.remote_device_id: d.device_id for d in catalog.devices(site_id)}


async def _until(condition: Callable[[], bool]) -> None:
    """Poll: the site's live subscriptions have no change signal to wait on."""
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def _pulled(site: LinkSite) -> bool:
    """Whether the site has a live subscription to the camera's reference stream."""
    return site.site.live.viewers(CAMERA, LIVE_STREAM) > 0


async def _packets_spanning(watch: LiveWatch, span_ns: int) -> None:
    """Take the viewer's packets until their wall times span `span_ns` (the feed ran, with
    this viewer on it, that long)."""
    first: int | None = None
    async with asyncio.timeout(WAIT_S):
        while True:
            _, packets = await watch.viewer.next_batch()
            for packet in packets:
                first = packet.wall_ns if first is None else first
                if packet.wall_ns - first >= span_ns:
                    return


async def test_on_demand_pulls_while_watched_and_stops_after_the_linger(
    tmp_path: Path,
) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        _central_with_live(tmp_path, site) as central,
    ):
        live, device = central.live, central.device_id
        assert central.catalog.device(device).live_feed == "on_demand"
        # Online, nobody watching: nothing pulled.
        assert live.feed_state(device) is None
        assert not _pulled(site)
        async with live.watch(device) as first:
            await _until(lambda: _pulled(site))
            await _until(lambda: first.state.streaming)
            async with live.watch(device) as second:
                await _packets_spanning(second, NS_PER_S)
            # One viewer left, one still there: the pull goes on, for longer than a linger.
            await _packets_spanning(first, round(3 * LINGER_S * NS_PER_S))
            assert _pulled(site)
        # The last viewer left: still pulled for the linger (a viewer flicking back finds
        # the stream running), then stopped.
        assert _pulled(site)
        async with live.watch(device) as back:
            await _packets_spanning(back, round(2 * LINGER_S * NS_PER_S))
            assert _pulled(site)
        await _until(lambda: not _pulled(site))
        state = live.feed_state(device)
        assert state is not None
        # And a new viewer starts it again.
        async with live.watch(device) as again:
            await _until(lambda: _pulled(site))
            await _packets_spanning(again, 0)
        await _until(lambda: not _pulled(site))


async def test_never_refuses_viewers_but_recording_at_the_central_still_pulls(
    tmp_path: Path,
) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        _central_with_live(tmp_path, site) as central,
    ):
        live, device, catalog = central.live, central.device_id, central.catalog
        await asyncio.to_thread(catalog.update_device, device, live_feed="never")
        live.device_changed(device)
        with pytest.raises(LiveRefused) as refused:
            async with live.watch(device):
                pass
        assert refused.value.code == "live_off"
        assert not _pulled(site)
        # Recorded at the central (rule "always"): the stream is pulled for the recording,
        # with nobody watching, and still nobody may watch.
        await asyncio.to_thread(
            catalog.update_device,
            device,
            recording="central_only",
            central_rule={"mode": "always"},
        )
        live.device_changed(device)
        await _until(lambda: _pulled(site))
        remote_site = site.config.site.id

        def stored() -> int:
            metas = central.store.chunk_metas(CAMERA, LIVE_STREAM, 0, 1 << 62, site_id=remote_site)
            return len(metas)

        async with asyncio.timeout(WAIT_S):
            while await asyncio.to_thread(stored) < 2:  # noqa: ASYNC110 - another task stores
                await asyncio.sleep(0.2)
        with pytest.raises(LiveRefused):
            async with live.watch(device):
                pass
        # Back to site-only recording: with `never`, nothing wants the stream any more.
        await asyncio.to_thread(catalog.update_device, device, recording="site_only")
        live.device_changed(device)
        await _until(lambda: not _pulled(site))
