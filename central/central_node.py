"""A running central: everything `siteline central run` opens, wired together, and stopped
in the reverse order.

`CentralNode.open(config, clock=...)` opens the keys, the catalog, the media store and the
HTTP client; `start()` starts the connectors and serves the API; `stop()` stops serving,
closes every site link and closes the stores. Tests and the demo use the same object, so
what they run is what an operator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass

import aiohttp

from central.api.account_routes import account_routes
from central.api.device_routes import device_routes
from central.api.discovery_routes import discovery_routes
from central.api.enrolment_routes import enrolment_routes
from central.api.export_routes import export_routes
from central.api.live_routes import live_routes
from central.api.notification_routes import notification_routes
from central.api.playback_routes import playback_routes
from central.api.retrieval_routes import retrieval_routes
from central.api.retrieval_rule_routes import retrieval_rule_routes
from central.api.services import CentralInfo, CentralServices
from central.api.site_routes import site_routes
from central.api.web_app import build_central_app
from central.auth import AccessPolicy, CentralAccounts
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.config import CentralConfig
from central.connector_state import LINK_STABLE_AFTER_S, ConnectorPolicy
from central.device_timeline import DeviceTimelines
from central.export_service import ExportService
from central.ingest_writer import IngestWriter
from central.live_feeds import LiveFeeds
from central.receipt_book import ReceiptBook
from central.retrieval.away_risk import AwayRisk
from central.retrieval.event_rules import EventRetrieval
from central.retrieval.hold_renewal import HOLD_LIFETIME_S
from central.retrieval.missed_chunks import MissedChunkRetrieval
from central.retrieval.reconnect_retrieval import ReconnectRetrieval
from central.retrieval.retention_trends import RetentionTrends
from central.retrieval.retrieval_service import RetrievalService
from central.retrieval.retrieval_space import RetrievalSpace
from central.retrieval.retrieval_work import STORE_FULL_RETRY_S, RetrievalWork
from central.retrieval.schedule_rules import ScheduleRetrieval
from central.site_dialer import SiteDialer
from central.site_discovery import SiteDiscovery
from central.site_link_work import SiteLinkWork
from central.site_management import SiteManagement
from central.site_registry import SiteRegistry
from central.unreported_hardware import UnreportedHardware
from shared.api_server import ApiServer
from shared.backoff import BackoffPolicy
from shared.clock import NS_PER_S, Clock
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore
from shared.store.retention import RetentionPolicy
from shared.tls_identity import TlsIdentity, server_identity

_log = logging.getLogger("siteline.central")

RETENTION_INTERVAL_S = 60.0
RECEIPTS_FOLDER = "receipts"


def central_version() -> str:
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("siteline")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class _Opened:
    signer: SiteSigner
    identity: TlsIdentity | None
    catalog: SqliteCatalog
    store: ChunkStore
    receipts: ReceiptBook


class CentralNode:
    """See the module docstring."""

    def __init__(
        self,
        config: CentralConfig,
        opened: _Opened,
        *,
        clock: Clock,
        store_full_retry_s: float = STORE_FULL_RETRY_S,
        hold_lifetime_s: float = HOLD_LIFETIME_S,
    ) -> None:
        self.config = config
        self.clock = clock
        self._store_full_retry_s = store_full_retry_s
        self._hold_lifetime_s = hold_lifetime_s
        self.signer = opened.signer
        self.identity = opened.identity
        self.catalog = opened.catalog
        self.store = opened.store
        self.receipts = opened.receipts
        self.version = central_version()
        self._http: aiohttp.ClientSession | None = None
        self._server: ApiServer | None = None
        self._retention: asyncio.Task[None] | None = None
        self._away_checks: asyncio.Task[None] | None = None
        self.registry: SiteRegistry | None = None
        self.live: LiveFeeds | None = None
        self.missed_chunks: MissedChunkRetrieval | None = None
        self.ingest: IngestWriter | None = None
        self.schedule_retrieval: ScheduleRetrieval | None = None
        self.services: CentralServices | None = None
        self.port: int | None = None

    @classmethod
    def open(
        cls,
        config: CentralConfig,
        *,
        clock: Clock,
        store_full_retry_s: float = STORE_FULL_RETRY_S,
        hold_lifetime_s: float = HOLD_LIFETIME_S,
    ) -> CentralNode:
        """Open keys, catalog and store (blocking: call it from a thread in async code).

        `store_full_retry_s`: how long a retrieval paused for room in the central's store
        waits before it tries again, when no job released room meanwhile;
        `hold_lifetime_s`: how long a retrieval's holds at the site last (renewed before
        they expire)."""
        signer = SiteSigner.load_or_create(config.central.signing_key)
        identity = None
        if config.api.scheme == "https":
            identity = server_identity(
                config.api.tls_certificate,
                config.api.tls_key,
                common_name=config.central.name,
                bind=config.api.bind,
                clock=clock,
            )
        catalog = SqliteCatalog.open(
            config.storage.catalog_path,
            clock=clock,
            secret_box=SecretBox.load_or_create(config.storage.secret_key),
        )
        try:
            store = ChunkStore.open(
                config.storage.media_path,
                quota_bytes=config.storage.quota_bytes,
                hold_budget_bytes=config.storage.hold_budget_bytes,  # unfinished retrievals
                clock=clock,
                retention=RetentionPolicy(
                    max_bytes=config.storage.quota_bytes,
                    default_max_age_ns=config.storage.max_age_s * NS_PER_S,
                ),
            )
        except BaseException:
            catalog.close()
            raise
        try:
            receipts = ReceiptBook.open(
                config.storage.media_path.parent / RECEIPTS_FOLDER, signer, clock=clock
            )
        except BaseException:
            store.close()
            catalog.close()
            raise
        return cls(
            config,
            _Opened(signer, identity, catalog, store, receipts),
            clock=clock,
            store_full_retry_s=store_full_retry_s,
            hold_lifetime_s=hold_lifetime_s,
        )

    @property
    def base_url(self) -> str:
        host = self.config.api.bind
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming, not binding
            host = "127.0.0.1"
        return f"{self.config.api.scheme}://{host}:{self.port}"

    @property
    def web_app(self) -> aiohttp.web.Application | None:
        """The API application while serving (to inspect its routes), else None."""
        return None if self._server is None else self._server.app

    async def start(self, *, port: int | None = None) -> int:
        """Start the connectors and serve the API; the bound port (`port` 0: any free one)."""
        config = self.config
        clock = self.clock
        software = f"siteline-central {self.version}"
        # No pool limit: every open site link holds a connection for as long as it lives.
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(sock_connect=10),
        )
        self.ingest = IngestWriter(self.store, self.receipts)
        retrieval_work = RetrievalWork(
            self.catalog,
            self.ingest,
            clock=clock,
            held=self.store,
            space=RetrievalSpace(self.store, clock=clock),
            store_full_retry_s=self._store_full_retry_s,
            hold_lifetime_s=self._hold_lifetime_s,
        )
        await retrieval_work.start()  # holds of jobs that ended while the central was down
        retention_trends = RetentionTrends(self.catalog)
        away_risk = AwayRisk(
            self.catalog,
            retention_trends,
            retrieval_work.at_risk,
            clock=clock,
            linked=self._has_link,
        )
        retrievals = RetrievalService(self.catalog, retrieval_work, away=away_risk)
        self.missed_chunks = MissedChunkRetrieval(self.catalog, retrievals, clock=clock)
        self.live = LiveFeeds(
            self.catalog,
            self.store,
            self.ingest,
            clock=clock,
            missed_chunk=self.missed_chunks.chunk_missed,
        )
        reconnect = ReconnectRetrieval(self.catalog, self.store, retrievals, clock=clock)
        event_retrieval = EventRetrieval(self.catalog, retrievals)
        self.schedule_retrieval = ScheduleRetrieval(self.catalog, retrievals, clock=clock)
        unreported_hardware = UnreportedHardware(self.catalog, clock=clock)
        registry = SiteRegistry(
            self.catalog,
            dialer=SiteDialer(
                self._http,
                self.catalog,
                clock=clock,
                software=software,
                read_timeout_s=config.links.read_timeout_s,
            ),
            works=[
                SiteLinkWork(
                    self.catalog,
                    clock=clock,
                    unreported=unreported_hardware,
                    retention_trends=retention_trends,
                ),
                self.live,
                reconnect,  # before the live recording has stored anything new
                retrieval_work,
                event_retrieval,
            ],
            clock=clock,
            policy=ConnectorPolicy(
                backoff=BackoffPolicy(
                    max_s=config.links.retry_max_s, stable_after_s=LINK_STABLE_AFTER_S
                ),
                offline_notice_after_s=config.links.offline_notice_after_s,
            ),
            rng=random.Random(),  # noqa: S311 - retry jitter, not a secret
        )
        self.registry = registry
        services = CentralServices(
            info=CentralInfo(
                central_id=config.central.id,
                name=config.central.name,
                version=self.version,
                public_key=self.signer.public_key,
                fingerprint=None if self.identity is None else self.identity.fingerprint,
            ),
            catalog=self.catalog,
            accounts=CentralAccounts(self.catalog, clock=clock, token_ttl_s=config.api.token_ttl_s),
            policy=AccessPolicy(),
            registry=registry,
            sites=SiteManagement(
                self.catalog,
                registry,
                self._http,
                clock=clock,
                software=software,
                read_timeout_s=config.links.read_timeout_s,
                unreported=unreported_hardware,
                retention_trends=retention_trends,
            ),
            timelines=DeviceTimelines(
                self.catalog,
                self.store,
                registry,
                clock=clock,
                pending=retrievals.pending_spans,
                running=retrievals.running_spans,
            ),
            live=self.live,
            discovery=SiteDiscovery(self.catalog, clock=clock),
            exports=ExportService(
                self.catalog,
                self.store,
                config.storage.media_path.parent / "exports",
                clock=clock,
                receipts=self.receipts,
                central_public_key=self.signer.public_key,
            ),
            retrievals=retrievals,
            event_retrieval=event_retrieval,
            schedule_retrieval=self.schedule_retrieval,
            store=self.store,
            clock=clock,
            link_read_timeout_s=config.links.read_timeout_s,
        )
        self.services = services
        app = build_central_app(
            services,
            [
                *account_routes(),
                *site_routes(),
                *device_routes(),
                *live_routes(),
                *playback_routes(),
                *discovery_routes(),
                *notification_routes(),
                *enrolment_routes(),
                *export_routes(),
                *retrieval_routes(),
                *retrieval_rule_routes(),
            ],
        )
        ssl_context = None if self.identity is None else self.identity.server_ssl_context()
        self._server = ApiServer(
            app,
            host=config.api.bind,
            port=config.api.port if port is None else port,
            ssl_context=ssl_context,
        )
        self.port = await self._server.start()
        await registry.start()
        self.schedule_retrieval.start()
        self._retention = asyncio.create_task(self._keep_retention(), name="central-retention")
        self._away_checks = asyncio.create_task(away_risk.run(), name="central-away-risk")
        return self.port

    async def stop(self) -> None:
        """Stop serving, close every link, close the stores (idempotent)."""
        if self.schedule_retrieval is not None:
            await self.schedule_retrieval.stop()
            self.schedule_retrieval = None
        for task in (self._retention, self._away_checks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._retention = self._away_checks = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self.registry is not None:
            await self.registry.stop()
        if self.live is not None:
            await self.live.stop()
        if self.missed_chunks is not None:
            await self.missed_chunks.close()
            self.missed_chunks = None
        if self.ingest is not None:
            await self.ingest.close()
        if self.services is not None:
            await self.services.discovery.close()
        if self.services is not None:
            await self.services.exports.close()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await asyncio.to_thread(self._close_stores)

    def _close_stores(self) -> None:
        self.receipts.close()
        self.store.close()
        self.catalog.close()

    def _has_link(self, site_id: str) -> bool:
        """Whether the site has an open link now (False before the registry started)."""
        registry = self.registry
        return registry is not None and registry.link(site_id) is not None

    async def _keep_retention(self) -> None:
        while True:
            try:
                report = await asyncio.to_thread(self.store.enforce_retention)
                deleted = report.deleted_by_age + report.deleted_by_bytes
                if deleted:
                    _log.info("retention removed %d chunks", deleted)
                if report.pending:
                    continue  # more to delete: go on after letting writers in
                horizon_ns = self.clock.now_ns() - self.config.storage.max_age_s * NS_PER_S
                await asyncio.to_thread(self.receipts.prune, horizon_ns)
            except Exception:
                _log.exception("retention failed; trying again later")
            await self.clock.sleep(RETENTION_INTERVAL_S)
