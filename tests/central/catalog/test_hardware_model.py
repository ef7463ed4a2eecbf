"""`apply_hardware` against a simple model: rounds of random device lists from a small set of
ids, kinds, names and streams, with the operator renaming devices between rounds."""

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

listed_device = st.builds(
    lambda kind, name, streams: (kind, name, streams),
    st.sampled_from(["camera", "metadata"]),
    st.sampled_from(["Front", "Back"]),
    st.sampled_from(STREAM_SETS),
)
device_list = st.dictionaries(st.sampled_from(REMOTE_IDS), listed_device, max_size=len(REMOTE_IDS))
renames = st.dictionaries(st.sampled_from(REMOTE_IDS), st.sampled_from(["Till", "Gate"]))
rounds = st.lists(st.tuples(device_list, renames), min_size=1, max_size=6)


Listing = dict[str, tuple[str, str, tuple[StreamInfo, ...]]]
"""A site's device list in the model: remote id -> (kind, name, streams)."""


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


def _check_round(
    model: dict[str, ModelDevice],
    listed: Listing,
    stored: list[DeviceRecord],
    diff_ids: dict[str, set[str]],
) -> None:
    """Advance the model by one listing and compare it with what the catalog did."""
    expected: dict[str, set[str]] = {
        "added": set(),
        "removed": set(),
        "returned": set(),
        "changed": set(),
    }
    for remote_id, (kind, name, streams) in listed.items():
        known = model.get(remote_id)
        if known is None:
            expected["added"].add(remote_id)
            model[remote_id] = ModelDevice("", kind, name, streams, True, name)
            continue
        if not known.present:
            expected["returned"].add(remote_id)
        if (known.kind, known.original_name, known.streams) != (kind, name, streams):
            expected["changed"].add(remote_id)
        known.kind, known.original_name, known.streams, known.present = kind, name, streams, True
    for remote_id, known in model.items():
        if remote_id not in listed and known.present:
            expected["removed"].add(remote_id)
            known.present = False
    assert diff_ids == expected

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
@given(rounds=rounds)
def test_apply_hardware_matches_the_model(
    catalog: SqliteCatalog, clock: ManualClock, rounds: list[tuple[Listing, dict[str, str]]]
) -> None:
    # Each example gets a site of its own, so examples sharing the catalog do not meet.
    site, _ = catalog.add_site(dial_in_site(remote_site_id=None), None)
    model: dict[str, ModelDevice] = {}
    for listed, renamed in rounds:
        clock.advance(1)
        diff = catalog.apply_hardware(site.site_id, _new_devices(listed))
        _check_round(model, listed, catalog.devices(site.site_id), _diff_ids(diff))
        for remote_id, name in renamed.items():
            if remote_id in model:
                catalog.update_device(model[remote_id].device_id, name=name)
                model[remote_id].name = name


@settings(max_examples=300, deadline=None)
@given(rounds=rounds)
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
        _check_round(model, listed, list(stored.values()), _diff_ids(diff))


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
