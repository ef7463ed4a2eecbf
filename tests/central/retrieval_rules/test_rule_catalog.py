"""Retrieval rules in the catalog: added with an id of its own, read, listed by site,
changed, removed, gone with their site; every bad field refused naming it; devices of
another site or without the rule's quality refused naming the device; the schedule's
`last_queued_end_ns` never moves backwards; the rules survive reopening the file."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.system_events import SystemEventKind
from central.catalog import (
    InvalidRecord,
    NewRetrievalRule,
    NotFound,
    SecretBox,
    SqliteCatalog,
)
from central.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from central.retrieval.rule_records import RULE_EVENT_KINDS, RetrievalRule
from tests.central.retrieval_rules.conftest import RuleWorld


def on_motion(world: RuleWorld, **fields: object) -> NewRetrievalRule:
    values: dict[str, object] = {
        "name": "Yard motion",
        "site_id": world.site.site_id,
        "kind": "event",
        "device_ids": (world.cam_a.device_id, world.cam_b.device_id),
        "events": ("motion_started",),
        "sources": (world.cam_a.device_id,),
        "before_s": 120,
        "after_s": 300,
    }
    values.update(fields)
    return NewRetrievalRule(**values)  # type: ignore[arg-type]


def daily(world: RuleWorld, **fields: object) -> NewRetrievalRule:
    values: dict[str, object] = {
        "name": "Opening hours",
        "site_id": world.site.site_id,
        "kind": "schedule",
        "device_ids": (world.cam_a.device_id,),
        "daily": "07:00-22:00",
        "quality": "lq",
    }
    values.update(fields)
    return NewRetrievalRule(**values)  # type: ignore[arg-type]


def test_the_allowed_event_kinds_are_the_ones_the_agent_sends() -> None:
    assert set(RULE_EVENT_KINDS) == {kind.value for kind in SystemEventKind}


def test_a_rule_is_stored_with_an_id_of_its_own_and_read_back(world: RuleWorld) -> None:
    catalog = world.catalog
    event_rule = catalog.add_retrieval_rule(on_motion(world))
    world.clock.advance(1)
    schedule_rule = catalog.add_retrieval_rule(daily(world))
    assert re.fullmatch(r"r-[a-z2-7]{10}", event_rule.rule_id)
    assert event_rule.rule_id != schedule_rule.rule_id
    assert event_rule.created_ns == event_rule.updated_ns == schedule_rule.created_ns - 10**9
    assert event_rule.enabled
    assert event_rule.quality == "hq"
    assert event_rule.daily is None
    assert event_rule.last_queued_end_ns is None
    assert schedule_rule.events == schedule_rule.sources == ()
    assert catalog.retrieval_rule(event_rule.rule_id) == event_rule
    assert catalog.retrieval_rule(schedule_rule.rule_id) == schedule_rule
    other = catalog.add_retrieval_rule(
        daily(world, site_id=world.other_site.site_id, device_ids=(world.other_cam.device_id,))
    )
    assert catalog.retrieval_rules(world.site.site_id) == [event_rule, schedule_rule]
    assert catalog.retrieval_rules(world.other_site.site_id) == [other]
    assert catalog.retrieval_rules() == [event_rule, schedule_rule, other] or (
        catalog.retrieval_rules() == [other, event_rule, schedule_rule]
    )
    with pytest.raises(NotFound, match="retrieval rule 'r-nothing' does not exist"):
        catalog.retrieval_rule("r-nothing")
    with pytest.raises(NotFound, match="site 's-nothing'"):
        catalog.retrieval_rules("s-nothing")


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"name": ""}, "name", "must not be empty"),
        ({"kind": "sometimes"}, "kind", "must be one of event, schedule"),
        ({"device_ids": ()}, "device_ids", "must name 1 to 64 devices, not 0"),
        ({"device_ids": ("d-1",) * 2}, "device_ids", "names a device twice: d-1"),
        ({"device_ids": tuple(f"d-{i}" for i in range(65))}, "device_ids", "not 65"),
        ({"device_ids": "d-1"}, "device_ids", "must be a list of device ids"),
        ({"quality": "best"}, "quality", "must be one of hq, lq"),
        ({"enabled": 1}, "enabled", "must be true or false"),
        ({"events": ()}, "events", "needs at least one event kind"),
        ({"events": ("doorbell",)}, "events", "must be one of motion_started"),
        ({"events": ("input_active",) * 2}, "events", "names an event kind twice"),
        ({"sources": ("d-1", "d-1")}, "sources", "names a device twice"),
        ({"before_s": -1}, "before_s", "between 0 and 3600"),
        ({"after_s": 3601}, "after_s", "between 0 and 3600"),
        ({"after_s": True}, "after_s", "must be an integer"),
        ({"before_s": 0, "after_s": 0}, "after_s", "an empty span"),
        ({"daily": "07:00-22:00"}, "daily", "only a schedule rule"),
    ],
)
def test_a_bad_event_rule_is_refused_naming_the_field(
    world: RuleWorld, fields: dict[str, object], field: str, problem: str
) -> None:
    with pytest.raises(InvalidRecord, match=re.escape(problem)) as refused:
        on_motion(world, **fields)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"daily": None}, "daily", "needs a daily interval"),
        ({"daily": "7:00-22:00"}, "daily", "must be HH:MM-HH:MM"),
        ({"daily": "07:00-24:00"}, "daily", "(00:00 to 23:59)"),
        ({"daily": "07:00"}, "daily", "must be HH:MM-HH:MM"),
        ({"daily": 700}, "daily", "must be HH:MM-HH:MM"),
        ({"daily": "07:00-07:00"}, "daily", "is empty"),
        ({"events": ("motion_started",)}, "events", "only an event rule"),
        ({"sources": ("d-1",)}, "sources", "only an event rule"),
        ({"after_s": 10}, "after_s", "only an event rule"),
    ],
)
def test_a_bad_schedule_rule_is_refused_naming_the_field(
    world: RuleWorld, fields: dict[str, object], field: str, problem: str
) -> None:
    with pytest.raises(InvalidRecord, match=re.escape(problem)) as refused:
        daily(world, **fields)
    assert refused.value.field == field


def test_a_stored_rule_checks_its_own_fields_too(world: RuleWorld) -> None:
    rule = world.catalog.add_retrieval_rule(on_motion(world))
    with pytest.raises(InvalidRecord) as refused:
        dataclasses.replace(rule, last_queued_end_ns=5)
    assert refused.value.field == "last_queued_end_ns"
    with pytest.raises(InvalidRecord) as refused:
        dataclasses.replace(rule, rule_id="")
    assert refused.value.field == "rule_id"


def test_devices_must_be_of_the_site_and_have_the_quality(world: RuleWorld) -> None:
    catalog = world.catalog
    other = world.other_cam.device_id
    cases = [
        (on_motion(world, device_ids=("d-nothing",)), "device_ids", "d-nothing does not exist"),
        (on_motion(world, device_ids=(other,)), "device_ids", f"device {other} is a device of"),
        (on_motion(world, sources=(other,)), "sources", f"of site {world.other_site.site_id}"),
        (on_motion(world, sources=("d-nothing",)), "sources", "d-nothing does not exist"),
        (
            on_motion(world, device_ids=(world.door.device_id,)),
            "device_ids",
            "has no hq stream (it has: state)",
        ),
    ]
    for new, field, problem in cases:
        with pytest.raises(InvalidRecord, match=re.escape(problem)) as refused:
            catalog.add_retrieval_rule(new)
        assert refused.value.field == field
    with pytest.raises(NotFound, match="site 's-nothing'"):
        catalog.add_retrieval_rule(on_motion(world, site_id="s-nothing"))
    # An input's events may trigger a rule that retrieves the cameras.
    rule = catalog.add_retrieval_rule(
        on_motion(world, events=("input_active",), sources=(world.door.device_id,))
    )
    assert rule.sources == (world.door.device_id,)
    assert catalog.retrieval_rules() == [rule]


def test_a_rule_is_changed_field_by_field_and_checked_again(world: RuleWorld) -> None:
    catalog = world.catalog
    rule = catalog.add_retrieval_rule(on_motion(world))
    world.clock.advance(5)
    changed = catalog.update_retrieval_rule(
        rule.rule_id,
        name="Yard, any camera",
        enabled=False,
        events=["motion_started", "input_active"],
        sources=[],
        before_s=0,
        after_s=60,
        quality="lq",
        device_ids=[world.cam_b.device_id],
    )
    assert changed == dataclasses.replace(
        rule,
        name="Yard, any camera",
        enabled=False,
        events=("motion_started", "input_active"),
        sources=(),
        before_s=0,
        after_s=60,
        quality="lq",
        device_ids=(world.cam_b.device_id,),
        updated_ns=rule.created_ns + 5 * 10**9,
    )
    assert catalog.retrieval_rule(rule.rule_id) == changed
    assert catalog.update_retrieval_rule(rule.rule_id, enabled=False) == changed
    refused_changes: list[tuple[dict[str, Any], str]] = [
        ({"kind": "schedule"}, "kind"),
        ({"site_id": world.other_site.site_id}, "site_id"),
        ({"last_queued_end_ns": 1}, "last_queued_end_ns"),
        ({"device_ids": [world.other_cam.device_id]}, "device_ids"),
        ({"daily": "01:00-02:00"}, "daily"),
        ({"after_s": 0, "before_s": 0}, "after_s"),
    ]
    for changes, field in refused_changes:
        with pytest.raises(InvalidRecord) as refused:
            catalog.update_retrieval_rule(rule.rule_id, **changes)
        assert refused.value.field == field
    assert catalog.retrieval_rule(rule.rule_id) == changed
    with pytest.raises(NotFound):
        catalog.update_retrieval_rule("r-nothing", enabled=True)


def test_removing_a_rule_or_its_site_removes_it(world: RuleWorld) -> None:
    catalog = world.catalog
    first = catalog.add_retrieval_rule(on_motion(world))
    second = catalog.add_retrieval_rule(daily(world))
    assert catalog.remove_retrieval_rule(first.rule_id) == first
    assert catalog.retrieval_rules() == [second]
    with pytest.raises(NotFound):
        catalog.remove_retrieval_rule(first.rule_id)
    catalog.remove_site(world.site.site_id)
    assert catalog.retrieval_rules() == []


def test_the_last_queued_end_never_moves_backwards(world: RuleWorld) -> None:
    catalog = world.catalog
    rule = catalog.add_retrieval_rule(daily(world))
    world.clock.advance(1)
    moved = catalog.set_rule_last_queued(rule.rule_id, 2_000)
    assert moved.last_queued_end_ns == 2_000
    assert moved.updated_ns > rule.updated_ns
    assert catalog.set_rule_last_queued(rule.rule_id, 2_000) == moved
    with pytest.raises(InvalidRecord, match="never moves backwards") as refused:
        catalog.set_rule_last_queued(rule.rule_id, 1_999)
    assert refused.value.field == "last_queued_end_ns"
    assert catalog.set_rule_last_queued(rule.rule_id, 3_000).last_queued_end_ns == 3_000
    # Changing the interval keeps what was queued.
    changed = catalog.update_retrieval_rule(rule.rule_id, daily="22:00-06:00")
    assert changed.last_queued_end_ns == 3_000
    event_rule = catalog.add_retrieval_rule(on_motion(world))
    with pytest.raises(InvalidRecord, match="is an event rule"):
        catalog.set_rule_last_queued(event_rule.rule_id, 1)


def test_rules_survive_reopening_and_the_schema_keeps_them_in_shape(
    world: RuleWorld, tmp_path: Path
) -> None:
    catalog = world.catalog
    rules = [catalog.add_retrieval_rule(on_motion(world))]
    world.clock.advance(1)
    rules.append(catalog.add_retrieval_rule(daily(world)))
    catalog.set_rule_last_queued(rules[1].rule_id, 10**18)
    rules[1] = catalog.retrieval_rule(rules[1].rule_id)
    catalog.close()
    reopened = SqliteCatalog.open(
        tmp_path / "catalog.sqlite3",
        clock=world.clock,
        secret_box=SecretBox.load_or_create(tmp_path / "secret.key"),
    )
    try:
        assert reopened.retrieval_rules() == rules
    finally:
        reopened.close()
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 3
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        # The table refuses what the records would: a schedule rule without its interval.
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("UPDATE retrieval_rules SET daily = NULL WHERE kind = 'schedule'")
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("UPDATE retrieval_rules SET last_queued_end_ns = 1 WHERE kind = 'event'")
    raw.close()


def test_a_rule_matches_events_of_its_kinds_from_its_sources(world: RuleWorld) -> None:
    rule = world.catalog.add_retrieval_rule(on_motion(world))
    assert rule.matches("motion_started", world.cam_a.device_id)
    assert not rule.matches("motion_started", world.cam_b.device_id)
    assert not rule.matches("motion_started", None)
    assert not rule.matches("input_active", world.cam_a.device_id)
    anywhere: RetrievalRule = dataclasses.replace(rule, sources=())
    assert anywhere.matches("motion_started", world.cam_b.device_id)
    assert anywhere.matches("motion_started", None)  # the site itself
    assert not dataclasses.replace(anywhere, enabled=False).matches("motion_started", None)
