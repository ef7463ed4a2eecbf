"""Paged reads of the catalog: pages join into the complete list, in its order, and each
page is read through an index (its cost follows the page, not the catalog)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from central.catalog import InvalidRecord, NotFound, SqliteCatalog
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
        assert len(page.devices) <= limit
        listed.extend(page.devices)
        if page.next_device_id is None:
            return listed
        assert len(page.devices) == limit  # only the last page is short
        after = page.devices[-1].device_id


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_pages_of_devices_join_into_the_complete_list(catalog: SqliteCatalog, limit: int) -> None:
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
    assert list(page.devices) == [d for d in later if d.present]
    assert page.devices[0].site_id == gone.site_id
    assert page.next_device_id is None


def test_a_page_names_the_device_after_it_without_building_its_record(
    catalog: SqliteCatalog, catalog_path: Path
) -> None:
    _sites_with_devices(catalog)
    everything = catalog.devices()
    first, second = everything[2], everything[3]
    # A row that could not become a record: the page must read it as its id alone.
    with sqlite3.connect(catalog_path) as db:
        db.execute(
            "UPDATE devices SET streams = 'not json' WHERE device_id = ?", (second.device_id,)
        )
    db.close()
    page = catalog.devices_page(after=everything[0].device_id, limit=2)
    assert [d.device_id for d in page.devices] == [everything[1].device_id, first.device_id]
    assert page.next_device_id == second.device_id
    last = catalog.devices_page(after=everything[-3].device_id, limit=2)
    assert list(last.devices) == everything[-2:]
    assert last.next_device_id is None


def test_a_page_of_less_than_one_is_refused(catalog: SqliteCatalog) -> None:
    _sites_with_devices(catalog)
    for limit in (0, -1):
        with pytest.raises(InvalidRecord, match="limit"):
            catalog.devices_page(after=None, limit=limit)
        with pytest.raises(InvalidRecord, match="limit"):
            catalog.sites_page(after=None, limit=limit)


@pytest.mark.parametrize("limit", [1, 2, 5, 6])
def test_pages_of_sites_join_into_the_complete_list(catalog: SqliteCatalog, limit: int) -> None:
    _sites_with_devices(catalog)
    listed: list[SiteRecord] = []
    after = None
    while True:
        page = catalog.sites_page(after=after, limit=limit)
        assert len(page.sites) <= limit
        listed.extend(page.sites)
        if page.next_site_id is None:
            break
        assert len(page.sites) == limit  # only the last page is short
        after = page.sites[-1].site_id
        assert page.next_site_id == catalog.sites()[len(listed)].site_id
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
