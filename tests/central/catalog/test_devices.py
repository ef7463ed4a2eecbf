"""Devices: the hardware diff (add, remove, return, change), central settings, listings."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from central.catalog import (
    InvalidRecord,
    NewDevice,
    NotFound,
    SqliteCatalog,
    StreamInfo,
)
from shared.clock import ManualClock
from shared.media import MediaKind
from tests.central.catalog.catalog_parts import camera, dial_out_site, door_input


def test_hardware_diff_adds_removes_returns_and_changes(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    site, (cam_a, cam_b, door) = catalog.add_site(
        dial_out_site(), None, [camera("cam-a"), camera("cam-b"), door_input()]
    )
    # The operator renames a camera and sets how it is recorded: the central's settings.
    cam_a = catalog.update_device(
        cam_a.device_id, name="Till", recording="both", central_rule={"retrieve": "on_motion"}
    )
    clock.advance(60)

    # cam-b is unplugged, cam-c appears, cam-a gets a better hq stream and a new site name.
    first = catalog.apply_hardware(
        site.site_id, [camera("cam-a", "Till camera", width=2560), door_input(), camera("cam-c")]
    )

    assert [d.remote_device_id for d in first.added] == ["cam-c"]
    assert first.added[0].created_ns == clock.now_ns()
    assert first.removed == (dataclasses.replace(cam_b, present=False, updated_ns=clock.now_ns()),)
    assert first.returned == ()
    (change,) = first.changed
    assert change.before == cam_a
    assert change.fields == ("original_name", "stream_format")  # hq 1920x1080 -> 2560x1440
    after = catalog.device(cam_a.device_id)
    assert change.after == after
    assert (after.name, after.original_name, after.streams[0].width) == (
        "Till",
        "Till camera",
        2560,
    )
    assert (after.recording, after.central_rule) == ("both", {"retrieve": "on_motion"})
    assert catalog.device(door.device_id) == door  # untouched, not even updated_ns
    assert [d.remote_device_id for d in catalog.devices(site.site_id, present_only=True)] == [
        "cam-a",
        "door",
        "cam-c",
    ]
    clock.advance(60)

    # cam-b comes back as it was; its id and everything set on it are the same.
    second = catalog.apply_hardware(
        site.site_id,
        [
            camera("cam-a", "Till camera", width=2560),
            camera("cam-b"),
            door_input(),
            camera("cam-c"),
        ],
    )

    assert (second.added, second.removed, second.changed) == ((), (), ())
    (back,) = second.returned
    assert back == dataclasses.replace(cam_b, present=True, updated_ns=clock.now_ns())
    assert catalog.device(cam_b.device_id) == back
    assert catalog.device_by_remote(site.site_id, "cam-b") == back

    # Nothing new: an empty diff, and nothing written.
    clock.advance(60)
    assert catalog.apply_hardware(
        site.site_id,
        [
            camera("cam-a", "Till camera", width=2560),
            camera("cam-b"),
            door_input(),
            camera("cam-c"),
        ],
    ).is_empty
    assert catalog.device(cam_b.device_id) == back


def test_a_device_can_return_changed(catalog: SqliteCatalog) -> None:
    site, (cam,) = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    catalog.apply_hardware(site.site_id, [])
    assert catalog.device(cam.device_id).present is False

    diff = catalog.apply_hardware(
        site.site_id, [dataclasses.replace(camera("cam-a"), kind="metadata")]
    )

    (back,) = diff.returned
    (change,) = diff.changed
    assert change.after == back == catalog.device(cam.device_id)
    assert change.fields == ("kind",)
    assert (back.present, back.kind, back.device_id) == (True, "metadata", cam.device_id)


def test_settings_of_a_new_device_come_from_its_new_record(catalog: SqliteCatalog) -> None:
    site, _ = catalog.add_site(dial_out_site(), None)
    proposed = dataclasses.replace(
        camera("cam-a"), name="Gate", recording="central_only", live_feed="always"
    )
    (added,) = catalog.apply_hardware(site.site_id, [proposed]).added
    assert (added.name, added.original_name, added.recording, added.live_feed) == (
        "Gate",
        "Camera cam-a",
        "central_only",
        "always",
    )
    # Later lists with other settings do not overwrite what the central decided.
    other = dataclasses.replace(proposed, name="Other", recording="site_only", live_feed="never")
    assert catalog.apply_hardware(site.site_id, [other]).is_empty
    assert catalog.device(added.device_id) == added


def test_apply_hardware_refuses_a_list_with_an_id_twice_and_changes_nothing(
    catalog: SqliteCatalog,
) -> None:
    site, devices = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    with pytest.raises(InvalidRecord, match=r"^devices: remote_device_id 'cam-b' is listed twice"):
        catalog.apply_hardware(site.site_id, [camera("cam-b"), camera("cam-b")])
    assert catalog.devices(site.site_id) == devices
    with pytest.raises(NotFound, match="site 's-nothere000'"):
        catalog.apply_hardware("s-nothere000", [])


def test_update_device_changes_central_settings_only(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    _, (cam,) = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    clock.advance(1)
    rule: dict[str, object] = {"retrieve": {"on": ["motion"], "pre_s": 5}}

    updated = catalog.update_device(cam.device_id, live_feed="always", central_rule=rule)

    assert updated == dataclasses.replace(
        cam, live_feed="always", central_rule=rule, updated_ns=clock.now_ns()
    )
    assert catalog.device(cam.device_id) == updated
    with pytest.raises(InvalidRecord, match=r"^recording: must be one of site_only"):
        catalog.update_device(cam.device_id, recording="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match=r"^central_rule: is not JSON"):
        catalog.update_device(cam.device_id, central_rule={"when": {1, 2}})
    with pytest.raises(InvalidRecord, match=r"^name: must not be empty"):
        catalog.update_device(cam.device_id, name="  ")
    with pytest.raises(NotFound, match="device 'd-nothere000'"):
        catalog.update_device("d-nothere000", name="x")
    assert catalog.device(cam.device_id) == updated


def test_devices_of_all_sites_are_listed_site_by_site_in_discovery_order(
    catalog: SqliteCatalog,
) -> None:
    ids = ["cam-z", "cam-a", "door", "cam-m"]
    for port in range(1, 6):
        site, _ = catalog.add_site(
            dial_out_site(f"Site {port}", port=port), None, [camera(i) for i in ids[:2]]
        )
        catalog.apply_hardware(site.site_id, [camera(i) for i in ids])

    everything = catalog.devices()

    assert len(everything) == 20
    by_site: dict[str, list[str]] = {}
    for device in everything:
        by_site.setdefault(device.site_id, []).append(device.remote_device_id)
    assert list(by_site) == sorted(by_site)  # one block per site
    assert all(order == ids for order in by_site.values())
    with pytest.raises(NotFound):
        catalog.devices("s-nothere000")


def test_device_listings_use_indexes_not_scans_and_sorts(
    catalog: SqliteCatalog, catalog_path: Path
) -> None:
    """Listing 4,000 devices of 1,000 sites must not sort or scan the whole table per site."""
    catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    with sqlite3.connect(catalog_path) as db:
        plans = {
            query: " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query, params))
            for query, params in [
                ("SELECT * FROM devices WHERE site_id = ? ORDER BY site_id, rowid", ("s",)),
                ("SELECT * FROM devices ORDER BY site_id, rowid", ()),
                ("SELECT * FROM devices WHERE site_id = ? AND remote_device_id = ?", ("s", "r")),
                ("SELECT * FROM sites WHERE remote_site_id = ?", ("r",)),
            ]
        }
    db.close()
    for query, plan in plans.items():
        assert "TEMP B-TREE" not in plan, (query, plan)
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (query, plan)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (lambda: NewDevice("", "camera", "x"), "^remote_device_id: must not be empty"),
        (lambda: NewDevice("a", "robot", "x"), "^kind: must be one of camera"),  # type: ignore[arg-type]
        (lambda: NewDevice("a", "camera", "x\n"), "^original_name: must not contain control"),
        (
            lambda: NewDevice("a", "camera", "x", (StreamInfo("hq", MediaKind.VIDEO),) * 2),
            "^streams: stream names must be unique",
        ),
        (
            lambda: NewDevice("a", "camera", "x", (StreamInfo("hq", "smell"),)),  # type: ignore[arg-type]
            "^streams.media_kind: must be one of video",
        ),
        (
            lambda: NewDevice(
                "a", "camera", "x", (StreamInfo("hq", MediaKind.VIDEO, "h264", 0, 10),)
            ),
            "^streams.width: must be between 1",
        ),
        (
            lambda: NewDevice("a", "camera", "x", central_rule={"x": float("nan")}),
            "^central_rule: is not JSON",
        ),
        (
            lambda: NewDevice("a", "camera", "x", central_rule={"x": "y" * 70_000}),
            "^central_rule: must be at most 65536 bytes",
        ),
    ],
)
def test_bad_devices_are_refused_naming_the_field(
    device: Callable[[], object], message: str
) -> None:
    with pytest.raises(InvalidRecord, match=message):
        device()


def test_a_rule_is_stored_as_plain_json(catalog: SqliteCatalog) -> None:
    _, (cam,) = catalog.add_site(
        dial_out_site(),
        None,
        [dataclasses.replace(camera("a"), central_rule={"on": ("motion", "door")})],
    )
    assert cam.central_rule == {"on": ["motion", "door"]}
    assert catalog.device(cam.device_id).central_rule == {"on": ["motion", "door"]}


def _without_formats(device: NewDevice) -> NewDevice:
    """`device` as a site that does not know (or report) its streams' formats lists it."""
    streams = tuple(StreamInfo(s.name, s.media_kind) for s in device.streams)
    return dataclasses.replace(device, streams=streams)


