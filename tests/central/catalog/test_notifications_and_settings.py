"""Notifications (one open per kind, site and device; idempotent raise and clear) and
settings (JSON values by key)."""

from __future__ import annotations

import pytest

from central.catalog import InvalidRecord, NotFound, SqliteCatalog
from shared.clock import ManualClock
from tests.central.catalog.catalog_parts import camera, dial_out_site


def test_raising_is_idempotent_while_open(catalog: SqliteCatalog, clock: ManualClock) -> None:
    site, (cam,) = catalog.add_site(dial_out_site(), None, [camera("cam-a")])
    first = catalog.raise_notification("site_offline", site.site_id, None, "no route", 100)
    again = catalog.raise_notification("site_offline", site.site_id, None, "still none", 200)
    other = catalog.raise_notification("camera_lost", site.site_id, cam.device_id, "lost", 300)
    central = catalog.raise_notification("disk_full", None, None, "media store full", 400)

    assert again == first
    assert (first.message, first.raised_ns, first.is_open) == ("no route", 100, True)
    assert catalog.notifications() == [central, other, first]

    assert catalog.clear_notification("site_offline", site.site_id, None, 500) is True
    assert catalog.clear_notification("site_offline", site.site_id, None, 600) is False
    assert catalog.clear_notification("camera_lost", site.site_id, None, 600) is False
    assert catalog.notifications() == [central, other]

    # A new occurrence after clearing is a new notification.
    reopened = catalog.raise_notification("site_offline", site.site_id, None, "again", 700)
    assert reopened.notification_id != first.notification_id
    history = catalog.notifications(open_only=False)
    assert [n.notification_id for n in history] == [
        reopened.notification_id,
        central.notification_id,
        other.notification_id,
        first.notification_id,
    ]
    assert history[-1].cleared_ns == 500
    assert [n.notification_id for n in catalog.notifications(open_only=False, limit=1)] == [
        reopened.notification_id
    ]


def test_purge_deletes_cleared_notifications_before_an_instant(catalog: SqliteCatalog) -> None:
    site, _ = catalog.add_site(dial_out_site(), None)
    catalog.raise_notification("a", site.site_id, None, "a", 100)
    catalog.clear_notification("a", site.site_id, None, 200)
    catalog.raise_notification("b", site.site_id, None, "b", 100)
    catalog.clear_notification("b", site.site_id, None, 400)
    still_open = catalog.raise_notification("c", site.site_id, None, "c", 100)

    assert catalog.purge_cleared_notifications(300) == 1
    assert [n.kind for n in catalog.notifications(open_only=False)] == ["c", "b"]
    assert catalog.notifications() == [still_open]


def test_a_notification_names_an_existing_site_and_its_own_device(
    catalog: SqliteCatalog,
) -> None:
    one, (cam,) = catalog.add_site(dial_out_site("One", port=1), None, [camera("cam-a")])
    two, _ = catalog.add_site(dial_out_site("Two", port=2), None)
    with pytest.raises(NotFound, match="site 's-nothere000'"):
        catalog.raise_notification("x", "s-nothere000", None, "m", 1)
    with pytest.raises(
        InvalidRecord, match=rf"^device_id: device {cam.device_id} is not a device of {two.site_id}"
    ):
        catalog.raise_notification("x", two.site_id, cam.device_id, "m", 1)
    with pytest.raises(
        InvalidRecord, match=r"^site_id: a notification about a device names its site"
    ):
        catalog.raise_notification("x", None, cam.device_id, "m", 1)
    with pytest.raises(InvalidRecord, match=r"^message: must not be empty"):
        catalog.raise_notification("x", one.site_id, None, "", 1)
    with pytest.raises(InvalidRecord, match=r"^limit: must be between 1 and 10000"):
        catalog.notifications(limit=0)
    assert catalog.notifications() == []


def test_settings_hold_json_values(catalog: SqliteCatalog) -> None:
    assert catalog.setting("retention") is None
    catalog.set_setting("retention", {"max_age_days": 30, "tiers": ["lq", "hq"]})
    catalog.set_setting("banner", "Depot 4")
    catalog.set_setting("banner", "Depot 5")
    assert catalog.setting("retention") == {"max_age_days": 30, "tiers": ["lq", "hq"]}
    assert catalog.setting("banner") == "Depot 5"
    catalog.set_setting("banner", None)
    assert catalog.setting("banner") is None
    with pytest.raises(InvalidRecord, match=r"^setting x: is not JSON"):
        catalog.set_setting("x", {1, 2})
    with pytest.raises(InvalidRecord, match=r"^key: must not be empty"):
        catalog.set_setting("", 1)
