"""What the API's routes work with, handed to the application in one place.

Routes reach these through `request.app[SERVICES]`; nothing here is global, so tests build
an application with their own collaborators.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from central.auth import AccessPolicy, CentralAccounts
from central.catalog.catalog import Catalog
from central.device_timeline import DeviceTimelines
from central.export_service import ExportService
from central.live_feeds import LiveFeeds
from central.retrieval.event_rules import EventRetrieval
from central.retrieval.retrieval_service import RetrievalService
from central.retrieval.schedule_rules import ScheduleRetrieval
from central.site_discovery import SiteDiscovery
from central.site_management import SiteManagement
from central.site_registry import SiteRegistry
from shared.clock import Clock
from shared.store.chunk_store import ChunkStore


@dataclass(frozen=True)
class CentralInfo:
    """Who this central is, for `GET /api/v1/central`."""

    central_id: str
    name: str
    version: str
    public_key: bytes
    fingerprint: str | None  # of the API's certificate, None over HTTP


@dataclass
class CentralServices:
    info: CentralInfo
    catalog: Catalog
    accounts: CentralAccounts
    policy: AccessPolicy
    registry: SiteRegistry
    sites: SiteManagement
    timelines: DeviceTimelines
    live: LiveFeeds
    discovery: SiteDiscovery
    exports: ExportService
    retrievals: RetrievalService
    event_retrieval: EventRetrieval
    schedule_retrieval: ScheduleRetrieval
    store: ChunkStore
    clock: Clock
    link_read_timeout_s: float


SERVICES = web.AppKey("central_services", CentralServices)
