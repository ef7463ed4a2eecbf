"""A device's central recording rule: when the central stores the reference stream it relays.

Stored in the catalog as a JSON object (`DeviceRecord.central_rule`), checked here when an
operator sets it, and read back with `CentralRule.from_json`:

    {"mode": "always" | "motion" | "event" | "schedule" | "manual",
     "pre_buffer_s": 0-300, "post_buffer_s": 0-3600,
     "schedule": ["mon-fri 08:00-18:00", ...],        (mode "schedule" only, site's time zone)
     "trigger_inputs": ["<device id>", ...]}          (mode "event" only)

An empty object means the default: ``always``. The rule applies only to devices whose
`recording` is ``central_only`` or ``both``; with ``site_only`` the central records nothing.
``motion`` follows the site's motion events for the camera, ``event`` its input events,
``manual`` the operator's start and stop.

``event`` is triggered by every input of the camera's site, or, with `trigger_inputs`, only
by those inputs (the central's device ids, as `GET /devices` lists them); an id that is not
an input of the camera's site triggers nothing. A trigger's window ends when the site
announces the end: motion ends once the site's detector saw none for its hold time, dated
back to the last motion, so up to that hold time past the post-buffer is stored as well.
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
MAX_TRIGGER_INPUTS = 64
_MEMBERS = ("mode", "pre_buffer_s", "post_buffer_s", "schedule", "trigger_inputs")


@dataclass(frozen=True, slots=True)
class CentralRule:
    mode: str = "always"
    pre_buffer_s: float = 0.0
    post_buffer_s: float = 0.0
    schedule: tuple[str, ...] = ()
    trigger_inputs: tuple[str, ...] | None = None  # None: every input of the site

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
        return cls(mode, pre, post, tuple(schedule), _trigger_inputs(value, mode))

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "mode": self.mode,
            "pre_buffer_s": self.pre_buffer_s,
            "post_buffer_s": self.post_buffer_s,
        }
        if self.schedule:
            body["schedule"] = list(self.schedule)
        if self.trigger_inputs is not None:
            body["trigger_inputs"] = list(self.trigger_inputs)
        return body


def _trigger_inputs(value: Mapping[str, Any], mode: str) -> tuple[str, ...] | None:
    if "trigger_inputs" not in value or value["trigger_inputs"] is None:
        return None
    inputs = value["trigger_inputs"]
    field = "central_rule.trigger_inputs"
    if not isinstance(inputs, list) or not all(isinstance(i, str) and i for i in inputs):
        raise InvalidRecord(field, "must be a list of input device ids")
    if len(inputs) > MAX_TRIGGER_INPUTS:
        raise InvalidRecord(field, f"at most {MAX_TRIGGER_INPUTS} inputs")
    if mode != "event":
        raise InvalidRecord(field, "only used with mode event")
    return tuple(dict.fromkeys(inputs))


def _seconds(value: Mapping[str, Any], name: str, high: float) -> float:
    seconds = value.get(name, 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidRecord(f"central_rule.{name}", "must be a number of seconds")
    if not 0 <= seconds <= high:
        raise InvalidRecord(f"central_rule.{name}", f"must be 0 to {high} seconds")
    return float(seconds)
