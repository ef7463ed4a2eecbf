"""Fixtures of the export tests: one recorded site in a real chunk store, and its exports,
made once for the whole package (each test that changes a file works on its own copy)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.export import ExportSummary, evidence_path_for, export_range
from shared.clock import ManualClock
from tests.central.export.recorded_site import SITE, RecordedSite, at, record_site

EXPORT_START_MS = 300
EXPORT_END_MS = 5700


@pytest.fixture(scope="package")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedSite]:
    site = record_site(tmp_path_factory.mktemp("central") / "store")
    try:
        yield site
    finally:
        site.store.close()


@pytest.fixture(scope="package")
def exports(
    recorded: RecordedSite, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ExportSummary]:
    """cam-1 from 0.3 s to 5.7 s, as MP4 and as MKV."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        container: export_range(
            recorded.store,
            recorded.keys,
            SITE,
            "cam-1",
            at(EXPORT_START_MS),
            at(EXPORT_END_MS),
            folder / f"cam-1.{container}",
            container,
            clock=ManualClock(at(60_000)),
            device_name="Loading bay",
        )
        for container in ("mp4", "mkv")
    }


def copy_export(summary: ExportSummary, folder: Path) -> Path:
    """A copy of the export's media and evidence in `folder`; returns the media's path."""
    media = folder / summary.media_path.name
    shutil.copyfile(summary.media_path, media)
    shutil.copyfile(summary.evidence_path, evidence_path_for(media))
    return media
