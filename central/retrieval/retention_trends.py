"""How far each site's retention had deleted each stream, and how fast it was going, as last
seen: what tells a job queued for a site out of reach that its span may be gone already.

While a link is up, the job's holds protect its span at the site (`site_holds`), and a span
retention had already begun to delete is reported in the hold's answer. A site out of reach
can be asked nothing: a train in a tunnel, a shop whose line is down. Its retention goes on
deleting its oldest recordings meanwhile, and a job queued for it now learns what it lost
only when the site is back. So the central keeps, from the site's status (read at the start
of each link and every `status_interval_s` while it lasts, `central/site_link_work.py`),
each stream's oldest recording: at the first reading of the link and at the last one. Their
difference over the time between them is the pace at which retention moves that stream's
oldest recording forward (0 for a site whose store is not full yet; about one second a
second for a site that keeps a fixed number of days).

The forecast for a moment after the last reading: the oldest recording then, moved on at
that pace for the time since (`RetentionTrend.deleted_until`). Before the last reading's
oldest recording, the stream is known to be gone; after it, the forecast is an estimate
(a site powered off deletes nothing; one recording more than before deletes faster), and
the job's risk says so. A pace is only measured over `MIN_TREND_S` or more.

The trends of a site are kept in memory while its link lasts and written to the catalog (a
setting per site, `retention_trend/SITE`) when the link ends, so a central restarted while
the site is away still knows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from central.catalog.catalog import Catalog
from shared.api_input import BadRequest, parse_instant
from shared.clock import NS_PER_S

MIN_TREND_S = 60.0
"""The shortest time between two readings over which a pace is measured."""
MAX_PACE = 100.0
"""A pace above this (seconds of recording deleted per second) is taken as this: a burst of
deletion when a quota was lowered, not a pace to extrapolate."""
SETTING_PREFIX = "retention_trend/"

StreamId = tuple[str, str]
"""(the site's device id, stream)."""


@dataclass(frozen=True, slots=True)
class OldestReading:
    """A stream's oldest recording at the site (`oldest_ns`, the site's timestamps) as its
    status said when the central read it (`at_ns`, the central's wall clock)."""

    oldest_ns: int
    at_ns: int


@dataclass(frozen=True, slots=True)
class RetentionTrend:
    """The first and the last reading of a stream's oldest recording over one link."""

    first: OldestReading
    last: OldestReading

    @property
    def pace(self) -> float | None:
        """Seconds of recording deleted per second between the readings; None when they
        are less than `MIN_TREND_S` apart."""
        elapsed_ns = self.last.at_ns - self.first.at_ns
        if elapsed_ns < MIN_TREND_S * NS_PER_S:
            return None
        moved_ns = max(0, self.last.oldest_ns - self.first.oldest_ns)
        return min(MAX_PACE, moved_ns / elapsed_ns)

    def deleted_until(self, now_ns: int) -> int:
        """Where the stream's oldest recording is at `now_ns` by the forecast: the last
        reading's, moved on at the measured pace (not moved when none was measured)."""
        pace = self.pace or 0.0
        return self.last.oldest_ns + round(pace * max(0, now_ns - self.last.at_ns))

    def to_json(self) -> list[int]:
        return [self.first.oldest_ns, self.first.at_ns, self.last.oldest_ns, self.last.at_ns]

    @classmethod
    def from_json(cls, value: object) -> RetentionTrend | None:
        """The trend `to_json` wrote; None for anything else (a setting from another
        version is ignored, not trusted)."""
        if not isinstance(value, list) or len(value) != 4:
            return None
        if not all(type(v) is int for v in value):
            return None
        first_oldest, first_at, last_oldest, last_at = value
        return cls(OldestReading(first_oldest, first_at), OldestReading(last_oldest, last_at))


def oldest_recordings(status: Mapping[str, Any]) -> dict[StreamId, int]:
    """Each stream's oldest recording in a site's status (streams without one left out)."""
    found: dict[StreamId, int] = {}
    streams = status.get("streams")
    if not isinstance(streams, list):
        return found
    for stream in streams:
        if not isinstance(stream, Mapping):
            continue
        device_id, name = stream.get("device_id"), stream.get("stream")
        oldest = stream.get("oldest")
        if not (isinstance(device_id, str) and isinstance(name, str) and isinstance(oldest, str)):
            continue
        try:
            found[(device_id, name)] = parse_instant("oldest", oldest)
        except BadRequest:
            continue
    return found


class RetentionTrends:
    """The trends of every site (see the module docstring). `observe` and `link_started`
    run on the event loop; `save` and `of_site` read or write the catalog (blocking)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._by_site: dict[str, dict[StreamId, RetentionTrend]] = {}

    def link_started(self, site_id: str) -> None:
        """A new link: its first readings start the trends afresh (the pace over the time
        the site was away is not known)."""
        self._by_site[site_id] = {}

    def observe(self, site_id: str, status: Mapping[str, Any], now_ns: int) -> None:
        """A status read from the site at `now_ns` (the central's clock)."""
        trends = self._by_site.setdefault(site_id, {})
        for stream, oldest_ns in oldest_recordings(status).items():
            reading = OldestReading(oldest_ns, now_ns)
            known = trends.get(stream)
            trends[stream] = RetentionTrend(reading if known is None else known.first, reading)

    def save(self, site_id: str) -> None:
        """Write the site's trends to the catalog (blocking); nothing if none were seen."""
        trends = self._by_site.get(site_id)
        if not trends:
            return
        value = [[device, stream, *trend.to_json()] for (device, stream), trend in trends.items()]
        self._catalog.set_setting(SETTING_PREFIX + site_id, value)

    def forget(self, site_id: str) -> None:
        """The site was removed (blocking: its setting goes too)."""
        self._by_site.pop(site_id, None)
        self._catalog.set_setting(SETTING_PREFIX + site_id, None)

    def of_site(self, site_id: str) -> dict[StreamId, RetentionTrend]:
        """The site's trends: this run's, else the catalog's (blocking)."""
        trends = self._by_site.get(site_id)
        if trends:
            return dict(trends)
        stored = self._catalog.setting(SETTING_PREFIX + site_id)
        found: dict[StreamId, RetentionTrend] = {}
        if not isinstance(stored, list):
            return found
        for item in stored:
            if not isinstance(item, list) or len(item) != 6:
                continue
            device, stream, *numbers = item
            trend = RetentionTrend.from_json(numbers)
            if isinstance(device, str) and isinstance(stream, str) and trend is not None:
                found[(device, stream)] = trend
        return found
