"""A device's central recording rule: when the central stores the reference stream it relays.

Stored in the catalog as a JSON object (`DeviceRecord.central_rule`), checked here when an
operator sets it, and read back with `CentralRule.from_json`:

    {"mode": "always" | "motion" | "event" | "schedule" | "manual",
     "pre_buffer_s": 0-300, "post_buffer_s": 0-3600,
     "schedule": ["mon-fri 08:00-18:00", ...]}        (mode "schedule" only, site's time zone)

An empty object means the default: ``always``. The rule applies only to devices whose
`recording` is ``central_only`` or ``both``; with ``site_only`` the central records nothing.
``motion`` follows the site's motion events for the camera, ``event`` its input events,
``manual`` the operator's start and stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from central.catalog.errors import InvalidRecord
from shared.recording_gate import ScheduleError, ScheduleRange

CENTRAL_MODES = ("always", "motion", "event", "schedule", "manual")
MAX_PRE_BUFFER_S = 300
MAX_POST_BUFFER_S = 3600
MAX_SCHEDULE_RANGES = 64
_MEMBERS = ("mode", "pre_buffer_s", "post_buffer_s", "schedule")


@dataclass(frozen=True, slots=True)
class CentralRule:
    mode: str = "always"
    pre_buffer_s: float = 0.0
    post_buffer_s: float = 0.0
    schedule: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CentralRule:
        """The rule of a JSON object; `InvalidRecord` naming the member at fault."""
        unknown = sorted(set(value) - set(_MEMBERS))
        if unknown:
            raise InvalidRecord(
                f"central_rule.{unknown[0]}", f"unknown (the rule takes {', '.join(_MEMBERS)})"
            )
        mode = value.get("mode", "always")
        if mode not in CENTRAL_MODES:
            raise InvalidRecord("central_rule.mode", f"must be one of {', '.join(CENTRAL_MODES)}")
        pre = _seconds(value, "pre_buffer_s", MAX_PRE_BUFFER_S)
        post = _seconds(value, "post_buffer_s", MAX_POST_BUFFER_S)
        schedule = value.get("schedule", [])
        if not isinstance(schedule, list) or not all(isinstance(r, str) for r in schedule):
            raise InvalidRecord("central_rule.schedule", "must be a list of strings")
        if len(schedule) > MAX_SCHEDULE_RANGES:
            raise InvalidRecord("central_rule.schedule", f"at most {MAX_SCHEDULE_RANGES} ranges")
        for text in schedule:
            try:
                ScheduleRange.parse(text)
            except ScheduleError as exc:
                raise InvalidRecord("central_rule.schedule", str(exc)) from exc
        if mode == "schedule" and not schedule:
            raise InvalidRecord("central_rule.schedule", "mode schedule needs at least one range")
        if mode != "schedule" and schedule:
            raise InvalidRecord("central_rule.schedule", "only used with mode schedule")
        return cls(mode, pre, post, tuple(schedule))

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "mode": self.mode,
            "pre_buffer_s": self.pre_buffer_s,
            "post_buffer_s": self.post_buffer_s,
        }
        if self.schedule:
            body["schedule"] = list(self.schedule)
        return body


def _seconds(value: Mapping[str, Any], name: str, high: float) -> float:
    seconds = value.get(name, 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidRecord(f"central_rule.{name}", "must be a number of seconds")
    if not 0 <= seconds <= high:
        raise InvalidRecord(f"central_rule.{name}", f"must be 0 to {high} seconds")
    return float(seconds)
