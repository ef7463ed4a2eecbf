"""The changes to a site's devices the central applied by itself: kept for the operator's
next "update hardware", and told of meanwhile in the site's `hardware_changed`
notification, on a real catalog (SQLite in tmp_path): raised naming the devices, replaced
by one naming everything when more changes come, cleared by the report, or when the
changes cancel out; the notice and the changes still there after a restart of the
central."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from central.catalog import SecretBox, SqliteCatalog, StreamInfo
from central.catalog.records import HardwareDiff, NewDevice, Notification
from central.catalog.validation import MAX_MESSAGE_CHARS
from central.unreported_hardware import HARDWARE_CHANGED, SETTING_PREFIX, UnreportedHardware
from shared.clock import ManualClock
from shared.media import MediaKind
from tests.central.catalog.catalog_parts import camera, dial_out_site, door_input


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


OpenCatalog = Callable[[], SqliteCatalog]


@pytest.fixture
def open_catalog(tmp_path: Path, clock: ManualClock) -> Iterator[OpenCatalog]:
    """Opens the test's catalog (again, as a restarted central does); closed at the end."""
    opened: list[SqliteCatalog] = []

    def open_it() -> SqliteCatalog:
        box = SecretBox.load_or_create(tmp_path / "secret.key")
        catalog = SqliteCatalog.open(tmp_path / "catalog.sqlite3", clock=clock, secret_box=box)
        opened.append(catalog)
        return catalog

    yield open_it
    for catalog in opened:
        catalog.close()


def _notices(catalog: SqliteCatalog, *, open_only: bool = True) -> list[Notification]:
    return [n for n in catalog.notifications(open_only=open_only) if n.kind == HARDWARE_CHANGED]


def _smaller_lq(device: NewDevice) -> NewDevice:
    hq, lq = device.streams
    return dataclasses.replace(device, streams=(hq, dataclasses.replace(lq, width=480, height=270)))


async def _applied(catalog: SqliteCatalog, site_id: str, devices: list[NewDevice]) -> HardwareDiff:
    return await asyncio.to_thread(catalog.apply_hardware, site_id, devices)


async def test_a_change_is_told_of_in_words_replaced_as_more_comes_and_cleared_by_the_report(
    open_catalog: OpenCatalog, clock: ManualClock
) -> None:
    catalog = open_catalog()
    site, (cam_a, door) = catalog.add_site(dial_out_site(), None, [camera("cam-a"), door_input()])
    catalog.update_device(cam_a.device_id, name="Till")
    unreported = UnreportedHardware(catalog, clock=clock)

    # Nothing changed: nothing to tell.
    same = await _applied(catalog, site.site_id, [camera("cam-a"), door_input()])
    await unreported.applied_by_itself(site.site_id, same)
    assert _notices(catalog, open_only=False) == []

    clock.advance(10)
    first = await _applied(catalog, site.site_id, [_smaller_lq(camera("cam-a")), camera("cam-b")])
    await unreported.applied_by_itself(site.site_id, first)
    (notice,) = _notices(catalog)
    assert (notice.site_id, notice.device_id, notice.raised_ns) == (
        site.site_id,
        None,
        clock.now_ns(),
    )
    assert notice.message == (
        "devices changed at the site: added 'Camera cam-b'; removed 'Back door'; "
        "changed 'Till' (lq: h264 640x360 -> h264 480x270)"
    )

    # More changes before anyone asked: one notification naming all of them, the first one
    # kept in the history with its own message.
    clock.advance(10)
    second = await _applied(
        catalog, site.site_id, [_smaller_lq(camera("cam-a", "Till camera")), camera("cam-b")]
    )
    await unreported.applied_by_itself(site.site_id, second)
    (replaced,) = _notices(catalog)
    assert replaced.notification_id != notice.notification_id
    assert replaced.message == (
        "devices changed at the site: added 'Camera cam-b'; removed 'Back door'; "
        "changed 'Till' (site name; lq: h264 640x360 -> h264 480x270)"
    )
    history = _notices(catalog, open_only=False)
    assert [(n.notification_id, n.cleared_ns) for n in history] == [
        (replaced.notification_id, None),
        (notice.notification_id, clock.now_ns()),
    ]

    # The operator asks: the report covers both readings (and its own), the notice is cleared.
    clock.advance(10)
    own = await _applied(
        catalog, site.site_id, [_smaller_lq(camera("cam-a", "Till camera")), camera("cam-b")]
    )
    report = await unreported.report(site.site_id, own)
    assert [d.remote_device_id for d in report.added] == ["cam-b"]
    assert [d.device_id for d in report.removed] == [door.device_id]
    (change,) = report.changed
    assert (change.after.device_id, change.fields) == (
        cam_a.device_id,
        ("original_name", "stream_format"),
    )
    assert _notices(catalog) == []
    assert (await unreported.report(site.site_id, HardwareDiff())).is_empty


