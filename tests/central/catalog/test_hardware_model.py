"""`apply_hardware` against a simple model: rounds of random device lists from a small set of
ids, kinds, names and streams (with formats known, unknown, or of another media kind),
with the operator renaming devices between rounds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.catalog import HardwareDiff, NewDevice, SqliteCatalog, StreamInfo
from central.catalog.hardware import DeviceListChanges, reconcile, records_to_update
from central.catalog.records import DeviceRecord
from shared.clock import ManualClock
from shared.media import MediaKind
from tests.central.catalog.catalog_parts import dial_in_site

REMOTE_IDS = ("cam-1", "cam-2", "cam-3", "mic-1", "door")
STREAM_SETS = (
    (),
    (StreamInfo("hq", MediaKind.VIDEO, "h264", 1920, 1080),),
    (StreamInfo("hq", MediaKind.VIDEO, "h264", 2560, 1440), StreamInfo("lq", MediaKind.VIDEO)),
)
"""Each stream's format always known (hq) or never (lq): what one reading from the first
state to the last says is then well defined (see the last test)."""
FORMAT_SETS = (
    *STREAM_SETS,
    # hq's format not known (a camera not reached yet), lq's learnt.
    (StreamInfo("hq", MediaKind.VIDEO), StreamInfo("lq", MediaKind.VIDEO, "h264", 640, 360)),
    # Another codec, part of it unknown; lq smaller, at a frame rate now known.
    (
        StreamInfo("hq", MediaKind.VIDEO, "hevc", 1920),
        StreamInfo("lq", MediaKind.VIDEO, "h264", 480, 270, 8.0),
    ),
    # lq carries sound now: another stream, whatever its format says.
    (StreamInfo("hq", MediaKind.VIDEO, "h264"), StreamInfo("lq", MediaKind.AUDIO, "aac")),
)
FORMAT_FIELDS = ("codec", "width", "height", "frame_rate")


def _device_lists(stream_sets: tuple[tuple[StreamInfo, ...], ...]) -> st.SearchStrategy[Listing]:
    listed_device = st.builds(
        lambda kind, name, streams: (kind, name, streams),
        st.sampled_from(["camera", "metadata"]),
        st.sampled_from(["Front", "Back"]),
        st.sampled_from(stream_sets),
    )
    return st.dictionaries(st.sampled_from(REMOTE_IDS), listed_device, max_size=len(REMOTE_IDS))


Listing = dict[str, tuple[str, str, tuple[StreamInfo, ...]]]
"""A site's device list in the model: remote id -> (kind, name, streams)."""

renames = st.dictionaries(st.sampled_from(REMOTE_IDS), st.sampled_from(["Till", "Gate"]))
device_list = _device_lists(STREAM_SETS)
rounds = st.lists(st.tuples(device_list, renames), min_size=1, max_size=6)
format_rounds = st.lists(st.tuples(_device_lists(FORMAT_SETS), renames), min_size=1, max_size=6)


@dataclass
class ModelDevice:
    """What the model knows of one device: the site's facts and the central's name."""

    device_id: str
    kind: str
    original_name: str
    streams: tuple[StreamInfo, ...]
    present: bool
    name: str


def _new_devices(listed: Listing) -> list[NewDevice]:
    return [
        NewDevice(remote_id, kind, name, streams)  # type: ignore[arg-type]
        for remote_id, (kind, name, streams) in listed.items()
    ]


def _model_streams(
    kept: tuple[StreamInfo, ...], listed: tuple[StreamInfo, ...]
) -> tuple[tuple[StreamInfo, ...], list[str]]:
    """What the model keeps of a listing, and which of the two stream fields changed: a
    format field the listing does not know keeps the value kept for the same stream (name
    and media); it changed only when known before and after, and different."""
    fields = []
    if [(s.name, s.media_kind) for s in kept] != [(s.name, s.media_kind) for s in listed]:
        fields.append("streams")
    before = {(s.name, s.media_kind): s for s in kept}
    merged, format_changed = [], False
    for stream in listed:
        was = before.get((stream.name, stream.media_kind))
        values = []
        for field in FORMAT_FIELDS:
            old, new = (None if was is None else getattr(was, field)), getattr(stream, field)
            format_changed |= old is not None and new is not None and old != new
            values.append(old if new is None else new)
        merged.append(StreamInfo(stream.name, stream.media_kind, *values))
    if format_changed:
        fields.append("stream_format")
    return tuple(merged), fields


