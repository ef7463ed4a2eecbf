"""Several threads writing and reading through one catalog at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from central.catalog import SqliteCatalog
from tests.central.catalog.catalog_parts import camera, dial_out_site

THREADS = 4
SITES_PER_THREAD = 15


def _write(catalog: SqliteCatalog, worker: int) -> list[str]:
    site_ids = []
    for n in range(SITES_PER_THREAD):
        port = worker * 1000 + n + 1
        site, devices = catalog.add_site(
            dial_out_site(f"w{worker} s{n}", port=port), f"pw-{port}", [camera("a"), camera("b")]
        )
        catalog.apply_hardware(site.site_id, [camera("b"), camera("c")])
        catalog.update_device(devices[1].device_id, name=f"renamed {port}")
        catalog.raise_notification("site_offline", site.site_id, None, "offline", n)
        catalog.set_setting(f"worker {worker}", n)
        site_ids.append(site.site_id)
    return site_ids


def _read(catalog: SqliteCatalog) -> int:
    seen = 0
    for _ in range(THREADS * SITES_PER_THREAD):
        for site in catalog.sites():
            catalog.devices(site.site_id)
            seen += 1
    return seen


def test_threads_writing_at_once_lose_nothing(catalog: SqliteCatalog) -> None:
    with ThreadPoolExecutor(max_workers=THREADS + 1, thread_name_prefix="catalog-test") as pool:
        writers = [pool.submit(_write, catalog, worker) for worker in range(THREADS)]
        reader = pool.submit(_read, catalog)
        site_ids = [site_id for writer in writers for site_id in writer.result()]
        reader.result()

    assert len(set(site_ids)) == THREADS * SITES_PER_THREAD
    assert {s.site_id for s in catalog.sites()} == set(site_ids)
    devices = catalog.devices()
    assert len(devices) == 3 * len(site_ids)
    assert sum(d.present for d in devices) == 2 * len(site_ids)
    assert sum(d.name.startswith("renamed") for d in devices) == len(site_ids)
    assert len(catalog.notifications(limit=1000)) == len(site_ids)
    for worker in range(THREADS):
        assert catalog.setting(f"worker {worker}") == SITES_PER_THREAD - 1
    for site_id in site_ids[::SITES_PER_THREAD]:
        port = catalog.site(site_id).port
        assert catalog.site_password(site_id) == f"pw-{port}"
