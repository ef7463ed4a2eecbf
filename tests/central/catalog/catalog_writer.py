"""A child process for the kill -9 test: writes to a catalog without end, reporting each commit.

Usage: python -m tests.central.catalog.catalog_writer CATALOG KEY_FILE

Round n adds the site "site n" with four cameras, then re-lists the previous site's devices
(one camera unplugged, one new), then records n in the settings; after each of these
commits it prints a line, so the parent knows what is durably stored when it kills us.
A new run continues after the sites already there.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from central.catalog import SecretBox, SqliteCatalog
from shared.clock import SystemClock
from tests.central.catalog.catalog_parts import camera, dial_out_site

CAMERAS_PER_SITE = 4


def main(catalog_path: Path, key_path: Path) -> None:
    catalog = SqliteCatalog.open(
        catalog_path, clock=SystemClock(), secret_box=SecretBox.load_or_create(key_path)
    )
    existing = catalog.sites()
    previous = existing[-1].site_id if existing else None
    for n in itertools.count(len(existing)):
        cameras = [camera(f"cam-{n}-{k}") for k in range(CAMERAS_PER_SITE)]
        site, _ = catalog.add_site(dial_out_site(f"site {n}", port=1000 + n), f"pw-{n}", cameras)
        print(f"added {n}", flush=True)
        if previous is not None:
            relisted = [camera(f"cam-{n - 1}-{k}") for k in range(1, CAMERAS_PER_SITE + 1)]
            catalog.apply_hardware(previous, relisted)
            print(f"relisted {n - 1}", flush=True)
        catalog.set_setting("round", n)
        print(f"round {n}", flush=True)
        previous = site.site_id


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
