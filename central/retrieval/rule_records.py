"""Retrieval rules as records: what retrieves recordings by itself, on an event or a schedule.

A rule belongs to one site and retrieves a set of that site's devices (the central's
device ids, 1 to 64) in one quality. Two kinds:

- `event`: when the site reports an event of one of `events` (motion, an input, a camera
  lost, ...) from one of `sources` (the central's ids of the devices whose events count;
  empty: any device of the site, and the site itself), retrieve `before_s` seconds before
  the event's instant and `after_s` after it.
- `schedule`: every day, retrieve the interval `daily` ("HH:MM-HH:MM" by the site's clock,
  in its time zone; it may cross midnight) once it has ended. `last_queued_end_ns` is the
  end of the last interval queued (None before the first), so a restart neither repeats
  nor skips one.

Every record checks its fields in `__post_init__` the way `central/catalog/records.py`
does, raising `InvalidRecord` naming the field, so a record that exists is valid whether it
came from a request, from `dataclasses.replace` or from a database row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from central.catalog import validation as check
from central.catalog.errors import InvalidRecord
from central.retrieval.job_records import DEFAULT_QUALITY, MAX_JOB_DEVICES, QUALITIES, Quality

RuleKind = Literal["event", "schedule"]
RULE_KINDS: tuple[str, ...] = get_args(RuleKind)
RULE_ID_PREFIX = "r-"
MAX_RULE_DEVICES = MAX_JOB_DEVICES
MAX_RULE_SOURCES = MAX_JOB_DEVICES
MAX_AROUND_S = 3600
"""The most a rule retrieves before, and after, its event."""

RULE_EVENT_KINDS: tuple[str, ...] = (
    "motion_started",
    "motion_ended",
    "input_active",
    "input_inactive",
    "input_lost",
    "input_restored",
    "output_active",
    "output_inactive",
    "output_lost",
    "output_restored",
    "camera_lost",
    "camera_restored",
    "storage_low",
    "storage_ok",
    "storage_full",
    "storage_error",
)
"""Every kind of event a site sends over its link (the agent's `SystemEventKind`), each of
which may trigger a rule. Storage events come from the site itself, not from a device."""

RULE_FIELDS_CHANGEABLE = frozenset(
    {
        "name",
        "enabled",
        "device_ids",
        "events",
        "sources",
        "before_s",
        "after_s",
        "daily",
        "quality",
    }
)

_DAILY = re.compile(r"(?P<start>[0-9]{2}:[0-9]{2})-(?P<end>[0-9]{2}:[0-9]{2})")


def _normalise(record: object, name: str, value: object) -> None:
    """Store a normal form into a frozen record (only ever from its `__post_init__`)."""
    object.__setattr__(record, name, value)


def daily_bounds(daily: str) -> tuple[str, str]:
    """The "HH:MM" start and end of a valid `daily` interval."""
    match = _DAILY.fullmatch(daily)
    if match is None:
        raise InvalidRecord("daily", f"must be HH:MM-HH:MM, not {daily!r}")
    return match["start"], match["end"]


def _ids(field: str, value: object, *, low: int, high: int) -> tuple[str, ...]:
    if not isinstance(value, tuple | list):
        raise InvalidRecord(field, "must be a list of device ids")
    ids = tuple(value)
    if not low <= len(ids) <= high:
        raise InvalidRecord(field, f"must name {low} to {high} devices, not {len(ids)}")
    for device_id in ids:
        check.text(field, device_id, max_chars=check.MAX_ID_CHARS)
    if len(set(ids)) != len(ids):
        twice = sorted({d for d in ids if ids.count(d) > 1})
        raise InvalidRecord(field, f"names a device twice: {', '.join(twice)}")
    return ids


def _events(value: object) -> tuple[str, ...]:
    if not isinstance(value, tuple | list):
        raise InvalidRecord("events", "must be a list of event kinds")
    kinds = tuple(value)
    if not kinds:
        raise InvalidRecord("events", "an event rule needs at least one event kind")
    for kind in kinds:
        check.one_of("events", kind, RULE_EVENT_KINDS)
    if len(set(kinds)) != len(kinds):
        raise InvalidRecord("events", "names an event kind twice")
    return kinds


def _check_rule(rule: NewRetrievalRule | RetrievalRule) -> None:
    """Shared by `NewRetrievalRule` and `RetrievalRule`: the same fields obey the same rules."""
    check.text("name", rule.name)
    check.text("site_id", rule.site_id, max_chars=check.MAX_ID_CHARS)
    check.one_of("kind", rule.kind, RULE_KINDS)
    _normalise(
        rule, "device_ids", _ids("device_ids", rule.device_ids, low=1, high=MAX_RULE_DEVICES)
    )
    check.one_of("quality", rule.quality, QUALITIES)
    check.flag("enabled", rule.enabled)
    check.integer("before_s", rule.before_s, low=0, high=MAX_AROUND_S)
    check.integer("after_s", rule.after_s, low=0, high=MAX_AROUND_S)
    if rule.kind == "event":
        _normalise(rule, "events", _events(rule.events))
        _normalise(rule, "sources", _ids("sources", rule.sources, low=0, high=MAX_RULE_SOURCES))
        if rule.before_s + rule.after_s == 0:
            raise InvalidRecord("after_s", "before_s and after_s are both 0: an empty span")
        if rule.daily is not None:
            raise InvalidRecord("daily", "only a schedule rule has a daily interval")
    else:
        if rule.daily is None:
            raise InvalidRecord("daily", "a schedule rule needs a daily interval HH:MM-HH:MM")
        if not isinstance(rule.daily, str):
            raise InvalidRecord("daily", f"must be HH:MM-HH:MM, not {rule.daily!r}")
        start, end = daily_bounds(rule.daily)
        check.clock_time("daily", start)
        check.clock_time("daily", end)
        if start == end:
            raise InvalidRecord("daily", f"{rule.daily} is empty (its start is its end)")
        for name in ("events", "sources"):
            if getattr(rule, name):
                raise InvalidRecord(name, "only an event rule has events and sources")
            _normalise(rule, name, ())
        for name in ("before_s", "after_s"):
            if getattr(rule, name):
                raise InvalidRecord(name, "only an event rule retrieves around an event")


@dataclass(frozen=True, slots=True)
class NewRetrievalRule:
    """A rule as a caller asks for it; see the module docstring for the fields."""

    name: str
    site_id: str
    kind: RuleKind
    device_ids: tuple[str, ...]
    quality: Quality = DEFAULT_QUALITY
    enabled: bool = True
    events: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    before_s: int = 0
    after_s: int = 0
    daily: str | None = None

    def __post_init__(self) -> None:
        _check_rule(self)


@dataclass(frozen=True, slots=True)
class RetrievalRule:
    """A rule as stored. `rule_id` is the catalog's (`r-` and ten base32 characters)."""

    rule_id: str
    name: str
    site_id: str
    kind: RuleKind
    device_ids: tuple[str, ...]
    quality: Quality
    enabled: bool
    events: tuple[str, ...]
    sources: tuple[str, ...]
    before_s: int
    after_s: int
    daily: str | None
    created_ns: int
    updated_ns: int
    last_queued_end_ns: int | None = None

    def __post_init__(self) -> None:
        check.text("rule_id", self.rule_id, max_chars=check.MAX_ID_CHARS)
        _check_rule(self)
        check.instant("created_ns", self.created_ns)
        check.instant("updated_ns", self.updated_ns)
        if self.last_queued_end_ns is not None:
            check.instant("last_queued_end_ns", self.last_queued_end_ns)
            if self.kind != "schedule":
                raise InvalidRecord("last_queued_end_ns", "only a schedule rule queues intervals")

    def matches(self, kind: str, source_device_id: str | None) -> bool:
        """Whether an event of `kind` from the device `source_device_id` (the central's id;
        None: the site itself, or a device the central does not know) triggers this rule."""
        if not self.enabled or self.kind != "event" or kind not in self.events:
            return False
        return not self.sources or source_device_id in self.sources
