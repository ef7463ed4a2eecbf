"""Fixtures of the retrieval rule tests: a real catalog on a manual clock, with one site of
two cameras and an input, a second site of one camera, and a retrieval service whose
engine is never given a link (the jobs stay pending in the catalog for the tests to read)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.catalog import DeviceRecord, SiteRecord, SqliteCatalog
from central.ingest_writer import PutOutcome
from central.retrieval.retrieval_service import RetrievalService
from central.retrieval.retrieval_work import RetrievalWork
from shared.chunk import SignedChunk
from shared.clock import ManualClock
from tests.central.catalog.catalog_parts import camera, dial_in_site, door_input, open_catalog


class NoChunks:
    """The engine's chunk sink in tests where no link ever runs a job: never called."""

    async def put_verified(self, chunks: Sequence[SignedChunk]) -> list[PutOutcome]:
        raise AssertionError(f"no job runs in these tests, yet {len(chunks)} chunks came")


@dataclass
class RuleWorld:
    clock: ManualClock
    catalog: SqliteCatalog
    retrievals: RetrievalService
    site: SiteRecord
    cam_a: DeviceRecord
    cam_b: DeviceRecord
    door: DeviceRecord
    other_site: SiteRecord
    other_cam: DeviceRecord


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def catalog(tmp_path: Path, clock: ManualClock) -> Iterator[SqliteCatalog]:
    yield from open_catalog(tmp_path, clock)


@pytest.fixture
def world(catalog: SqliteCatalog, clock: ManualClock) -> RuleWorld:
    site, (cam_a, cam_b, door) = catalog.add_site(
        dial_in_site("Depot", remote_site_id="site-depot"),
        None,
        [camera("cam-a"), camera("cam-b"), door_input("door")],
    )
    site = catalog.update_site(site.site_id, time_zone="Europe/Paris")
    other_site, (other_cam,) = catalog.add_site(
        dial_in_site("Shop", remote_site_id="site-shop"), None, [camera("cam-x")]
    )
    work = RetrievalWork(catalog, NoChunks(), clock=clock)
    return RuleWorld(
        clock=clock,
        catalog=catalog,
        retrievals=RetrievalService(catalog, work),
        site=site,
        cam_a=cam_a,
        cam_b=cam_b,
        door=door,
        other_site=other_site,
        other_cam=other_cam,
    )
