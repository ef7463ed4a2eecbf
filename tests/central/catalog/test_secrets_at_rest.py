"""Site passwords at rest: only ciphertext in the database, the key in its own 0600 file."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from central.catalog import SecretBox, SecretKeyError, SecretUnreadable, SqliteCatalog
from shared.clock import ManualClock
from tests.central.catalog.catalog_parts import dial_out_site
from tests.central.catalog.conftest import OpenCatalog

PASSWORD = "Zebra-Quartz-5519-lantern"


def _database_bytes(catalog_path: Path) -> bytes:
    """The database file and its write-ahead log, where fresh writes sit before a checkpoint."""
    files = [catalog_path, catalog_path.with_name(catalog_path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def test_the_password_is_not_in_the_database_files(
    open_catalog: OpenCatalog, catalog_path: Path
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), PASSWORD)
    assert PASSWORD.encode() not in _database_bytes(catalog_path)
    catalog.close()
    stored = _database_bytes(catalog_path)
    assert PASSWORD.encode() not in stored
    assert PASSWORD.encode("utf-16-le") not in stored
    with sqlite3.connect(catalog_path) as raw:
        (sealed,) = raw.execute(
            "SELECT password_sealed FROM sites WHERE site_id = ?", (site.site_id,)
        ).fetchone()
    raw.close()
    assert isinstance(sealed, bytes)
    assert len(sealed) > len(PASSWORD)
    assert open_catalog().site_password(site.site_id) == PASSWORD


def test_the_key_file_is_made_once_with_mode_0600(key_path: Path) -> None:
    first = SecretBox.load_or_create(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = key_path.read_bytes()
    assert len(key) == 32
    again = SecretBox.load_or_create(key_path)
    assert key_path.read_bytes() == key
    sealed = first.seal(b"secret", context="site s-1 password")
    assert again.open(sealed, context="site s-1 password") == b"secret"


def test_a_key_file_others_may_read_is_refused(key_path: Path) -> None:
    SecretBox.load_or_create(key_path)
    os.chmod(key_path, 0o644)
    with pytest.raises(SecretKeyError, match="may be read by other users \\(mode 0644\\)"):
        SecretBox.load_or_create(key_path)


def test_a_key_file_of_the_wrong_length_is_refused(key_path: Path) -> None:
    key_path.parent.mkdir(parents=True)
    key_path.write_bytes(b"short")
    os.chmod(key_path, 0o600)
    with pytest.raises(SecretKeyError, match="5 bytes, not 32"):
        SecretBox.load_or_create(key_path)


def test_another_key_gives_an_error_naming_the_site(
    open_catalog: OpenCatalog, catalog_path: Path, clock: ManualClock, tmp_path: Path
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), PASSWORD)
    catalog.close()
    other_key = tmp_path / "other.key"

    with SqliteCatalog.open(
        catalog_path, clock=clock, secret_box=SecretBox.load_or_create(other_key)
    ) as reopened:
        with pytest.raises(
            SecretUnreadable,
            match=re.escape(
                f"site {site.site_id} password: cannot be decrypted with the key from {other_key}"
            ),
        ):
            reopened.site_password(site.site_id)
        assert reopened.site(site.site_id) == site  # everything else still reads


def test_a_sealed_password_moved_to_another_site_does_not_open(
    catalog: SqliteCatalog, catalog_path: Path
) -> None:
    one, _ = catalog.add_site(dial_out_site("One", port=1), "one's password")
    two, _ = catalog.add_site(dial_out_site("Two", port=2), "two's password")
    with sqlite3.connect(catalog_path) as raw:
        raw.execute(
            "UPDATE sites SET password_sealed = "
            "(SELECT password_sealed FROM sites WHERE site_id = ?) WHERE site_id = ?",
            (one.site_id, two.site_id),
        )
    raw.close()
    with pytest.raises(SecretUnreadable, match=rf"^site {two.site_id} password"):
        catalog.site_password(two.site_id)
