"""Fixtures of the chunk store tests: a signer, a chunk factory, a manual clock, a store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.clock import ManualClock
from shared.signing import SiteSigner
from shared.store import ChunkStore
from tests.store.store_chunks import SITE_ID, ChunkFactory

MIB = 1 << 20


@pytest.fixture(scope="session")
def signer() -> SiteSigner:
    return SiteSigner.generate()


@pytest.fixture
def factory(signer: SiteSigner) -> ChunkFactory:
    return ChunkFactory(signer)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path, clock: ManualClock) -> Iterator[ChunkStore]:
    with ChunkStore.open(
        store_path,
        quota_bytes=64 * MIB,
        hold_budget_bytes=16 * MIB,
        clock=clock,
        home_site_id=SITE_ID,
    ) as opened:
        yield opened
