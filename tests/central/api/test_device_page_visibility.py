"""A page of the device list holds only devices the caller may see, and its `next` is given
exactly when one the caller may see follows it, however many hidden ones lie between (the
access policy has no per-device rights yet, so the page's own function is called here with
a `visible` that hides some)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.api.device_routes import _device_page_json
from central.catalog import SecretBox, SqliteCatalog
from central.catalog.records import DeviceRecord, NewDevice, NewSite, StreamInfo
from shared.clock import ManualClock
from shared.media import MediaKind


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqliteCatalog]:
    """Three sites of 1, 4 and 2 cameras (blocking, but short: the test is synchronous)."""
    opened = SqliteCatalog.open(
        tmp_path / "catalog.sqlite3",
        clock=ManualClock(),
        secret_box=SecretBox.load_or_create(tmp_path / "secret.key"),
    )
    video = (StreamInfo("lq", MediaKind.VIDEO),)
    for index, cameras in enumerate((1, 4, 2)):
        opened.add_site(
            NewSite(
                name=f"Site {index}",
                dial="central",
                address=f"127.0.0.{index + 2}",
                port=9,
                scheme="http",
                username="u",
            ),
            "pw",
            [NewDevice(f"cam-{n}", "camera", f"Camera {n}", video) for n in range(cameras)],
        )
    yield opened
    opened.close()


def _walk(catalog: SqliteCatalog, limit: int, hidden: set[str]) -> list[dict[str, Any]]:
    """Every page of the list as a caller who may not see `hidden`; checks each page."""
    listed: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(50):
        body = json.loads(
            _device_page_json(
                catalog,
                site_id=None,
                present_only=False,
                after=after,
                limit=limit,
                visible=lambda device_id: device_id not in hidden,
                online=lambda _site_id: False,
            )
        )
        devices = body["devices"]
        assert len(devices) <= limit
        assert devices or after is None, "the `next` of the page before led to an empty page"
        listed += devices
        after = body["next"]
        if after is None:
            return listed
        assert len(devices) == limit, "a page before the last one is short"
        assert after == devices[-1]["id"]
    raise AssertionError("the list did not end in 50 pages")


def _ids(devices: list[DeviceRecord]) -> set[str]:
    return {d.device_id for d in devices}


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_pages_hold_the_visible_devices_in_order(catalog: SqliteCatalog, limit: int) -> None:
    everything = catalog.devices()
    cases = {
        "none hidden": set(),
        "every other one": _ids(everything[::2]),
        "the last three": _ids(everything[-3:]),  # hidden ones after the last visible one
        "a run in the middle": _ids(everything[1:5]),
        "all": _ids(everything),
    }
    for case, hidden in cases.items():
        expected = [d.device_id for d in everything if d.device_id not in hidden]
        assert [d["id"] for d in _walk(catalog, limit, hidden)] == expected, (case, limit)


def test_the_page_before_hidden_devices_only_is_the_last(catalog: SqliteCatalog) -> None:
    everything = catalog.devices()
    hidden = _ids(everything[2:])
    body = json.loads(
        _device_page_json(
            catalog,
            site_id=None,
            present_only=False,
            after=None,
            limit=2,
            visible=lambda device_id: device_id not in hidden,
            online=lambda _site_id: False,
        )
    )
    assert [d["id"] for d in body["devices"]] == [d.device_id for d in everything[:2]]
    assert body["next"] is None
