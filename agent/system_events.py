"""Things that happen to the site itself (not to the picture), reported to the central.

The central turns these into proactive-monitoring alerts (a camera lost, storage trouble).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SystemEventKind(StrEnum):
    """What happened."""

    CAMERA_LOST = "camera_lost"  # a camera stopped giving packets or could not be opened
    CAMERA_RESTORED = "camera_restored"  # a lost camera gives packets again
    MOTION_STARTED = "motion_started"  # motion detection on a camera's picture
    MOTION_ENDED = "motion_ended"
    INPUT_ACTIVE = "input_active"  # a digital input changed state
    INPUT_INACTIVE = "input_inactive"
    INPUT_LOST = "input_lost"  # an input's line could not be requested or stopped answering
    INPUT_RESTORED = "input_restored"  # a lost input's line is read again
    OUTPUT_ACTIVE = "output_active"  # an output (relay, siren) was switched
    OUTPUT_INACTIVE = "output_inactive"
    OUTPUT_LOST = "output_lost"  # an output's line could not be requested or driven
    OUTPUT_RESTORED = "output_restored"  # a lost output's line is held again
    STORAGE_LOW = "storage_low"  # the disk cannot hold the configured quota any more
    STORAGE_OK = "storage_ok"  # the disk has room for the quota again
    STORAGE_FULL = "storage_full"  # a chunk could not be stored: nothing left to delete
    STORAGE_ERROR = "storage_error"  # the disk reported an error other than lack of space


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """One occurrence, for one device, at one instant."""

    kind: SystemEventKind
    device_id: str
    at_ns: int  # UTC, from the agent's clock
    detail: str = ""  # human-readable cause; never contains credentials