async def test_changes_that_cancel_out_clear_the_notice(
    open_catalog: OpenCatalog, clock: ManualClock
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    unreported = UnreportedHardware(catalog, clock=clock)
    for devices in ([camera("cam-a"), camera("cam-b")], [camera("cam-a")]):
        clock.advance(10)
        await unreported.applied_by_itself(
            site.site_id, await _applied(catalog, site.site_id, devices)
        )
    assert _notices(catalog) == []
    assert len(_notices(catalog, open_only=False)) == 1
    assert (await unreported.report(site.site_id, HardwareDiff())).is_empty


async def test_a_format_learnt_is_not_told_of(
    open_catalog: OpenCatalog, clock: ManualClock
) -> None:
    """A site that did not know a camera's format (not reached yet) and now does."""
    catalog = open_catalog()
    streams = (StreamInfo("hq", MediaKind.VIDEO), StreamInfo("lq", MediaKind.VIDEO))
    unknown = dataclasses.replace(camera("cam-a"), streams=streams)
    site, (cam,) = catalog.add_site(dial_out_site(), None, [unknown])
    unreported = UnreportedHardware(catalog, clock=clock)
    learnt = await _applied(catalog, site.site_id, [camera("cam-a")])
    await unreported.applied_by_itself(site.site_id, learnt)
    assert [d.device_id for d in learnt.refreshed] == [cam.device_id]
    assert _notices(catalog, open_only=False) == []


async def test_the_notice_survives_a_restart_of_the_central_and_the_report_clears_it(
    open_catalog: OpenCatalog, clock: ManualClock
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    before = UnreportedHardware(catalog, clock=clock)
    diff = await _applied(catalog, site.site_id, [_smaller_lq(camera("cam-a"))])
    await before.applied_by_itself(site.site_id, diff)
    (notice,) = _notices(catalog)
    catalog.close()

    restarted = open_catalog()
    assert _notices(restarted) == [notice]
    after = UnreportedHardware(restarted, clock=clock)
    # The change itself was applied before the restart: the operator's reading finds
    # nothing new, but the report still names it, as the central kept it; the notice
    # (which told of it) is cleared, and nothing is kept any more.
    own = await _applied(restarted, site.site_id, [_smaller_lq(camera("cam-a"))])
    assert own.is_empty
    report = await after.report(site.site_id, own)
    assert report == diff
    assert _notices(restarted) == []
    restarted.close()
    again = open_catalog()
    nothing = await _applied(again, site.site_id, [_smaller_lq(camera("cam-a"))])
    assert (await UnreportedHardware(again, clock=clock).report(site.site_id, nothing)).is_empty


async def test_unreadable_kept_changes_are_dropped_with_a_warning(
    open_catalog: OpenCatalog, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    catalog.set_setting(SETTING_PREFIX + site.site_id, [[None, {"device_id": 3}]])
    unreported = UnreportedHardware(catalog, clock=clock)
    own = await _applied(catalog, site.site_id, [camera("cam-b")])
    report = await unreported.report(site.site_id, own)
    assert report == own  # what its own reading found, and nothing else
    assert "unreadable" in caplog.text
    assert catalog.setting(SETTING_PREFIX + site.site_id) is None


async def test_a_long_list_of_changes_is_named_in_part_and_counted(
    open_catalog: OpenCatalog, clock: ManualClock
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), None)
    unreported = UnreportedHardware(catalog, clock=clock)
    many = [
        dataclasses.replace(camera(f"cam-{i:03}"), original_name=f"Camera {i:03} " + "x" * 100)
        for i in range(300)
    ]
    await unreported.applied_by_itself(site.site_id, await _applied(catalog, site.site_id, many))
    (notice,) = _notices(catalog)
    assert notice.message.startswith("devices changed at the site: added 'Camera 000 xxx")
    assert notice.message.endswith("xx' and 290 more")
    assert len(notice.message) <= MAX_MESSAGE_CHARS


async def test_a_removed_site_takes_its_notice_and_nothing_is_kept(
    open_catalog: OpenCatalog, clock: ManualClock
) -> None:
    catalog = open_catalog()
    site, _ = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    unreported = UnreportedHardware(catalog, clock=clock)
    diff = await _applied(catalog, site.site_id, [camera("cam-b")])
    await unreported.applied_by_itself(site.site_id, diff)
    catalog.remove_site(site.site_id)
    await unreported.forget(site.site_id)
    assert _notices(catalog, open_only=False) == []
    # A change applied as the site went is dropped quietly.
    await unreported.applied_by_itself(site.site_id, diff)
    assert _notices(catalog, open_only=False) == []
