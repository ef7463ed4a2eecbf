"""Paged reads of the catalog: pages join into the complete list, in its order, and each
page is read through an index (its cost follows the page, not the catalog)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from central.catalog import NotFound, SqliteCatalog
from central.catalog.records import DeviceRecord, SiteRecord
from tests.central.catalog.catalog_parts import camera, dial_out_site


def _sites_with_devices(catalog: SqliteCatalog) -> list[SiteRecord]:
    """Five sites of 0 to 4 cameras, the third with one camera gone (not present)."""
    sites = []
    for number in range(5):
        ids = [f"cam-{letter}" for letter in "zamq"[:number]]
        site, _ = catalog.add_site(
            dial_out_site(f"Site {number}", port=8000 + number), None, [camera(i) for i in ids]
        )
        if number == 3:
            catalog.apply_hardware(site.site_id, [camera(i) for i in ids[1:]])
        sites.append(site)
    return sites


def _all_pages_of_devices(
    catalog: SqliteCatalog, limit: int, *, site_id: str | None = None, present_only: bool = False
) -> list[DeviceRecord]:
    listed: list[DeviceRecord] = []
    after = None
    while True:
        page = catalog.devices_page(
            site_id=site_id, present_only=present_only, after=after, limit=limit
        )
        assert len(page) <= limit
        listed.extend(page)
        if len(page) < limit:
            return listed
        after = page[-1].device_id


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_pages_of_devices_join_into_the_complete_list(
    catalog: SqliteCatalog, limit: int
) -> None:
    sites = _sites_with_devices(catalog)
    assert _all_pages_of_devices(catalog, limit) == catalog.devices()
    assert _all_pages_of_devices(catalog, limit, present_only=True) == catalog.devices(
        present_only=True
    )
    for site in sites:
        assert _all_pages_of_devices(catalog, limit, site_id=site.site_id) == catalog.devices(
            site.site_id
        )
    assert len(catalog.devices()) == 10
    assert len(catalog.devices(present_only=True)) == 9


def test_a_page_after_an_unknown_device_or_site_is_not_found(catalog: SqliteCatalog) -> None:
    sites = _sites_with_devices(catalog)
    with pytest.raises(NotFound, match="device 'd-nothere000'"):
        catalog.devices_page(after="d-nothere000", limit=5)
    with pytest.raises(NotFound, match="site 's-nothere000'"):
        catalog.devices_page(site_id="s-nothere000", after=None, limit=5)
    device_of_another_site = catalog.devices(sites[4].site_id)[0]
    with pytest.raises(NotFound, match=device_of_another_site.device_id):
        catalog.devices_page(
            site_id=sites[2].site_id, after=device_of_another_site.device_id, limit=5
        )


def test_a_page_goes_on_after_a_device_that_is_no_longer_present(catalog: SqliteCatalog) -> None:
    sites = _sites_with_devices(catalog)
    gone = next(d for d in catalog.devices(sites[3].site_id) if not d.present)
    page = catalog.devices_page(present_only=True, after=gone.device_id, limit=100)
    everything = catalog.devices()
    later = everything[everything.index(gone) + 1 :]
    assert page == [d for d in later if d.present]
    assert page[0].site_id == gone.site_id


@pytest.mark.parametrize("limit", [1, 2, 5, 6])
def test_pages_of_sites_join_into_the_complete_list(catalog: SqliteCatalog, limit: int) -> None:
    _sites_with_devices(catalog)
    listed: list[SiteRecord] = []
    after = None
    while page := catalog.sites_page(after=after, limit=limit):
        listed.extend(page)
        after = page[-1].site_id
    assert listed == catalog.sites()
    with pytest.raises(NotFound, match="site 's-nothere000'"):
        catalog.sites_page(after="s-nothere000", limit=1)


def test_sites_are_found_by_id_and_present_devices_counted_per_site(
    catalog: SqliteCatalog,
) -> None:
    sites = _sites_with_devices(catalog)
    ids = [s.site_id for s in sites]
    unknown = [f"s-unknown{n:04d}" for n in range(1200)]  # more ids than one query takes
    found = catalog.sites_by_id([*unknown[:700], ids[4], *unknown[700:], ids[0], ids[0]])
    assert found == {ids[4]: sites[4], ids[0]: sites[0]}
    expected = Counter(d.site_id for d in catalog.devices(present_only=True))
    assert catalog.present_device_counts() == expected
    assert catalog.present_device_counts([*unknown, ids[3], ids[0]]) == {ids[3]: 2}
    assert 0 not in catalog.present_device_counts().values()  # a site without any is absent


def test_page_queries_read_through_indexes_without_sorting(
    catalog: SqliteCatalog, catalog_path: Path
) -> None:
    _sites_with_devices(catalog)
    queries = [
        "SELECT * FROM devices WHERE (site_id, rowid) > (?, ?) ORDER BY site_id, rowid LIMIT 5",
        "SELECT * FROM devices WHERE site_id = ? AND present = 1 AND (site_id, rowid) > (?, ?) "
        "ORDER BY site_id, rowid LIMIT 5",
        "SELECT * FROM sites WHERE rowid > ? ORDER BY rowid LIMIT 5",
        "SELECT site_id, count(*) FROM devices WHERE present = 1 GROUP BY site_id",
    ]
    with sqlite3.connect(catalog_path) as db:
        for query in queries:
            params = ("s",) * query.count("?")
            plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query, params))
            assert "TEMP B-TREE" not in plan, (query, plan)
            assert "USING" in plan, (query, plan)  # an index, or the rowid's b-tree
    db.close()
