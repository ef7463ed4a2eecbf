"""Fixtures of the catalog tests: a manual clock, a key file, and a catalog in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from central.catalog import SecretBox, SqliteCatalog
from shared.clock import ManualClock
from shared.passwords import hash_password

OpenCatalog = Callable[[], SqliteCatalog]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    return tmp_path / "central" / "catalog.sqlite3"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "central" / "secret.key"


@pytest.fixture
def open_catalog(catalog_path: Path, key_path: Path, clock: ManualClock) -> Iterator[OpenCatalog]:
    """Opens the test's catalog (again, for reopen tests); all are closed at the end."""
    opened: list[SqliteCatalog] = []

    def open_it() -> SqliteCatalog:
        catalog = SqliteCatalog.open(
            catalog_path, clock=clock, secret_box=SecretBox.load_or_create(key_path)
        )
        opened.append(catalog)
        return catalog

    yield open_it
    for catalog in opened:
        catalog.close()


@pytest.fixture
def catalog(open_catalog: OpenCatalog) -> SqliteCatalog:
    return open_catalog()


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One real scrypt hash (slow to make, so made once)."""
    return hash_password("a long enough password")