def _lq(device: NewDevice, width: int, height: int) -> NewDevice:
    hq, lq = device.streams
    return dataclasses.replace(
        device, streams=(hq, dataclasses.replace(lq, width=width, height=height))
    )


def test_a_list_without_formats_keeps_the_formats_known_and_reports_nothing(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    site, (cam,) = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    clock.advance(60)

    # An older site, or a camera not reached yet: unknown is no news; nothing is written.
    unknown = catalog.apply_hardware(site.site_id, [_without_formats(camera("cam-a"))])
    assert (unknown.is_empty, unknown.refreshed) == (True, ())
    assert catalog.device(cam.device_id) == cam

    # Then the LQ stream is smaller: a change of the format known before.
    clock.advance(60)
    diff = catalog.apply_hardware(site.site_id, [_lq(camera("cam-a"), 480, 270)])
    (change,) = diff.changed
    assert (change.before, change.fields) == (cam, ("stream_format",))
    assert change.after.streams[1] == StreamInfo("lq", MediaKind.VIDEO, "h264", 480, 270)
    assert catalog.device(cam.device_id) == change.after


def test_a_format_learnt_is_written_but_not_reported(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    site, (cam, door) = catalog.add_site(
        dial_out_site(), None, [_without_formats(camera("cam-a")), door_input()]
    )
    clock.advance(60)

    diff = catalog.apply_hardware(site.site_id, [camera("cam-a"), door_input()])

    assert diff.is_empty
    (learnt,) = diff.refreshed
    assert learnt == dataclasses.replace(
        cam, streams=camera("cam-a").streams, updated_ns=clock.now_ns()
    )
    assert catalog.device(cam.device_id) == learnt
    assert catalog.device(door.device_id) == door  # nothing to learn: untouched
    # Another stream (lq now carries sound) changes the list, whatever the format says.
    sound = StreamInfo("lq", MediaKind.AUDIO, "aac")
    relisted = dataclasses.replace(camera("cam-a"), streams=(camera("cam-a").streams[0], sound))
    (change,) = catalog.apply_hardware(site.site_id, [relisted, door_input()]).changed
    assert change.fields == ("streams",)


def test_a_row_from_before_frame_rates_were_kept_reads_it_as_unknown(
    catalog: SqliteCatalog, catalog_path: Path
) -> None:
    with_rate = NewDevice(
        "cam-a", "camera", "Gate", (StreamInfo("hq", MediaKind.VIDEO, "h264", 1280, 720, 12.5),)
    )
    _, (cam,) = catalog.add_site(dial_out_site(), None, [with_rate])
    assert catalog.device(cam.device_id).streams[0].frame_rate == 12.5
    older_row = '[{"name":"hq","media_kind":"video","codec":"h264","width":1280,"height":720}]'
    with sqlite3.connect(catalog_path) as db:
        db.execute("UPDATE devices SET streams = ? WHERE device_id = ?", (older_row, cam.device_id))
    db.close()
    assert catalog.device(cam.device_id).streams == (
        StreamInfo("hq", MediaKind.VIDEO, "h264", 1280, 720),
    )
