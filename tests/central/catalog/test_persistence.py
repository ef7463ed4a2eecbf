"""Reopening: everything is kept; the schema version is checked; foreign files are refused."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from central.catalog import SCHEMA_VERSION, CatalogError, SchemaError, SecretBox, SqliteCatalog
from shared.clock import ManualClock
from tests.central.catalog.catalog_parts import camera, dial_in_site, dial_out_site, digest_of
from tests.central.catalog.conftest import OpenCatalog


def test_reopening_keeps_everything(
    open_catalog: OpenCatalog, clock: ManualClock, password_hash: str
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), "pw", [camera("cam-a"), camera("cam-b")])
    catalog.apply_hardware(site.site_id, [camera("cam-a"), camera("cam-c")])
    enrolled, _ = catalog.add_site(dial_in_site(), None)
    catalog.mark_seen(site.site_id, clock.now_ns())
    catalog.add_user("alice", password_hash, "admin")
    catalog.store_token(digest_of("t"), "alice", clock.now_ns(), clock.now_ns() + 10**12)
    catalog.add_enrolment_token(digest_of("e"), "bus", clock.now_ns() + 10**12)
    catalog.raise_notification("site_offline", enrolled.site_id, None, "never seen", 5)
    catalog.set_setting("theme", {"dark": True})
    before = (
        catalog.sites(),
        catalog.devices(),
        catalog.users(),
        catalog.token(digest_of("t")),
        catalog.enrolment_tokens(),
        catalog.notifications(open_only=False),
        catalog.setting("theme"),
        catalog.site_password(site.site_id),
    )
    catalog.close()

    reopened = open_catalog()

    after = (
        reopened.sites(),
        reopened.devices(),
        reopened.users(),
        reopened.token(digest_of("t")),
        reopened.enrolment_tokens(),
        reopened.notifications(open_only=False),
        reopened.setting("theme"),
        reopened.site_password(site.site_id),
    )
    assert after == before
    assert len(after[1]) == 3


def test_the_database_is_in_wal_mode_with_the_current_schema(
    catalog: SqliteCatalog, catalog_path: Path
) -> None:
    with sqlite3.connect(catalog_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    raw.close()


def test_a_newer_schema_is_refused_clearly(open_catalog: OpenCatalog, catalog_path: Path) -> None:
    open_catalog().close()
    with sqlite3.connect(catalog_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(
        SchemaError,
        match=re.escape(
            f"schema version {SCHEMA_VERSION + 1}, newer than this program knows ({SCHEMA_VERSION})"
        ),
    ):
        open_catalog()


def test_a_file_that_is_not_a_database_is_refused(
    catalog_path: Path, key_path: Path, clock: ManualClock
) -> None:
    catalog_path.parent.mkdir(parents=True)
    catalog_path.write_bytes(b"these are not the tables you are looking for" * 100)
    with pytest.raises(SchemaError, match=rf"^{catalog_path} cannot be used as a catalog"):
        SqliteCatalog.open(catalog_path, clock=clock, secret_box=SecretBox.load_or_create(key_path))


def test_a_closed_catalog_refuses_calls(catalog: SqliteCatalog) -> None:
    catalog.close()
    catalog.close()  # idempotent
    with pytest.raises(CatalogError, match="is closed"):
        catalog.sites()