def _check_round(
    model: dict[str, ModelDevice],
    listed: Listing,
    stored: list[DeviceRecord],
    diff: HardwareDiff,
) -> None:
    """Advance the model by one listing and compare it with what the catalog did."""
    expected: dict[str, set[str]] = {
        "added": set(),
        "removed": set(),
        "returned": set(),
        "changed": set(),
    }
    expected_fields: dict[str, tuple[str, ...]] = {}
    expected_refreshed: set[str] = set()
    for remote_id, (kind, name, streams) in listed.items():
        known = model.get(remote_id)
        if known is None:
            expected["added"].add(remote_id)
            model[remote_id] = ModelDevice("", kind, name, streams, True, name)
            continue
        if not known.present:
            expected["returned"].add(remote_id)
        kept, stream_fields = _model_streams(known.streams, streams)
        fields = ["kind"] if known.kind != kind else []
        fields += ["original_name"] if known.original_name != name else []
        fields += stream_fields
        if fields:
            expected["changed"].add(remote_id)
            expected_fields[remote_id] = tuple(fields)
        elif known.present and kept != known.streams:
            expected_refreshed.add(remote_id)  # a format learnt: rewritten, not reported
        known.kind, known.original_name, known.streams, known.present = kind, name, kept, True
    for remote_id, known in model.items():
        if remote_id not in listed and known.present:
            expected["removed"].add(remote_id)
            known.present = False
    assert _diff_ids(diff) == expected
    assert _fields_by_remote_id(diff) == expected_fields
    assert {d.remote_device_id for d in diff.refreshed} == expected_refreshed

    by_remote = {device.remote_device_id: device for device in stored}
    assert set(by_remote) == set(model)
    for remote_id, known in model.items():
        device = by_remote[remote_id]
        if not known.device_id:
            known.device_id = device.device_id
        assert device.device_id == known.device_id  # stable forever
        assert (device.kind, device.original_name, device.streams) == (
            known.kind,
            known.original_name,
            known.streams,
        )
        assert (device.present, device.name) == (known.present, known.name)


def _diff_ids(diff: HardwareDiff) -> dict[str, set[str]]:
    return {
        "added": {d.remote_device_id for d in diff.added},
        "removed": {d.remote_device_id for d in diff.removed},
        "returned": {d.remote_device_id for d in diff.returned},
        "changed": {c.after.remote_device_id for c in diff.changed},
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rounds=format_rounds)
def test_apply_hardware_matches_the_model(
    catalog: SqliteCatalog, clock: ManualClock, rounds: list[tuple[Listing, dict[str, str]]]
) -> None:
    # Each example gets a site of its own, so examples sharing the catalog do not meet.
    site, _ = catalog.add_site(dial_in_site(remote_site_id=None), None)
    model: dict[str, ModelDevice] = {}
    for listed, renamed in rounds:
        clock.advance(1)
        diff = catalog.apply_hardware(site.site_id, _new_devices(listed))
        _check_round(model, listed, catalog.devices(site.site_id), diff)
        for remote_id, name in renamed.items():
            if remote_id in model:
                catalog.update_device(model[remote_id].device_id, name=name)
                model[remote_id].name = name


@settings(max_examples=300, deadline=None)
@given(rounds=format_rounds)
def test_reconcile_alone_matches_the_model(rounds: list[tuple[Listing, dict[str, str]]]) -> None:
    """The pure function behind `apply_hardware`, with many more examples."""
    stored: dict[str, DeviceRecord] = {}
    model: dict[str, ModelDevice] = {}
    counter = iter(range(10**6))
    for now_ns, (listed, _renamed) in enumerate(rounds, start=1):
        diff = reconcile(
            stored.values(),
            _new_devices(listed),
            site_id="s-test",
            now_ns=now_ns,
            new_device_id=lambda: f"d-{next(counter)}",
        )
        for device in (*diff.added, *records_to_update(diff)):
            stored[device.remote_device_id] = device
        _check_round(model, listed, list(stored.values()), diff)


