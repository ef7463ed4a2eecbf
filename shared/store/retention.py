"""Retention policy and the report of one retention pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

StreamName = tuple[str, str, str]
"""(site_id, device_id, stream)."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long and how much a store keeps.

    Bytes: once live bytes exceed `high_water` x `max_bytes`, the globally oldest unheld
    chunks are deleted until live bytes are at most `low_water` x `max_bytes`; the gap
    between the two marks batches deletions instead of deleting one chunk per write.
    Age: a chunk whose end is older than its stream's maximum age is deleted. The maximum
    age of a stream is `max_age_ns[(site_id, device_id, stream)]`, else
    `max_age_ns_by_stream[stream]` (for example every "hq" stream, whatever the site), else
    `default_max_age_ns`; None means no age limit.
    """

    max_bytes: int
    default_max_age_ns: int | None = None
    max_age_ns: Mapping[StreamName, int] = field(default_factory=dict)
    max_age_ns_by_stream: Mapping[str, int] = field(default_factory=dict)
    high_water: float = 0.95
    low_water: float = 0.93

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"retention max_bytes must be positive, not {self.max_bytes}")
        if not 0.0 < self.low_water <= self.high_water <= 1.0:
            raise ValueError(
                f"retention water marks must satisfy 0 < low ({self.low_water}) "
                f"<= high ({self.high_water}) <= 1"
            )
        ages = [self.default_max_age_ns, *self.max_age_ns.values()]
        ages += list(self.max_age_ns_by_stream.values())
        if any(age is not None and age <= 0 for age in ages):
            raise ValueError("retention maximum ages must be positive")

    @property
    def high_water_bytes(self) -> int:
        return int(self.max_bytes * self.high_water)

    @property
    def low_water_bytes(self) -> int:
        return int(self.max_bytes * self.low_water)

    def max_age_for(self, site_id: str, device_id: str, stream: str) -> int | None:
        """The maximum age of one stream's chunks, or None for no age limit."""
        specific = self.max_age_ns.get((site_id, device_id, stream))
        if specific is not None:
            return specific
        return self.max_age_ns_by_stream.get(stream, self.default_max_age_ns)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one `enforce_retention` call did.

    `pending` is True when the call stopped at its batch limit with more to delete; the
    caller should call again soon (after letting the recorder write). `blocked_by_holds` is
    True when an active hold kept a chunk that would otherwise have been deleted.
    """

    deleted_by_age: int
    deleted_by_bytes: int
    deleted_bytes: int
    blocked_by_holds: bool
    expired_holds: int
    tombstones_compacted: int
    live_bytes: int
    pending: bool

    @property
    def deleted_chunks(self) -> int:
        return self.deleted_by_age + self.deleted_by_bytes
