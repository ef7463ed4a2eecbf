"""Sites: adding (atomically, with their devices), unique keys, updates, removal, contact."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from central.catalog import (
    Conflict,
    InvalidRecord,
    NewSite,
    NotFound,
    RetrievalSettings,
    SqliteCatalog,
)
from shared.clock import ManualClock
from tests.central.catalog.catalog_parts import (
    FINGERPRINT,
    camera,
    dial_in_site,
    dial_out_site,
    digest_of,
    door_input,
)

SITE_ID = re.compile(r"^s-[a-z2-7]{10}$")
DEVICE_ID = re.compile(r"^d-[a-z2-7]{10}$")


def test_add_site_stores_the_site_and_its_devices(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    site, devices = catalog.add_site(
        dial_out_site(), "site-secret", [camera("cam-a", "Entrance"), door_input()]
    )

    assert SITE_ID.fullmatch(site.site_id)
    assert site.fingerprint == "ab" * 31 + "cd"  # normalised: lowercase, no colons
    assert (site.created_ns, site.updated_ns, site.last_seen_ns) == (
        clock.now_ns(),
        clock.now_ns(),
        None,
    )
    assert site.retrieval == RetrievalSettings()
    assert catalog.site(site.site_id) == site
    assert catalog.sites() == [site]
    assert [d.remote_device_id for d in devices] == ["cam-a", "door"]
    assert all(DEVICE_ID.fullmatch(d.device_id) for d in devices)
    entrance = devices[0]
    assert (entrance.name, entrance.original_name, entrance.present) == (
        "Entrance",
        "Entrance",
        True,
    )
    assert (entrance.recording, entrance.live_feed, entrance.central_rule) == (
        "site_only",
        "on_demand",
        {},
    )
    assert catalog.devices(site.site_id) == devices
    assert catalog.device(entrance.device_id) == entrance
    assert catalog.device_by_remote(site.site_id, "cam-a") == entrance
    assert catalog.device_by_remote(site.site_id, "cam-z") is None


def test_ids_are_random_not_derived_from_time_or_name(catalog: SqliteCatalog) -> None:
    first, _ = catalog.add_site(dial_out_site("Same", port=1), None, [camera("cam-a")])
    second, _ = catalog.add_site(dial_out_site("Same", port=2), None, [camera("cam-a")])
    assert first.site_id != second.site_id
    devices = catalog.devices()
    assert len({d.device_id for d in devices}) == 2


def test_a_failing_device_insert_leaves_no_site(catalog: SqliteCatalog) -> None:
    twice = [camera("cam-a"), door_input(), camera("cam-a")]

    with pytest.raises(InvalidRecord, match="remote_device_id 'cam-a' is listed twice"):
        catalog.add_site(dial_out_site(), "site-secret", twice)

    assert catalog.sites() == []
    assert catalog.devices() == []
    # The endpoint is free again: nothing of the failed attempt holds it.
    site, devices = catalog.add_site(dial_out_site(), "site-secret", twice[:2])
    assert len(devices) == 2
    assert catalog.site_password(site.site_id) == "site-secret"


def test_a_used_enrolment_token_leaves_no_site(catalog: SqliteCatalog, clock: ManualClock) -> None:
    digest = digest_of("enrol-me")
    catalog.add_enrolment_token(digest, "bus depot", clock.now_ns() + 10**12)
    first, _ = catalog.add_site(
        dial_in_site("Bus 7"), None, [camera("cam-a")], enrolment_digest=digest
    )

    with pytest.raises(
        Conflict, match=f"'bus depot' was already used \\(by site {first.site_id}\\)"
    ):
        catalog.add_site(
            dial_in_site("Bus 8", remote_site_id="site-bus-8"),
            None,
            [camera("cam-b")],
            enrolment_digest=digest,
        )

    assert [s.name for s in catalog.sites()] == ["Bus 7"]
    assert [d.remote_device_id for d in catalog.devices()] == ["cam-a"]


def test_remote_site_id_is_unique_and_the_conflict_names_the_other_site(
    catalog: SqliteCatalog,
) -> None:
    bus, _ = catalog.add_site(dial_in_site("Bus 7", remote_site_id="site-x"), None)
    with pytest.raises(
        Conflict, match=f"remote_site_id 'site-x' is already the site {bus.site_id} \\('Bus 7'\\)"
    ):
        catalog.add_site(dial_in_site("Bus 8", remote_site_id="site-x"), None)
    other, _ = catalog.add_site(dial_in_site("Bus 8", remote_site_id="site-y"), None)
    with pytest.raises(Conflict, match="remote_site_id 'site-x'"):
        catalog.update_site(other.site_id, remote_site_id="site-x")
    assert catalog.site(other.site_id).remote_site_id == "site-y"
    assert catalog.site_by_remote_id("site-x") == bus
    assert catalog.site_by_remote_id("site-z") is None


def test_a_dial_out_endpoint_is_unique_whatever_its_spelling(catalog: SqliteCatalog) -> None:
    shop, _ = catalog.add_site(dial_out_site("Shop", address="Cam.Example.net"), None)
    assert shop.address == "cam.example.net"
    with pytest.raises(
        Conflict, match=f"address cam.example.net port 8443 is already the site {shop.site_id}"
    ):
        catalog.add_site(dial_out_site("Again", address="cam.example.net."), None)
    # Another port of the same host is another endpoint; dial-in sites have none.
    catalog.add_site(dial_out_site("Other port", address="cam.example.net", port=9443), None)
    catalog.add_site(dial_in_site("Bus 1", remote_site_id=None), None)
    catalog.add_site(dial_in_site("Bus 2", remote_site_id=None), None)
    assert len(catalog.sites()) == 4


def test_update_site_changes_known_fields_and_refuses_others(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    site, _ = catalog.add_site(dial_out_site(), None)
    clock.advance(5)

    window = RetrievalSettings(
        max_bandwidth_bps=2_000_000, window_start="22:00", window_end="06:00"
    )
    updated = catalog.update_site(site.site_id, name="Shop 12b", retrieval=window, enabled=False)

    assert (updated.name, updated.retrieval, updated.enabled) == ("Shop 12b", window, False)
    assert updated.updated_ns == clock.now_ns() > site.updated_ns
    assert catalog.site(site.site_id) == updated
    with pytest.raises(InvalidRecord, match=r"^site_id: is not a site field that can be changed"):
        catalog.update_site(site.site_id, site_id="s-aaaaaaaaaa")
    with pytest.raises(InvalidRecord, match=r"^colour: is not a site field"):
        catalog.update_site(site.site_id, colour="red")
    with pytest.raises(InvalidRecord, match=r"^time_zone: 'Mars/Olympus' is not an IANA"):
        catalog.update_site(site.site_id, time_zone="Mars/Olympus")
    with pytest.raises(InvalidRecord, match=r"^fingerprint: an http site has no certificate"):
        catalog.update_site(site.site_id, scheme="http")
    with pytest.raises(NotFound, match="site 's-nothere000' does not exist"):
        catalog.update_site("s-nothere000", name="x")
    assert catalog.site(site.site_id) == updated
    # Setting what is already there is not a change.
    clock.advance(5)
    assert catalog.update_site(site.site_id, name="Shop 12b").updated_ns == updated.updated_ns


def test_site_password_is_kept_encrypted_and_can_be_replaced(
    catalog: SqliteCatalog,
) -> None:
    site, _ = catalog.add_site(dial_out_site(), "first")
    assert catalog.site_password(site.site_id) == "first"
    catalog.set_site_password(site.site_id, "second")
    assert catalog.site_password(site.site_id) == "second"
    catalog.set_site_password(site.site_id, None)
    assert catalog.site_password(site.site_id) is None
    with pytest.raises(InvalidRecord, match=r"^password: must be a non-empty string"):
        catalog.set_site_password(site.site_id, "")
    with pytest.raises(NotFound):
        catalog.set_site_password("s-nothere000", "x")
    with pytest.raises(NotFound):
        catalog.site_password("s-nothere000")


def test_remove_site_removes_its_devices_and_returns_them(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    gone, gone_devices = catalog.add_site(dial_out_site("Gone", port=1), "pw", [camera("a")])
    kept, kept_devices = catalog.add_site(dial_out_site("Kept", port=2), "pw", [camera("a")])
    catalog.raise_notification("site_offline", gone.site_id, None, "offline", clock.now_ns())

    assert catalog.remove_site(gone.site_id) == gone_devices

    assert catalog.sites() == [kept]
    assert catalog.devices() == kept_devices
    assert catalog.notifications(open_only=False) == []
    with pytest.raises(NotFound, match="device"):
        catalog.device(gone_devices[0].device_id)
    with pytest.raises(NotFound, match="site"):
        catalog.remove_site(gone.site_id)


def test_mark_seen_moves_last_seen_forward_only(catalog: SqliteCatalog) -> None:
    site, _ = catalog.add_site(dial_out_site(), None)
    catalog.mark_seen(site.site_id, 2_000)
    catalog.mark_seen(site.site_id, 1_000)  # a late report of an older contact
    seen = catalog.site(site.site_id)
    assert seen.last_seen_ns == 2_000
    assert seen.updated_ns == site.updated_ns  # contact is not a change of settings
    with pytest.raises(NotFound):
        catalog.mark_seen("s-nothere000", 1)


@pytest.mark.parametrize(
    ("site", "message"),
    [
        (
            lambda: NewSite("x", "central", address="h", port=None),
            "^address: a site the central dials needs",
        ),
        (lambda: NewSite("x", "central", address="h", port=443), "^fingerprint: an https site"),
        (
            lambda: NewSite("x", "central", address="http://h", port=80, scheme="http"),
            "^address: 'http://h' is neither",
        ),
        (
            lambda: NewSite("x", "central", address="h", port=70000, scheme="http"),
            "^port: must be between 1 and 65535",
        ),
        (
            lambda: NewSite("x", "site", address="h"),
            "^address: a site that dials in has no address",
        ),
        (lambda: NewSite("", "site"), "^name: must not be empty"),
        (lambda: NewSite("x", "both"), "^dial: must be one of central, site, not 'both'"),  # type: ignore[arg-type]
        (
            lambda: NewSite("x", "central", address="h", port=1, fingerprint="12:34"),
            "^fingerprint: fingerprint '12:34'",
        ),
        (lambda: NewSite("x", "site", public_key=b"short"), "^public_key: must be 32 bytes"),
        (
            lambda: NewSite("x", "site", retrieval=RetrievalSettings(window_start="22:00")),
            "^retrieval.window_start: window_start and window_end",
        ),
        (
            lambda: NewSite(
                "x", "site", retrieval=RetrievalSettings(window_start="25:00", window_end="01:00")
            ),
            "^retrieval.window_start: must be a time of day",
        ),
        (
            lambda: NewSite("x", "site", retrieval=RetrievalSettings(parallel_devices=0)),
            "^retrieval.parallel_devices: must be between 1 and 64",
        ),
        (
            lambda: NewSite("x", "site", retrieval=RetrievalSettings(max_bandwidth_bps=0)),
            "^retrieval.max_bandwidth_bps: must be at least 1",
        ),
    ],
)
def test_bad_sites_are_refused_naming_the_field(site: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidRecord, match=message):
        site()


def test_ipv6_addresses_are_kept_in_compressed_form() -> None:
    site = NewSite(
        "x", "central", address="[2001:db8:0:0:0:0:0:1]", port=443, fingerprint=FINGERPRINT
    )
    assert site.address == "2001:db8::1"