def _fields_by_remote_id(diff: HardwareDiff) -> dict[str, tuple[str, ...]]:
    return {c.after.remote_device_id: c.fields for c in diff.changed}


def _together(*diffs: HardwareDiff) -> HardwareDiff:
    changes = DeviceListChanges()
    for diff in diffs:
        changes.add(diff)
    return changes.diff()


@settings(max_examples=300, deadline=None)
@given(first=device_list, rounds=rounds)
def test_readings_together_report_what_one_reading_would(
    first: Listing, rounds: list[tuple[Listing, dict[str, str]]]
) -> None:
    """The diffs of several readings, together, say what one reading from the first state to
    the last listing says: the same devices added, removed, returned and changed (the same
    fields), as they are stored at the end."""
    counter = iter(range(10**6))

    def read(stored: dict[str, DeviceRecord], listed: Listing, now_ns: int) -> HardwareDiff:
        return reconcile(
            stored.values(),
            _new_devices(listed),
            site_id="s-test",
            now_ns=now_ns,
            new_device_id=lambda: f"d-{next(counter)}",
        )

    def apply(stored: dict[str, DeviceRecord], diff: HardwareDiff) -> None:
        for device in (*diff.added, *records_to_update(diff)):
            stored[device.remote_device_id] = device

    stored: dict[str, DeviceRecord] = {}
    apply(stored, read(stored, first, 1))
    baseline = dict(stored)
    diffs = []
    for now_ns, (listed, _renamed) in enumerate(rounds, start=2):
        diffs.append(read(stored, listed, now_ns))
        apply(stored, diffs[-1])
        # One reading alone is reported as it is.
        alone = _together(diffs[-1])
        assert _diff_ids(alone) == _diff_ids(diffs[-1])
        assert sorted(alone.changed, key=str) == sorted(diffs[-1].changed, key=str)

    together = _together(*diffs)
    at_once = read(baseline, rounds[-1][0], len(rounds) + 2)
    assert _diff_ids(together) == _diff_ids(at_once)
    assert _fields_by_remote_id(together) == _fields_by_remote_id(at_once)
    for device in (*together.added, *together.removed, *together.returned):
        assert device == stored[device.remote_device_id]
    for change in together.changed:
        assert change.after == stored[change.after.remote_device_id]
        was = baseline[change.after.remote_device_id]
        assert dataclasses.replace(change.before, updated_ns=was.updated_ns) == was


def test_readings_together_report_a_format_change_from_the_last_format_known() -> None:
    """A format learnt (not reported) then changed, with a reading in between that did not
    know it: together, a change from the format learnt to the last one."""
    counter = iter(range(10**6))
    stored: dict[str, DeviceRecord] = {}

    def read(hq: StreamInfo, now_ns: int) -> HardwareDiff:
        listing: Listing = {"cam-1": ("camera", "Front", (hq,))}
        diff = reconcile(
            stored.values(),
            _new_devices(listing),
            site_id="s-test",
            now_ns=now_ns,
            new_device_id=lambda: f"d-{next(counter)}",
        )
        for device in (*diff.added, *records_to_update(diff)):
            stored[device.remote_device_id] = device
        return diff

    unknown = StreamInfo("hq", MediaKind.VIDEO)
    full_hd = StreamInfo("hq", MediaKind.VIDEO, "h264", 1920, 1080, 25.0)
    hd = StreamInfo("hq", MediaKind.VIDEO, "h264", 1280, 720, 25.0)
    read(unknown, 1)  # added by an older site
    learnt, forgotten, smaller = read(full_hd, 2), read(unknown, 3), read(hd, 4)
    assert [d.is_empty for d in (learnt, forgotten, smaller)] == [True, True, False]
    assert (len(learnt.refreshed), len(forgotten.refreshed)) == (1, 0)

    assert _together(learnt, forgotten).is_empty
    together = _together(learnt, forgotten, smaller)
    (change,) = together.changed
    assert change.fields == ("stream_format",)
    assert (change.before.streams, change.after.streams) == ((full_hd,), (hd,))
    assert change.after == stored["cam-1"]
